"""The built-in simulated world: tomograms with ground truth and the native outputs of simulated pickers (``picks simulate``, ``picks simulate-pickers``, ``picks demo``)."""
