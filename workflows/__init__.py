"""Workflows: the only layer that joins the store, the plugins and the algorithms (see docs/architecture.md)."""
