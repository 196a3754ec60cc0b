"""Picker outputs as the pickers leave them: crYOLO's one CBOX per tomogram and class (name
patterns), RELION class numbers named with ``labels=``, a copick project's config file, and
``picks convert`` of picks without a class.

The crYOLO files are the real fixture ``cryolo/3d_particle.cbox`` (3 picks; first corner
12.257084, 27.721405, Z 50, box 25) copied under the names crYOLO gives per tomogram and class.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from adapter_support import read_raw
from typer.testing import CliRunner

from picks.adapters.relion import Relion4Adapter
from picks.cli import get_app
from picks.core.errors import InputFormatError, NotFound, PicksError
from picks.workflows.importing import NamePattern, expand_inputs, import_file

runner = CliRunner()
CBOX = "cryolo/3d_particle.cbox"


def invoke(*args: object, **kwargs):
    return runner.invoke(get_app(), [str(a) for a in args], **kwargs)


def cryolo_folder(root: Path, formats_dir: Path, names: list[str]) -> Path:
    for name in names:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(formats_dir / CBOX, target)
    return root


# -- name patterns --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("{tomogram}__{particle}", "x/TS_01__ribosome.cbox", ("TS_01", "ribosome")),
        ("{tomogram}__{particle}.cbox", "TS_01__ribosome.cbox", ("TS_01", "ribosome")),
        ("{particle}/{tomogram}", "cryolo/apo-ferritin/TS_7.cbox", ("TS_7", "apo-ferritin")),
        ("{tomogram}_{}_{class}", "TS1_run3_ribosome.cbox", ("TS1", "ribosome")),
        ("{tomogram}", "cryolo/TS_01.picks.cbox", ("TS_01.picks", None)),
    ],
)
def test_name_pattern_parts(pattern: str, path: str, expected: tuple):
    found = NamePattern(pattern).match(Path(path))
    assert (found.get("tomogram"), found.get("particle")) == expected


@pytest.mark.parametrize(
    ("pattern", "path", "message"),
    [
        ("{tomogram}__{particle}", "TS_01.cbox", "'TS_01' does not fit"),
        ("{tomogram}__{particle}", "TS__01__ribosome.cbox", "in two ways"),
        ("{tomo}__{particle}", "TS_01__ribosome.cbox", r"unknown field\(s\) \{tomo\}"),
        ("TS_01", "TS_01.cbox", "names neither"),
        ("{particle}/{particle}", "a/b.cbox", "named twice"),
    ],
)
def test_name_pattern_errors(pattern: str, path: str, message: str):
    with pytest.raises(PicksError, match=message):
        NamePattern(pattern).match(Path(path))


def test_cbox_per_tomogram_and_class_import(tmp_path, formats_dir, store, registry):
    folder = cryolo_folder(
        tmp_path / "cryolo", formats_dir, ["TS_01__ribosome.cbox", "TS_02__apoferritin.cbox"]
    )
    files = expand_inputs([folder], registry)
    options = {"name": "{tomogram}__{particle}"}
    results = [import_file(store, f, registry, voxel_size=10.0, options=options) for f in files]
    # The class is canonical ("apoferritin" -> "apo-ferritin") and the report says where from.
    assert [r.named for r in results] == [
        "tomogram TS_01, class ribosome",
        "tomogram TS_02, class apo-ferritin",
    ]
    assert all(not r.warnings for r in results)  # `name` is not an unused adapter option
    picks = store.picks().sort_values(["tomogram", "record"])
    assert picks.groupby(["tomogram", "particle"]).size().to_dict() == {
        ("TS_01", "ribosome"): 3,
        ("TS_02", "apo-ferritin"): 3,
    }
    # Positions as without a pattern: corner + box/2, × 10 Å.
    first = picks.iloc[0]
    assert (first["x"], first["y"], first["z"]) == pytest.approx((247.57084, 402.21405, 500.0))
    # The pattern is recorded with the source.
    assert json.loads(store.sources()[0]["options"])["name"] == "{tomogram}__{particle}"


def test_folder_per_class(tmp_path, formats_dir, store, registry):
    folder = cryolo_folder(
        tmp_path / "cryolo", formats_dir, ["ribosome/TS_01.cbox", "beta-amylase/TS_01.cbox"]
    )
    for path in expand_inputs([folder], registry):
        import_file(
            store, path, registry, voxel_size=10.0, options={"name": "{particle}/{tomogram}"}
        )
    assert store.picks().groupby("particle").size().to_dict() == {
        "beta-amylase": 3,
        "ribosome": 3,
    }


def test_a_file_that_does_not_fit_is_an_error_naming_it(tmp_path, formats_dir, store, registry):
    folder = cryolo_folder(tmp_path / "cryolo", formats_dir, ["TS_01__ribosome.cbox", "TS_02.cbox"])
    result = invoke(
        "import", folder, "--voxel-size", 10, "--option", "name={tomogram}__{particle}",
        "--db", tmp_path / "p.db",
    )  # fmt: skip
    assert result.exit_code != 0
    assert "TS_02.cbox: the name 'TS_02' does not fit --option name={tomogram}__{particle}" in str(
        result.exception
    )


def test_import_report_shows_the_mapping(tmp_path, formats_dir):
    folder = cryolo_folder(tmp_path / "cryolo", formats_dir, ["TS_01__ribosome.cbox"])
    result = invoke(
        "import", folder, "--voxel-size", 10, "--option", "name={tomogram}__{particle}",
        "--db", tmp_path / "p.db",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "from its name: tomogram TS_01, class ribosome" in result.output
    assert result.output.count("tomogram TS_01, class ribosome") == 1  # not again on stderr
    as_json = invoke(
        "import", folder, "--voxel-size", 10, "--option", "name={tomogram}__{particle}",
        "--db", tmp_path / "p.db", "--json",
    )  # fmt: skip
    assert json.loads(as_json.stdout)[0]["from_name"] == {
        "tomogram": "TS_01",
        "particle": "ribosome",
    }


def test_a_file_with_its_own_classes_keeps_them_and_says_so(tmp_path, store, registry):
    csv = tmp_path / "TS_1__ribosome.csv"
    csv.write_text("id,experiment,particle_type,x,y,z\n0,TS_1,apo-ferritin,1500,2000,3000\n")
    result = import_file(store, csv, registry, options={"name": "{tomogram}__{particle}"})
    assert set(store.picks()["particle"]) == {"apo-ferritin"}
    assert any(
        "its own class(es) apo-ferritin, kept over class ribosome" in w for w in result.warnings
    )


def test_aggregate_a_cryolo_folder_as_cryolo_leaves_it(tmp_path, formats_dir):
    """The issue's case: per-class CBOX files in one folder, next to a second picker."""
    names = ["TS_01__ribosome.cbox", "TS_01__apo-ferritin.cbox"]
    folder = cryolo_folder(tmp_path / "cryolo", formats_dir, names)
    # A second picker with the same three positions (Å) per class, as a CZII CSV.
    positions = _cbox_positions(formats_dir, tmp_path)
    rows = ["id,experiment,particle_type,x,y,z"]
    for cls in ("ribosome", "apo-ferritin"):
        rows += [f"{len(rows)},TS_01,{cls},{x},{y},{z}" for x, y, z in positions]
    csv = tmp_path / "other.csv"
    csv.write_text("\n".join(rows) + "\n")
    common = [
        f"cryolo={folder}", f"other={csv}", "--voxel-size", 10, "--format", "csv",
        "--db", tmp_path / "p.db",
    ]  # fmt: skip
    # Without the pattern every CBOX pick has no class: the clustering cannot size it.
    plain = invoke("aggregate", *common, "--out", tmp_path / "o1")
    assert plain.exit_code != 0 and "(no class)" in str(plain.exception)
    result = invoke(
        "aggregate", *common, "--out", tmp_path / "o2",
        "--input-option", "cryolo:name={tomogram}__{particle}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "TS_01__ribosome.cbox -> tomogram TS_01, class ribosome" in result.output
    candidates = pd.read_csv(tmp_path / "o2" / "candidates.csv")
    # Both classes, and both pickers agree on every consensus pick of each.
    assert set(candidates["particle"]) == {"apo-ferritin", "ribosome"}
    assert all("cryolo" in p and "other" in p for p in candidates["pickers"])
    assert (candidates["accepted"] == 1).all()


def _cbox_positions(formats_dir: Path, tmp_path: Path) -> list[tuple[float, float, float]]:
    probe = tmp_path / "probe.csv"
    result = invoke(
        "convert", formats_dir / CBOX, probe, "--to", "czii-csv", "--voxel-size", 10,
        "--particle", "ribosome",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return list(pd.read_csv(probe)[["x", "y", "z"]].itertuples(index=False, name=None))


def test_convert_takes_the_name_pattern(tmp_path, formats_dir):
    src = cryolo_folder(tmp_path / "in", formats_dir, ["TS_01__ribosome.cbox"])
    result = invoke(
        "convert", src / "TS_01__ribosome.cbox", tmp_path / "o.csv", "--to", "czii-csv",
        "--voxel-size", 10, "--option", "name={tomogram}__{particle}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "o.csv")
    assert set(frame["experiment"]) == {"TS_01"} and set(frame["particle_type"]) == {"ribosome"}


# -- picks convert without a class ------------------------------------------------------------


def test_convert_refuses_classless_picks_for_formats_that_need_a_class(tmp_path, formats_dir):
    src = formats_dir / CBOX
    for to, target in (("czii-csv", tmp_path / "o.csv"), ("copick", tmp_path / "project")):
        result = invoke("convert", src, target, "--to", to, "--voxel-size", 10)
        assert result.exit_code != 0 and not target.exists()
        assert (
            f"3 of 3 picks have no class (the file names none and no --particle was given); {to} needs a class"
            in str(result.exception)
        )


def test_convert_warns_when_a_class_column_is_left_empty(tmp_path, formats_dir):
    result = invoke(
        "convert", formats_dir / CBOX, tmp_path / "o.xml", "--to", "deepfinder-xml",
        "--voxel-size", 10, "--to-voxel-size", 10,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "3 of 3 picks have no class" in result.output
    # A format without a class field says nothing.
    quiet = invoke(
        "convert", formats_dir / CBOX, tmp_path / "boxes", "--to", "cryolo-cbox",
        "--voxel-size", 10, "--to-voxel-size", 10, "--to-option", "box=25",
    )  # fmt: skip
    assert quiet.exit_code == 0 and "no class" not in quiet.output


# -- RELION class numbers -----------------------------------------------------------------------


def two_class_star(formats_dir: Path, tmp_path: Path) -> Path:
    """The real RELION 3 fixture with every second particle moved to class 2 (the
    rlnClassNumber token, column 14, is the only change)."""
    lines = (formats_dir / "relion3_4/portal_relion_3_star.star").read_text().splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("_rln")]
    index = [lines[i].split()[0] for i in header].index("_rlnClassNumber")
    first = header[-1] + 1
    out, n = [], 0
    for i, line in enumerate(lines):
        tokens = line.split()
        if i >= first and len(tokens) == len(header):
            if n % 2:
                tokens[index] = "2"
                line = " ".join(tokens)
            n += 1
        out.append(line)
    path = tmp_path / "two_classes.star"
    path.write_text("\n".join(out) + "\n")
    return path


def test_relion_labels_name_class_numbers(tmp_path, formats_dir):
    path = two_class_star(formats_dir, tmp_path)
    frame, ctx = read_raw(Relion4Adapter(), path, options={"labels": "1=ribosome,2=apoferritin"})
    counts = frame["particle"].value_counts().to_dict()
    assert (
        set(counts) == {"ribosome", "apo-ferritin"}
        and abs(counts["ribosome"] - counts["apo-ferritin"]) <= 1
    )
    assert set(frame["particle_field"]) == {"rlnClassNumber"}
    assert not ctx.options.unused() and not ctx.warnings


def test_relion_labels_through_import_do_not_warn_unused(tmp_path, formats_dir, store, registry):
    path = two_class_star(formats_dir, tmp_path)
    result = import_file(
        store, path, registry, adapter="relion4", options={"labels": "1=ribosome,2=apo-ferritin"}
    )
    assert not result.warnings
    assert set(store.picks()["particle"]) == {"ribosome", "apo-ferritin"}


def test_relion_labels_file_and_unnamed_numbers(tmp_path, formats_dir):
    path = two_class_star(formats_dir, tmp_path)
    labels = tmp_path / "labels.txt"
    labels.write_text("# crYOLO-free class names\n1 ribosome\n")
    frame, ctx = read_raw(Relion4Adapter(), path, options={"labels": str(labels)})
    assert set(frame["particle"]) == {"ribosome", "2"}
    assert ctx.warnings == [
        "rlnClassNumber value(s) 2 are not in `options` labels: kept as class names"
    ]


def test_relion_labels_without_a_class_column_is_an_error(formats_dir):
    path = formats_dir / "relion3_4/portal_tomoman_relion_star.star"
    if "rlnClassNumber" in path.read_text():
        pytest.skip("fixture gained a class column")
    with pytest.raises(
        InputFormatError, match="no rlnClassNumber column to take the class numbers"
    ):
        read_raw(Relion4Adapter(), path, options={"labels": "1=ribosome"}, voxel_size=10.0)


# -- copick project config -------------------------------------------------------------------


def copick_project(tmp_path: Path, formats_dir: Path, root_text: str | None = None) -> Path:
    """The real config template with its overlay_root pointed at a small local project."""
    root = tmp_path / "project"
    picks_dir = root / "ExperimentRuns" / "TS_01" / "Picks"
    picks_dir.mkdir(parents=True)
    shutil.copyfile(
        formats_dir / "copick" / "portal_copick_instance.json", picks_dir / "alice_1_ribosome.json"
    )
    config = json.loads((formats_dir / "copick" / "copick_config_overlay_local.json").read_text())
    config["overlay_root"] = root_text if root_text is not None else f"local://{root}/"
    path = tmp_path / "copick_config.json"
    path.write_text(json.dumps(config))
    return path


def test_copick_config_opens_the_project(tmp_path, formats_dir, registry, store):
    config = copick_project(tmp_path, formats_dir)
    files = expand_inputs([config], registry)
    assert [f.name for f in files] == ["alice_1_ribosome.json"]
    direct = expand_inputs([tmp_path / "project"], registry)
    assert files == direct
    result = import_file(store, files[0], registry)
    assert result.adapter == "copick" and result.n_picks > 0


def test_copick_config_relative_root_and_cli(tmp_path, formats_dir):
    config = copick_project(tmp_path, formats_dir, root_text="project")
    result = invoke("import", config, "--db", tmp_path / "p.db")
    assert result.exit_code == 0, result.output
    assert "alice_1_ribosome.json" in result.output and "(copick" in result.output


def test_copick_config_remote_or_missing_root_is_an_error(tmp_path, formats_dir, registry):
    remote = copick_project(tmp_path / "a", formats_dir, root_text="s3://bucket/project/")
    with pytest.raises(PicksError, match="is not a local folder"):
        expand_inputs([remote], registry)
    missing = copick_project(tmp_path / "b", formats_dir, root_text="local:///no/such/project")
    with pytest.raises(NotFound, match="no such folder"):
        expand_inputs([missing], registry)
