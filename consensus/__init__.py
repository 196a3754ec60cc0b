"""Algorithms over DataFrames and arrays, never touching the store: clustering, voting, the latent-class decision, noise sampling, and the rescoring CNN (:mod:`picks.consensus.cnn`)."""
