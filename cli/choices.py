"""The fixed vocabularies of CLI options, as ``Literal`` types: typer checks them at parse time
(a typo is a usage error, exit 2) and ``--help`` lists them.

The values mirror library constants (``consensus.pipeline.METHODS``,
``consensus.cluster.REPRESENTATIVES``, ``consensus.extract.EDGE_MODES``, ``consensus.cnn.DEVICES``,
``consensus.train.POSITIVE_RULES``) but are spelled out here because importing those modules
would load numpy and pandas on every ``picks --help``. ``tests/test_cli_ux.py`` checks that the
two stay equal: to add a method, add it to ``METHODS`` below and to the pipeline.
"""

from __future__ import annotations

from typing import Literal

METHODS = ("auto", "vote", "latent", "cnn")
REPRESENTATIVES = ("centroid", "weighted", "best")
EDGES = ("pad", "reflect", "drop")
DEVICES = ("auto", "cpu", "gpu")
POSITIVES = ("auto", "full", "status", "posterior")
ROLES = ("picker", "positive", "negative")

# Literal[("a", "b")] is Literal["a", "b"]: built from the tuples so each list lives once.
Method = Literal[METHODS]  # type: ignore[valid-type]
Representative = Literal[REPRESENTATIVES]  # type: ignore[valid-type]
Edge = Literal[EDGES]  # type: ignore[valid-type]
Device = Literal[DEVICES]  # type: ignore[valid-type]
Positives = Literal[POSITIVES]  # type: ignore[valid-type]
Role = Literal[ROLES]  # type: ignore[valid-type]
