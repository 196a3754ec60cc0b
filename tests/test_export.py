"""``picks export``: a stored run's decisions written by the code aggregate writes them with
(byte for byte), recorded in ``exports``/``export_members`` (m008), refused for unfinished
runs; RELION 5's one ``tomograms.star`` per folder and copick's project config."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import starfile
from sqlite_utils import Database
from typer.testing import CliRunner

from picks.cli import get_app
from picks.core.store import Store
from picks.core.store.audit import audit_consensus
from picks.core.store.migrations import migrations

runner = CliRunner()
COMPARED = ("relion5", "cryolo-cbox", "czii-csv", "candidates.csv", "submission.csv")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path, int]:
    """(consensus folder, store, run id) of a small ``picks demo`` (relion5, box, czii-csv)."""
    from picks.workflows.demo import run_demo

    folder = tmp_path_factory.mktemp("export") / "demo"
    result = run_demo(folder, seed=3, n_tomograms=2, size=(96, 96, 48), method="latent", plot=False)
    return result.aggregate.out, result.db, result.aggregate.run_id


def copy_store(db: Path, target: Path) -> Path:
    """A copy of the demo's store (WAL included), so each test changes its own."""
    with sqlite3.connect(db) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    return target


def invoke(*args: str):
    return runner.invoke(get_app(), [str(a) for a in args])


def error(result) -> str:
    """What the user sees of a refused command: the error and its hint, as flags."""
    assert result.exit_code != 0, result.output
    exc = result.exception
    return f"{exc} {getattr(exc, 'hint', '') or ''}"


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for name in COMPARED
        for p in ([folder / name] if (folder / name).is_file() else (folder / name).rglob("*"))
        if p.is_file()
    }


def test_export_writes_exactly_what_aggregate_wrote(demo, tmp_path: Path):
    consensus, db, run_id = demo
    db = copy_store(db, tmp_path / "picks.db")
    out = tmp_path / "again"
    result = invoke("export", run_id, "--db", db, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    expected = files_under(consensus)
    assert len(expected) > 10 and any(k.startswith("relion5/") for k in expected)
    assert files_under(out) == expected  # same files, same bytes
    assert report["formats"] == ["relion5", "cryolo-cbox", "czii-csv"]  # the run's own
    # recorded: the export is its own run, and audit names its files for an accepted pick
    with Store(db) as store:
        export_run = store.get_run(report["export_run_id"])
        assert export_run["command"] == "export" and export_run["status"] == "ok"
        assert json.loads(export_run["params"])["run"] == run_id
        final = store.consensus(run_id)
        accepted = int(final.loc[final["accepted"].astype(bool), "id"].iloc[0])
        files = [e for e in audit_consensus(store, accepted)["exports"]]
        mine = [e for e in files if e["run_id"] == report["export_run_id"]]
        assert {e["format"] for e in mine} == {"relion5", "cryolo-cbox", "czii-csv"} | {
            "candidates",
            "czii-submission",
        }
        assert all(e["state"] == "current" for e in mine)
        assert {e["run_id"] for e in files} == {run_id, report["export_run_id"]}


def test_export_all_candidates_and_refusals(demo, tmp_path: Path):
    _, db, run_id = demo
    db = copy_store(db, tmp_path / "picks.db")
    out = tmp_path / "all"
    result = invoke("export", run_id, "--db", db, "--out", out, "--format", "csv", "--all")
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        n_candidates = len(store.consensus(run_id))
    written = pd.concat(pd.read_csv(p) for p in sorted((out / "czii-csv").glob("*.csv")))
    assert len(written) == n_candidates  # rejected candidates too
    # an existing output is not replaced without --force
    again = invoke("export", run_id, "--db", db, "--out", out, "--format", "csv")
    assert "exist" in error(again) and "--force" in error(again)
    forced = invoke("export", run_id, "--db", db, "--out", out, "--format", "csv", "--force")
    assert forced.exit_code == 0, forced.output
    n_accepted = sum(len(pd.read_csv(p)) for p in (out / "czii-csv").glob("*.csv"))
    assert 0 < n_accepted < n_candidates
    # a run that did not finish is refused unless asked for
    with Store(db) as store:
        store.finish_run(run_id, "failed", "killed")
    refused = invoke("export", run_id, "--db", db, "--out", tmp_path / "x", "--format", "csv")
    assert "is failed" in error(refused) and "--allow-incomplete" in error(refused)
    assert not (tmp_path / "x").exists()
    allowed = invoke(
        "export", run_id, "--db", db, "--out", tmp_path / "x", "--format", "csv",
        "--allow-incomplete",
    )  # fmt: skip
    assert allowed.exit_code == 0, allowed.output
    assert "incomplete" in allowed.output
    missing = invoke("export", 999, "--db", db, "--out", tmp_path / "y")
    assert "no run with id 999" in error(missing)


def test_relion5_folder_has_one_tomograms_star_for_all_particle_files(demo):
    consensus, _, _ = demo
    folder = consensus / "relion5"
    assert not list(folder.glob("*_tomograms.star"))  # no per-class copy any more
    table = starfile.read(folder / "tomograms.star")
    names = set(table["rlnTomoName"])
    referenced: set[str] = set()
    for path in sorted(folder.glob("*.star")):
        if path.name == "tomograms.star":
            continue
        blocks = starfile.read(path, always_dict=True)
        particles = blocks["particles"]
        assert {
            "rlnTomoName",
            "rlnCenteredCoordinateXAngst",
            "rlnCenteredCoordinateYAngst",
            "rlnCenteredCoordinateZAngst",
        } <= set(particles.columns)
        assert "rlnTomoTiltSeriesPixelSize" in blocks["optics"].columns
        referenced |= set(particles["rlnTomoName"])
    assert referenced and referenced <= names
    assert {"rlnTomoSizeX", "rlnTomoTiltSeriesPixelSize"} <= set(table.columns)


def test_a_class_cannot_take_the_tomograms_star_name(tmp_path: Path):
    from picks.core.errors import PicksError
    from picks.workflows.aggregate import aggregate

    rows = "experiment,particle_type,x,y,z\n" + "".join(
        f"TS_1,tomograms,{100 + i * 300},{100 + i * 200},{200},\n".rstrip(",\n") + "\n"
        for i in range(3)
    )
    csv = tmp_path / "a.csv"
    csv.write_text(rows)
    with Store(tmp_path / "picks.db") as store, pytest.raises(PicksError, match=r"tomograms\.star"):
        aggregate(
            store,
            [f"a={csv}"],
            out=tmp_path / "out",
            formats=["star"],
            voxel_size=10.0,
            method="vote",
            min_support=1,
            radii={"tomograms": 100.0},
            report=False,
        )
    assert not list((tmp_path / "out").rglob("*.star"))


def test_copick_output_opens_with_its_project_config_and_reads_back(demo, tmp_path: Path):
    from picks.plugins.manager import get_registry

    _, db, run_id = demo
    db = copy_store(db, tmp_path / "picks.db")
    out = tmp_path / "cp"
    result = invoke("export", run_id, "--db", db, "--out", out, "--format", "copick")
    assert result.exit_code == 0, result.output
    root = out / "copick"
    config = json.loads((root / "copick_config.json").read_text())
    assert config["config_type"] == "filesystem"
    assert config["overlay_root"] == f"local://{root.resolve()}"
    objects = config["pickable_objects"]
    names = [o["name"] for o in objects]
    assert names == sorted(names) and [o["label"] for o in objects] == list(
        range(1, len(names) + 1)
    )
    assert all(o["is_particle"] and len(o["color"]) == 4 for o in objects)
    radius = {o["name"]: o["radius"] for o in objects}
    assert radius.get("ribosome", 150.0) == 150.0 and radius.get("apo-ferritin", 60.0) == 60.0
    with Store(db) as store:
        final = store.consensus(run_id)
    accepted = final[final["accepted"].astype(bool)]
    assert set(names) == set(accepted["particle"])
    # picks reads its own output back: same positions, every accepted pick once
    adapter = get_registry().get("copick")
    from picks.plugins.adapter import ReadContext

    back = pd.concat(
        adapter.read(p, ReadContext(path=p)) for p in sorted(root.rglob("Picks/*.json"))
    )
    assert len(back) == len(accepted)
    got = back.sort_values(["tomogram", "particle", "x", "y", "z"])[["x", "y", "z"]].to_numpy()
    want = accepted.sort_values(["tomogram", "particle", "x", "y", "z"])[["x", "y", "z"]]
    assert abs(got - want.to_numpy(dtype=float)).max() < 1e-6


def _copick_export(demo, tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    _, db, run_id = demo
    db = copy_store(db, tmp_path / "picks.db")
    out = tmp_path / "cp"
    result = invoke("export", run_id, "--db", db, "--out", out, "--format", "copick")
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        final = store.consensus(run_id)
    return out / "copick", final[final["accepted"].astype(bool)]


# copick is not a test dependency: its package pins zarr<3 (picks runs on zarr 3) and pulls in
# boto3 and the data portal client (docs/outputs.md). Its pydantic models import fine beside
# zarr 3 (`pip install --no-deps copick pydantic`); its filesystem layer does not.
def test_copick_models_accept_the_config_and_every_picks_file(demo, tmp_path: Path):
    models = pytest.importorskip("copick.models", reason="copick is not installed")
    root, accepted = _copick_export(demo, tmp_path)
    config = models.CopickConfig.model_validate_json((root / "copick_config.json").read_text())
    assert sorted(o.name for o in config.pickable_objects) == sorted(set(accepted["particle"]))
    n = 0
    for path in sorted(root.rglob("Picks/*.json")):
        picks = models.CopickPicksFile.model_validate_json(path.read_text())
        assert picks.user_id == "picks" and picks.pickable_object_name in set(accepted["particle"])
        n += len(picks.points)
    assert n == len(accepted)


def test_copick_opens_the_output_project(demo, tmp_path: Path):
    try:
        import copick
        import copick.impl.filesystem  # (needs zarr<3)
    except Exception as exc:  # ImportError, or zarr 3's missing FSStore (AttributeError)
        pytest.skip(f"copick's filesystem layer is not usable here: {exc}")
    root, accepted = _copick_export(demo, tmp_path)
    project = copick.from_file(str(root / "copick_config.json"))
    assert sorted(o.name for o in project.pickable_objects) == sorted(set(accepted["particle"]))
    n = sum(len(p.points) for r in project.runs for p in r.get_picks(user_id="picks"))
    assert n == len(accepted)


def test_an_existing_copick_config_only_gains_missing_classes(tmp_path: Path):
    from picks.adapters.copick import project_config

    path = tmp_path / "copick_config.json"
    mine = {
        "config_type": "filesystem",
        "overlay_root": "local:///data/project",
        "pickable_objects": [{"name": "ribosome", "is_particle": True, "label": 7, "radius": 140}],
    }
    path.write_text(json.dumps(mine))
    config = project_config(path, tmp_path, ["apo-ferritin", "ribosome", "vesicle"], {}, "u", "s")
    assert config["overlay_root"] == "local:///data/project"  # the user's project stays
    objects = {o["name"]: o for o in config["pickable_objects"]}
    assert objects["ribosome"] == mine["pickable_objects"][0]
    assert objects["apo-ferritin"]["label"] == 8 and objects["apo-ferritin"]["radius"] == 60.0
    assert objects["vesicle"]["label"] == 9 and objects["vesicle"]["radius"] is None  # unknown
    path.write_text("{not json")
    from picks.core.errors import PicksError

    with pytest.raises(PicksError, match="copick config"):
        project_config(path, tmp_path, ["x"], {}, "u", "s")


def test_m008_expands_compact_ranges_into_member_rows(tmp_path: Path):
    names = [m.name for m in migrations._migrations]
    db = Database(tmp_path / "old.db")
    migrations.apply(db, stop_before="m008_export_members")
    db["runs"].insert({"id": 1, "command": "aggregate", "status": "ok"})
    db["consensus"].insert_all(
        [{"id": i, "run_id": 1, "tomogram": "T", "x": 0.0, "y": 0.0, "z": 0.0} for i in range(1, 8)]
    )
    db["exports"].insert_all(
        [
            {"id": 1, "run_id": 1, "path": "/a", "n_rows": 4, "consensus_ids": "1-3,5"},
            {"id": 2, "run_id": 1, "path": "/b", "n_rows": 0, "consensus_ids": ""},
            {"id": 3, "run_id": 1, "path": "/c", "n_rows": 2, "consensus_ids": "6-7"},
        ]
    )
    db.close()
    with Store(tmp_path / "old.db") as store:
        assert [m.name for m in migrations.applied(store.db)] == names
        assert store.export_members(1) == [1, 2, 3, 5]
        assert store.export_members(2) == []
        assert store.export_members(3) == [6, 7]
        assert "consensus_ids" not in store.db["exports"].columns_dict
        assert [e["path"] for e in audit_consensus(store, 2)["exports"]] == ["/a"]


def test_copick_config_survives_force_reruns_and_a_users_config_is_never_recorded(
    demo, tmp_path: Path
):
    _, db, run_id = demo
    db = copy_store(db, tmp_path / "picks.db")
    out = tmp_path / "cp"
    config = out / "copick" / "copick_config.json"
    for args in ((), ("--force",)):  # a second export with --force keeps (rewrites) it
        result = invoke("export", run_id, "--db", db, "--out", out, "--format", "copick", *args)
        assert result.exit_code == 0, result.output
        assert config.is_file()
    with Store(db) as store:
        recorded = [p for p, _, _ in store.export_history() if p.endswith("copick_config.json")]
    assert recorded == [str(config.resolve())] * 2
    # a user's own project config in the folder: updated, never recorded as picks' file
    user = tmp_path / "user"
    (user / "copick").mkdir(parents=True)
    (user / "copick" / "copick_config.json").write_text(
        json.dumps(
            {"config_type": "filesystem", "overlay_root": "local:///p", "pickable_objects": []}
        )
    )
    result = invoke("export", run_id, "--db", db, "--out", user, "--format", "copick", "--force")
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        paths = [p for p, _, _ in store.export_history()]
    assert str((user / "copick" / "copick_config.json").resolve()) not in paths
    kept = json.loads((user / "copick" / "copick_config.json").read_text())
    assert kept["overlay_root"] == "local:///p" and kept["pickable_objects"]


def test_export_writes_the_current_decisions_after_a_rescoring(demo, tmp_path: Path):
    """A later stage (``picks score``) stores new decisions: export writes those, not the
    ones aggregate wrote."""
    _, db, run_id = demo
    db = copy_store(db, tmp_path / "picks.db")
    with Store(db) as store:
        final = store.consensus(run_id)
        free = final[final["accepted"].astype(bool) & ~final["forced"].fillna(0).astype(bool)]
        dropped = free.iloc[:3].assign(
            accepted=False, score=0.0, reason="rescored", decided_by="cnn"
        )
        store.set_decisions(dropped[["id", "accepted", "score", "reason", "decided_by"]])
    out = tmp_path / "rescored"
    result = invoke("export", run_id, "--db", db, "--out", out, "--format", "csv", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_written"] == int(final["accepted"].astype(bool).sum()) - 3
    written = pd.concat(pd.read_csv(p) for p in sorted((out / "czii-csv").glob("*.csv")))
    assert not set(dropped["id"]) & set(written["consensus_id"])
    candidates = pd.read_csv(out / "candidates.csv").set_index("consensus_id")
    assert (candidates.loc[dropped["id"], "accepted"] == 0).all()
    assert (candidates.loc[dropped["id"], "reason"] == "rescored").all()
