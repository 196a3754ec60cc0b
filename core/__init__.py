"""Domain and persistence, importing nothing above it: the canonical pick table, the voxel↔Å frame, tomograms, the particle catalog, files, errors and the provenance store."""
