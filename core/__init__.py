"""Core data model: canonical pick table, tomograms, particle catalog, provenance store."""
