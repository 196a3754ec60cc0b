"""The rescoring CNN: the network, box extraction, training data and training, the learned combination. Algorithms over arrays and DataFrames; the store side is :mod:`picks.workflows.rescore`."""
