"""``picks aggregate`` end to end on hand-made CZII CSV files, ``picks noise`` and audit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from picks.cli import get_app
from picks.core.errors import PicksError
from picks.core.store import Store
from picks.core.store.audit import audit_consensus
from picks.evaluate.metric import score
from picks.workflows.aggregate import aggregate
from picks.workflows.inputs import parse_input, parse_input_options

runner = CliRunner()
HEADER = "id,experiment,particle_type,x,y,z,score\n"

# Ground truth: ribosomes and apo-ferritins in two tomograms (Å).
TRUTH = [
    ("TS_1", "ribosome", 1000, 1000, 400),
    ("TS_1", "ribosome", 1300, 1000, 400),
    ("TS_1", "ribosome", 3000, 2500, 600),
    ("TS_1", "apo-ferritin", 2000, 500, 300),
    ("TS_2", "ribosome", 800, 800, 300),
    ("TS_2", "apo-ferritin", 1500, 1500, 500),
]


def invoke(*args: str):
    return runner.invoke(get_app(), [str(a) for a in args], catch_exceptions=False)


def write_csv(path: Path, rows: list[tuple], *, shuffle_seed: int | None = None) -> Path:
    """rows: (tomogram, class, x, y, z, score); written in a shuffled order when asked."""
    if shuffle_seed is not None:
        rows = [rows[i] for i in np.random.default_rng(shuffle_seed).permutation(len(rows))]
    lines = [HEADER] + [
        f"{i},{t},{p},{x},{y},{z},{s}\n" for i, (t, p, x, y, z, s) in enumerate(rows)
    ]
    path.write_text("".join(lines))
    return path


def picker_rows(
    offset: tuple[float, float, float], skip: set[int], extra: list[tuple] = ()
) -> list[tuple]:
    rows = []
    for i, (t, p, x, y, z) in enumerate(TRUTH):
        if i not in skip:
            rows.append(
                (t, p, x + offset[0], y + offset[1], z + offset[2], round(0.9 - 0.1 * i, 2))
            )
    return rows + list(extra)


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    return {
        "a": write_csv(
            folder / "a.csv",
            picker_rows((10, 0, 0), set(), [("TS_1", "ribosome", 5000, 5000, 500, 0.1)]),
        ),
        # b reports the first ribosome twice (a duplicate 20 Å away)
        "b": write_csv(
            folder / "b.csv",
            picker_rows((-15, 5, 0), {5}, [("TS_1", "ribosome", 1005, 1020, 400, 0.2)]),
        ),
        "c": write_csv(folder / "c.csv", picker_rows((0, 20, -10), {2, 3})),
    }


def labelled(inputs: dict[str, Path], order: str = "abc") -> list[str]:
    return [f"{k}={inputs[k]}" for k in order]


def read_outputs(out: Path) -> dict[str, pd.DataFrame]:
    return {p.name: pd.read_csv(p) for p in sorted((out / "czii-csv").glob("*.csv"))}


def test_aggregate_cli_end_to_end(tmp_path: Path, inputs: dict[str, Path]):
    db, out = tmp_path / "picks.db", tmp_path / "out"
    result = invoke(
        "aggregate",
        *labelled(inputs),
        "--method",
        "vote",
        "--out",
        out,
        "--format",
        "csv",
        "--db",
        db,
    )
    assert result.exit_code == 0, result.output
    assert "in:a" in result.output and "in:c" in result.output and "accepted" in result.output
    outputs = read_outputs(out)
    assert sorted(outputs) == ["apo-ferritin.csv", "ribosome.csv"]
    ribo = outputs["ribosome.csv"]
    assert {"consensus_id", "support", "score"} <= set(ribo.columns)
    # 3 pickers -> default min support 2: four ribosomes found by ≥ 2, the decoy at 5000 is not
    assert len(ribo) == 4 and (ribo["support"] >= 2).all()
    assert len(outputs["apo-ferritin.csv"]) == 2
    with Store(db) as store:
        assert store.count("sources") == 3
        run = store.runs()[-1]
        assert run["command"] == "aggregate" and run["method"] == "vote" and run["status"] == "ok"
        params = json.loads(run["params"])
        assert params["seed"] == 0 and params["formats"] == ["czii-csv"]
        assert params["resolved"]["support_rules"]["ribosome"]["min_support"] == 2
        consensus = pd.DataFrame(store.db["consensus"].rows)
        members = pd.DataFrame(store.db["consensus_members"].rows)
        assert len(members) == store.count("picks")  # every raw pick is a member exactly once
        assert members["pick_id"].is_unique
        accepted = consensus[consensus["accepted"] == 1]
        assert len(accepted) == 6
        everything = list(store.db["exports"].rows)
        exports = [r for r in everything if r["format"] not in ("candidates", "czii-submission")]
        assert [r["path"] for r in everything if r["format"] == "czii-submission"] == [
            str(out / "submission.csv")
        ]
        assert len(exports) == 2
        decisions = [r for r in everything if r["format"] == "candidates"]
        assert len(decisions) == 1 and decisions[0]["n_rows"] == len(consensus)
        table = pd.read_csv(decisions[0]["path"])  # every candidate, accepted or not
        assert sorted(table["consensus_id"]) == sorted(consensus["id"])
        assert table["accepted"].sum() == 6 and set(table["status"]) >= {"positive", "negative"}
        assert {"support", "pickers", "vote_score", "reason"} <= set(table.columns)
        for row in exports:
            written = pd.read_csv(row["path"])
            assert row["n_rows"] == len(written)
            # one export_members row per consensus pick the file holds (m008)
            assert store.export_members(row["id"]) == sorted(written["consensus_id"])
        # b's duplicate is a member of the first ribosome's consensus pick
        dup = members[members["duplicate_of"].notna()]
        assert len(dup) == 1 and dup.iloc[0]["picker"] == "b"
        first_ribo = int(ribo["consensus_id"].iloc[0])
        report = audit_consensus(store, first_ribo)
    assert {m["picker"] for m in report["members"]} == {"a", "b", "c"}
    # its set, candidates.csv and the CZII submission
    assert len(report["members"]) == 4 and len(report["exports"]) == 3

    text = invoke("audit", first_ribo, "--db", db).output
    assert f"Consensus pick {first_ribo}" in text and "ACCEPTED" in text
    assert str(inputs["a"]) in text and "record 2" in text  # file and line of a's pick
    assert "duplicate of raw pick" in text
    assert "ribosome.csv (czii-csv)" in text
    exported = tmp_path / "audit.json"
    invoke("audit", first_ribo, "--db", db, "--export", exported)
    data = json.loads(exported.read_text())
    assert data["consensus"]["id"] == first_ribo and len(data["members"]) == 4
    assert data["run"]["params"]["inputs"][0].startswith("a=")
    assert any(e["path"].endswith("ribosome.csv") for e in data["exports"])

    as_json = json.loads(
        invoke(
            "aggregate",
            *labelled(inputs),
            "--method",
            "vote",
            "--out",
            out,
            "--format",
            "csv",
            "--db",
            db,
            "--json",
            "--force",
        ).output
    )
    assert as_json["n_accepted"] == 6 and as_json["pickers"] == ["a", "b", "c"]


def test_same_inputs_in_any_order_give_identical_outputs(tmp_path: Path, inputs: dict[str, Path]):
    first = aggregate(
        Store(tmp_path / "1.db"), labelled(inputs), out=tmp_path / "o1", formats=["csv"]
    )
    # the same picks, rows shuffled inside the files, files given in another order
    shuffled = {}
    for k, path in inputs.items():
        rows = pd.read_csv(path)
        rows = rows.iloc[np.random.default_rng(len(k) + ord(k)).permutation(len(rows))]
        shuffled[k] = tmp_path / f"shuffled_{k}.csv"
        rows.assign(id=range(len(rows))).to_csv(shuffled[k], index=False)
    second = aggregate(
        Store(tmp_path / "2.db"), labelled(shuffled, "cab"), out=tmp_path / "o2", formats=["csv"]
    )
    assert first.consensus_ids == second.consensus_ids
    one, two = read_outputs(tmp_path / "o1"), read_outputs(tmp_path / "o2")
    assert one.keys() == two.keys()
    for name in one:
        assert (tmp_path / "o1" / "czii-csv" / name).read_bytes() == (
            tmp_path / "o2" / "czii-csv" / name
        ).read_bytes()
    columns = [
        "id",
        "tomogram",
        "particle",
        "x",
        "y",
        "z",
        "support",
        "status",
        "accepted",
        "reason",
    ]
    with Store(tmp_path / "1.db") as s1, Store(tmp_path / "2.db") as s2:
        c1 = pd.DataFrame(s1.db["consensus"].rows)[columns]
        c2 = pd.DataFrame(s2.db["consensus"].rows)[columns]
    pd.testing.assert_frame_equal(c1, c2)


def test_rerun_reuses_sources_and_refuses_to_overwrite(tmp_path: Path, inputs: dict[str, Path]):
    store = Store(tmp_path / "picks.db")
    first = aggregate(store, labelled(inputs), out=tmp_path / "out", formats=["csv"], method="vote")
    with pytest.raises(PicksError, match="exist"):
        aggregate(store, labelled(inputs), out=tmp_path / "out", formats=["csv"])
    second = aggregate(
        store,
        labelled(inputs),
        out=tmp_path / "out",
        formats=["csv"],
        force=True,
        min_support=3,
        method="vote",
    )
    assert store.count("sources") == 3  # same sha256: nothing imported again
    assert second.run_id > first.run_id and second.consensus_ids[0] > first.consensus_ids[1]
    assert second.n_accepted < first.n_accepted
    assert [r["status"] for r in store.runs()] == ["ok", "ok"]  # refused before any run started
    # a new label for the same file is taken for this run only
    third = aggregate(
        store, [f"x={inputs['a']}", f"y={inputs['b']}"], out=tmp_path / "o3", formats=["csv"]
    )
    assert third.pickers == ["x", "y"]


def test_trusted_references(tmp_path: Path, inputs: dict[str, Path]):
    # a gold bead where all three pickers agree on a "ribosome", and a hand-picked ribosome
    # that only picker a found (the decoy at 5000), and one that nobody found
    beads = write_csv(tmp_path / "beads.csv", [("TS_1", "", 3000, 2500, 600, 1.0)])
    hand = write_csv(
        tmp_path / "hand.csv",
        [("TS_1", "ribosome", 5000, 5010, 500, 1.0), ("TS_2", "ribosome", 3000, 3000, 300, 1.0)],
    )
    db = tmp_path / "picks.db"
    result = invoke(
        "aggregate",
        *labelled(inputs),
        "--method",
        "vote",
        "--out",
        tmp_path / "out",
        "--format",
        "csv",
        "--db",
        db,
        "--negative",
        f"beads={beads}",
        "--positive",
        hand,
    )
    assert result.exit_code == 0, result.output
    with Store(db) as store:
        roles = {s["picker"]: s["role"] for s in store.sources()}
        assert roles["beads"] == "negative" and "positive" in roles.values()
        rows = pd.DataFrame(store.db["consensus"].rows)
        bead = rows[(rows["x"].between(2990, 3010)) & (rows["tomogram"] == "TS_1")].iloc[0]
        assert bead["accepted"] == 0 and bead["status"] == "negative"
        assert bead["reason"].startswith("negative reference pick") and "(beads)" in bead["reason"]
        decoy = rows[(rows["x"] == 5000) & (rows["y"] == 5000)].iloc[0]  # only a picked it
        assert decoy["accepted"] == 1 and decoy["reason"].startswith("positive reference pick")
        lone = rows[rows["status"] == "reference"]
        assert (
            len(lone) == 1 and lone.iloc[0]["tomogram"] == "TS_2" and lone.iloc[0]["accepted"] == 1
        )
        report = audit_consensus(store, int(lone.iloc[0]["id"]))
        assert report["members"][0]["role"] == "positive"
    ribo = read_outputs(tmp_path / "out")["ribosome.csv"]
    assert not ((ribo["experiment"] == "TS_1") & ribo["y"].between(2490, 2530)).any()  # the bead
    assert len(ribo) == 5  # 4 - bead + decoy + lone
    # references stay in the store: a later run without --positive/--negative still uses them
    again = aggregate(Store(db), labelled(inputs), out=tmp_path / "again", formats=["csv"])
    assert {r["label"] for r in again.references} == {"beads", "hand"}


def write_tomogram(path: Path, shape_zyx=(80, 600, 600), voxel_size: float = 10.0) -> Path:
    import mrcfile

    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.zeros(shape_zyx, dtype=np.float32))
        mrc.voxel_size = voxel_size
    return path


def test_noise_is_sampled_with_tomograms(tmp_path: Path, inputs: dict[str, Path]):
    tomos = tmp_path / "tomos"
    tomos.mkdir()
    write_tomogram(tomos / "TS_1.mrc")
    write_tomogram(tomos / "TS_2.mrc", (60, 300, 300))
    db = tmp_path / "picks.db"
    result = invoke(
        "aggregate",
        *labelled(inputs),
        "--tomograms",
        tomos,
        "--method",
        "vote",
        "--out",
        tmp_path / "out",
        "--format",
        "csv",
        "--noise-ratio",
        "2",
        "--noise-evasion",
        "300",
        "--seed",
        "5",
        "--db",
        db,
    )
    assert result.exit_code == 0, result.output
    assert "noise:" in result.output
    with Store(db) as store:
        run_id = store.runs()[-1]["id"]
        assert json.loads(store.runs()[-1]["params"])["noise_evasion"] == 300.0
        noise = pd.DataFrame(store.db["noise"].rows_where("run_id = ?", [run_id]))
        consensus = pd.DataFrame(store.db["consensus"].rows)
        picks = store.picks()
    positives = consensus[consensus["status"] == "positive"].groupby("tomogram").size()
    assert noise.groupby("tomogram").size().to_dict() == (2 * positives).to_dict()
    for name, group in noise.groupby("tomogram"):
        xyz = group[["x", "y", "z"]].to_numpy()
        near = picks[picks["tomogram"] == name][["x", "y", "z"]].to_numpy()
        d = np.linalg.norm(xyz[:, None] - near[None], axis=2)
        assert (d > 300.0).all()  # --noise-evasion from every pick

    # `picks noise` on the same run: refuses to replace without --force, then replaces
    with pytest.raises(PicksError, match="already has"):
        invoke("noise", "--run", run_id, "--db", db)
    out = invoke(
        "noise", "--run", run_id, "--count", "7", "--force", "--seed", "1", "--db", db, "--json"
    )
    rows = json.loads(out.output)["tomograms"]
    assert rows == [
        {"tomogram": "TS_1", "requested": 7, "sampled": 7},
        {"tomogram": "TS_2", "requested": 7, "sampled": 7},
    ]
    with Store(db) as store:
        assert store.db["noise"].count_where("run_id = ?", [run_id]) == 14


def test_cnn_summary_warnings_reach_the_user(tmp_path: Path, inputs: dict[str, Path], monkeypatch):
    """The CNN stage's summary warnings are printed by ``picks aggregate`` (and in --json)."""
    from picks.workflows import rescore

    def fake_rescore_consensus(store, run_id, consensus, options, **kwargs):
        return consensus, {"method": "cnn", "run_id": run_id, "warnings": ["only 12 positives"]}

    monkeypatch.setattr(rescore, "rescore_consensus", fake_rescore_consensus)
    tomos = tmp_path / "tomos"
    tomos.mkdir()
    write_tomogram(tomos / "TS_1.mrc")
    write_tomogram(tomos / "TS_2.mrc", (60, 300, 300))
    common = ["--tomograms", tomos, "--method", "cnn", "--format", "csv", "--db"]
    result = invoke(
        "aggregate", *labelled(inputs), *common, tmp_path / "a.db", "--out", tmp_path / "o1"
    )
    assert result.exit_code == 0, result.output
    assert "warning: CNN: only 12 positives" in result.output
    result = invoke(
        "aggregate",
        *labelled(inputs),
        *common,
        tmp_path / "b.db",
        "--out",
        tmp_path / "o2",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert "CNN: only 12 positives" in json.loads(result.output)["warnings"]


def test_force_rerun_removes_its_own_stale_outputs_only(tmp_path: Path, inputs: dict[str, Path]):
    db, out = tmp_path / "picks.db", tmp_path / "out"
    first = invoke("aggregate", *labelled(inputs), "--out", out, "--format", "csv", "--db", db)
    assert first.exit_code == 0, first.output
    assert sorted(read_outputs(out)) == ["apo-ferritin.csv", "ribosome.csv"]
    notes = out / "czii-csv" / "notes.txt"
    notes.write_text("mine")
    only_ribosomes = write_csv(
        tmp_path / "r.csv", [(t, p, x, y, z, 0.5) for t, p, x, y, z in TRUTH if p == "ribosome"]
    )
    args = ("aggregate", f"r={only_ribosomes}", "--out", out, "--format", "csv", "--db", db)
    refused = runner.invoke(get_app(), [str(a) for a in args])
    assert refused.exit_code != 0 and "--force" in str(refused.exception.hint)  # nothing touched
    assert sorted(read_outputs(out)) == ["apo-ferritin.csv", "ribosome.csv"]
    second = invoke(*args, "--force", "--json")
    assert second.exit_code == 0, second.output
    assert sorted(read_outputs(out)) == ["ribosome.csv"]  # run 1's apo-ferritin set is gone
    assert notes.read_text() == "mine"  # a file picks did not write stays
    assert any("removed 1 file" in w for w in json.loads(second.stdout)["warnings"])
    # run 1's picks: audit says its files are gone or were replaced since
    with Store(db) as store:
        first_run = store.runs()[0]["id"]
        apo = next(
            r["id"]
            for r in store.db["consensus"].rows_where("run_id = ? AND accepted = 1", [first_run])
            if r["particle"] == "apo-ferritin"
        )
        states = {Path(e["path"]).name: e["state"] for e in audit_consensus(store, apo)["exports"]}
    assert states == {
        "apo-ferritin.csv": "missing",
        "candidates.csv": "changed or replaced since",
        "submission.csv": "changed or replaced since",  # rewritten by the later run, too
    }
    text = invoke("audit", apo, "--db", db).output
    assert "[missing]" in text and "listed in" in text


def test_from_store_the_latest_import_of_a_file_stands(tmp_path: Path, formats_dir: Path):
    cbox = formats_dir / "cryolo" / "3d_particle.cbox"
    db = tmp_path / "p.db"
    for voxel in ("10", "20"):  # the second import "corrects" the voxel size: a new source
        invoke("import", cbox, "--picker", "A", "--voxel-size", voxel, "--db", db)
    result = invoke(
        "aggregate",
        "--particle",
        "ribosome",
        "--out",
        tmp_path / "o",
        "--format",
        "csv",
        "--db",
        db,
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["n_picks"] for r in report["inputs"]] == [3]  # not 6
    assert any("superseded by source #2" in w for w in report["warnings"])


def test_a_folder_warning_is_said_once(tmp_path: Path, inputs: dict[str, Path]):
    folder = inputs["a"].parent
    result = invoke(
        "aggregate",
        f"all={folder}",
        "--input-option",
        "all:bogus=1",
        "--out",
        tmp_path / "o",
        "--format",
        "csv",
        "--db",
        tmp_path / "p.db",
        "--json",
    )
    assert result.exit_code == 0, result.output
    said = [w for w in json.loads(result.stdout)["warnings"] if "'bogus'" in w]
    assert len(said) == 1 and said[0].startswith(f"3 files of all={folder}")


def test_directory_rows_take_the_longest_class_suffix():
    from picks.workflows.outputs import _directory_rows

    frame = pd.DataFrame(
        {"tomogram": ["TS_1"] * 3, "particle": ["ferritin", "apo-ferritin", "ribosome"]}
    )
    path = Path("copick/ExperimentRuns/TS_1/Picks/picks_1_apo-ferritin.json")
    assert list(_directory_rows(frame, path)["particle"]) == ["apo-ferritin"]
    path = Path("copick/ExperimentRuns/TS_1/Picks/picks_1_ferritin.json")
    assert list(_directory_rows(frame, path)["particle"]) == ["ferritin"]


def test_a_cnn_failure_is_an_error_and_auto_without_cnn_options_never_runs_it(
    tmp_path: Path, inputs: dict[str, Path], monkeypatch
):
    from picks.workflows import rescore

    def failing_rescore_consensus(store, run_id, consensus, options, **kwargs):
        raise PicksError("--device gpu: TensorFlow sees no GPU on this machine")

    monkeypatch.setattr(rescore, "rescore_consensus", failing_rescore_consensus)
    tomos = tmp_path / "tomos"
    tomos.mkdir()
    write_tomogram(tomos / "TS_1.mrc")
    write_tomogram(tomos / "TS_2.mrc", (60, 300, 300))
    common = [*labelled(inputs), "--tomograms", tomos, "--format", "csv", "--json"]
    plain = invoke("aggregate", *common, "--db", tmp_path / "a.db", "--out", tmp_path / "o1")
    assert plain.exit_code == 0, plain.output  # --method auto, no CNN option: latent, no CNN
    report = json.loads(plain.stdout)
    assert report["method"] == "latent" and not any("CNN" in w for w in report["warnings"])
    asked = runner.invoke(
        get_app(),
        [str(a) for a in ("aggregate", *common, "--device", "gpu", "--db", tmp_path / "b.db")]
        + ["--out", str(tmp_path / "o2")],
    )
    assert asked.exit_code != 0 and "no GPU" in str(asked.exception)
    assert not (tmp_path / "o2" / "czii-csv").exists()
    voting = invoke(
        "aggregate",
        *common,
        "--method",
        "vote",
        "--epochs",
        "3",
        "--db",
        tmp_path / "c.db",
        "--out",
        tmp_path / "o3",
    )
    assert any("CNN options (epochs) ignored" in w for w in json.loads(voting.stdout)["warnings"])


def test_input_options_and_labels(tmp_path: Path, inputs: dict[str, Path]):
    unlabelled = write_csv(
        tmp_path / "nolabel.csv",
        [(t, "", x, y, z, 0.5) for t, p, x, y, z in TRUTH if p == "ribosome"],
    )
    store = Store(tmp_path / "picks.db")
    result = aggregate(
        store,
        [*labelled(inputs, "ab"), f"c={unlabelled}"],
        out=tmp_path / "out",
        formats=["csv"],
        input_options=["c:particle=ribosome"],
    )
    ribo = [r for r in result.summary if r["particle"] == "ribosome"]
    assert sum(r["in:c"] for r in ribo) == 4
    with pytest.raises(PicksError, match="names no input"):
        aggregate(
            store,
            labelled(inputs),
            out=tmp_path / "o2",
            formats=["csv"],
            input_options=["zz:binning=2"],
        )
    with pytest.raises(PicksError, match="would both be labelled"):
        # two new files read by the same adapter, no labels: which picker is which?
        aggregate(
            Store(tmp_path / "fresh.db"),
            [inputs["a"], inputs["b"]],
            out=tmp_path / "o3",
            formats=["csv"],
        )
    with pytest.raises(PicksError, match="no such writer"):
        aggregate(store, labelled(inputs), out=tmp_path / "o4", formats=["nonsense"])
    with pytest.raises(PicksError, match="no such picker"):
        aggregate(store, labelled(inputs), out=tmp_path / "o5", formats=["csv"], weights=["zz=2"])


def test_parse_inputs():
    assert parse_input("cryolo=picks/cryolo").label == "cryolo"
    assert parse_input("picks/a=b.csv").label is None  # a path with '=' in a folder name
    assert parse_input(("x", "p.csv")).label == "x"
    assert parse_input_options(["a:binning=4", "a:adapter=czii-csv"]) == {
        "a": {"binning": "4", "adapter": "czii-csv"}
    }
    with pytest.raises(PicksError, match="LABEL:KEY=VALUE"):
        parse_input_options(["binning=4"])


def independent_pickers(
    tmp_path: Path, n_pickers: int = 4, seed: int = 0
) -> tuple[pd.DataFrame, list[str]]:
    """Pickers that each find 70 % of the particles (independently) plus random false picks."""
    rng = np.random.default_rng(seed)
    n = 120
    truth = pd.DataFrame(
        {
            "experiment": "TS_1",
            "particle_type": rng.choice(["ribosome", "apo-ferritin"], n),
            "x": rng.uniform(0, 8000, n),
            "y": rng.uniform(0, 8000, n),
            "z": rng.uniform(0, 2000, n),
        }
    )
    args = []
    for k in range(n_pickers):
        found = truth[rng.random(n) < 0.7]
        radius = np.where(found["particle_type"] == "ribosome", 150.0, 60.0)[:, None]
        xyz = found[["x", "y", "z"]].to_numpy() + rng.normal(0, 0.15, (len(found), 3)) * radius
        fp = rng.uniform(0, 1, (40, 3)) * [8000, 8000, 2000]
        rows = [
            ("TS_1", p, *c, rng.uniform(0.5, 1))
            for p, c in zip(found["particle_type"], xyz, strict=True)
        ]
        rows += [
            ("TS_1", rng.choice(["ribosome", "apo-ferritin"]), *c, rng.uniform(0, 1)) for c in fp
        ]
        args.append(f"p{k}={write_csv(tmp_path / f'p{k}.csv', rows)}")
    return truth, args


def test_consensus_beats_every_single_picker_on_independent_pickers(tmp_path: Path):
    truth, args = independent_pickers(tmp_path)
    result = aggregate(
        Store(tmp_path / "picks.db"), args, out=tmp_path / "out", formats=["csv"], min_support=2
    )
    consensus = pd.concat(read_outputs(tmp_path / "out").values(), ignore_index=True)
    # mean of the two classes' F-beta (the overall score divides by all six CZII weights)
    fused = np.mean([c.fbeta for c in score(truth, consensus).classes])
    singles = [
        np.mean([c.fbeta for c in score(truth, pd.read_csv(a.split("=", 1)[1])).classes])
        for a in args
    ]
    assert result.n_accepted == len(consensus)
    assert fused > max(singles) + 0.1, (fused, singles)


@pytest.mark.slow
def test_consensus_on_simulated_pickers(tmp_path: Path):
    """``picks simulate`` data: voting beats the average single picker (beating the best one
    on this data takes the CNN; see docs/consensus.md)."""
    simulate = pytest.importorskip("picks.simulate.world")
    sim = simulate.simulate(tmp_path / "sim", seed=0, n_tomograms=1, bin2=True)
    args, singles = [], {}
    for picker in sim.pickers:
        picks = picker.picks[["tomogram", "particle", "x", "y", "z", "score"]]
        singles[picker.label] = score(sim.truth, picks).overall
        rows = list(picks.itertuples(index=False, name=None))
        args.append(f"{picker.label}={write_csv(tmp_path / f'{picker.label}.csv', rows)}")
    aggregate(
        Store(tmp_path / "picks.db"), args, out=tmp_path / "out", formats=["csv"], min_support=2
    )
    consensus = pd.concat(read_outputs(tmp_path / "out").values(), ignore_index=True)
    fused = score(sim.truth, consensus).overall
    assert fused > np.mean(list(singles.values())), (fused, singles)


def test_other_writers_get_one_set_per_class_and_exports(
    tmp_path: Path, inputs: dict[str, Path], registry
):
    wanted = {"copick", "cryolo-cbox", "relion5"}
    if not wanted <= set(registry.names()):
        pytest.skip(f"writers {sorted(wanted - set(registry.names()))} are not registered")
    tomos = tmp_path / "tomos"
    tomos.mkdir()
    write_tomogram(tomos / "TS_1.mrc")
    write_tomogram(tomos / "TS_2.mrc", (60, 300, 300))
    store = Store(tmp_path / "picks.db")
    result = aggregate(
        store,
        labelled(inputs),
        out=tmp_path / "out",
        tomograms=[tomos],
        method="vote",
        formats=["copick", "box", "star"],
        noise_ratio=0,
        report=False,
    )
    formats = {r["format"] for r in result.outputs}
    assert formats == {"copick", "cryolo-cbox", "relion5", "candidates"}
    exports = pd.DataFrame(store.db["exports"].rows)
    exports = exports[exports["format"] != "candidates"]
    accepted = pd.DataFrame(store.db["consensus"].rows_where("accepted = 1"))
    for fmt, group in exports.groupby("format"):
        # every accepted pick is in exactly one file of each format
        held = pd.Series([i for e in group["id"] for i in store.export_members(int(e))])
        assert held.is_unique and sorted(held) == sorted(accepted["id"]), fmt
        assert group["n_rows"].sum() == len(accepted)
    copick = exports[exports["format"] == "copick"]
    assert (copick["n_rows"] > 0).sum() == 4  # 2 tomograms × 2 classes
    # plus the project config and RELION 5's one tomograms.star, which hold no pick
    assert sorted(Path(p).name for p in exports.loc[exports["n_rows"] == 0, "path"]) == [
        "copick_config.json",
        "tomograms.star",
    ]
    assert (tmp_path / "out" / "cryolo-cbox" / "ribosome" / "TS_1.cbox").exists()
    assert (tmp_path / "out" / "relion5" / "ribosome.star").exists()
