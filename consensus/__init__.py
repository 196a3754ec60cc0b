"""Consensus of pickers: clustering, voting, noise sampling, CNN rescoring, simulation, metric."""
