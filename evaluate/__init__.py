"""Scoring against ground truth: the CZII F-beta metric (pure) and its plots."""
