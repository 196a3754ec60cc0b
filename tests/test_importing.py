"""Input expansion: folders give the files an adapter claims; explicit files are kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from picks.core.errors import PicksError
from picks.workflows.importing import expand_inputs

CSV = "id,experiment,particle_type,x,y,z\n0,TS_1,ribosome,1,2,3\n"


def test_folder_expansion_skips_side_files(tmp_path: Path, registry):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.csv").write_text(CSV)
    (tmp_path / "a.csv").write_text(CSV)
    (tmp_path / "labels.txt").write_text("1 ribosome\n2 apo-ferritin\n")
    (tmp_path / "notes.csv").write_text("just,some,words\n")
    found = expand_inputs([tmp_path], registry)
    assert found == [tmp_path / "a.csv", tmp_path / "sub" / "b.csv"]
    # A file named explicitly is kept, so that reading it fails loudly rather than silently.
    assert expand_inputs([tmp_path / "labels.txt"], registry) == [tmp_path / "labels.txt"]


def test_empty_or_foreign_folder_is_an_error(tmp_path: Path, registry):
    (tmp_path / "README").write_text("nothing here")
    with pytest.raises(PicksError, match="no file any adapter reads"):
        expand_inputs([tmp_path], registry)
    with pytest.raises(PicksError, match="does not exist"):
        expand_inputs([tmp_path / "missing.csv"], registry)
