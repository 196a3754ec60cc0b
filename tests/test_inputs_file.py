"""``picks aggregate --inputs inputs.toml``: one validated file for the whole job."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from picks.cli import get_app
from picks.core.inputs_file import InputsFileError, read_inputs_file, write_inputs_file

runner = CliRunner()


def _csv(path: Path) -> Path:
    path.write_text("id,experiment,particle_type,x,y,z\n0,TS_1,ribosome,100,200,300\n")
    return path


def test_a_written_file_reads_back_with_paths_relative_to_it(tmp_path):
    _csv(tmp_path / "a.csv")
    (tmp_path / "labels.txt").write_text("1 ribosome\n")
    write_inputs_file(
        tmp_path / "inputs.toml",
        [
            {"label": "a", "path": "a.csv", "binning": 2.0, "options": {"labels": "labels.txt"}},
            {"label": "beads", "path": "a.csv", "role": "negative", "_note": "gold fiducials"},
        ],
        tomograms=["tomos"],
        output={"out": "consensus", "formats": ["czii-csv"]},
        decision={"method": "latent", "beta": 1.0},
    )
    text = (tmp_path / "inputs.toml").read_text()
    assert "# gold fiducials" in text
    job = read_inputs_file(tmp_path / "inputs.toml")
    assert [p.label for p in job.pickers] == ["a", "beads"]
    assert job.pickers[0].path == tmp_path.resolve() / "a.csv"
    assert job.pickers[0].input_options() == {
        "labels": str(tmp_path.resolve() / "labels.txt"),
        "binning": "2.0",
    }
    assert job.pickers[1].input_options() == {"role": "negative"}
    assert job.tomograms == [tmp_path.resolve() / "tomos"]
    assert job.out == tmp_path.resolve() / "consensus" and job.formats == ["czii-csv"]
    assert job.method == "latent" and job.beta == 1.0


def test_a_glob_gives_one_input_per_match(tmp_path):
    for name in ("x.csv", "y.csv"):
        _csv(tmp_path / name)
    (tmp_path / "in.toml").write_text('[[picker]]\nlabel = "p"\npath = "*.csv"\n')
    job = read_inputs_file(tmp_path / "in.toml")
    assert [p.path.name for p in job.pickers] == ["x.csv", "y.csv"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[picker]]\nlabel = "a"\npath = "a.csv"\nbinnig = 2\n',
            r"\[\[picker\]\] #1 \(a\): unknown key\(s\) 'binnig'",
        ),
        (
            '[[picker]]\nlabel = "a"\npath = "a.csv"\nbinning = "two"\n',
            r"#1 \(a\): key 'binning': expected a number",
        ),
        (
            '[[picker]]\nlabel = "a"\npath = "nope.csv"\n',
            r"#1 \(a\): key 'path': .*nope.csv does not exist",
        ),
        ('[[picker]]\nlabel = "a"\npath = "*.star"\n', r"the pattern '\*.star' matches nothing"),
        (
            '[[picker]]\nlabel = "a"\npath = "a.csv"\nrole = "trusted"\n',
            r"key 'role': 'trusted' is not one of picker",
        ),
        ('[[picker]]\npath = "a.csv"\n', r"#1: key 'label' is missing"),
        (
            '[decision]\nmethod = "cnn2"\n[[picker]]\nlabel = "a"\npath = "a.csv"\n',
            r"\[decision\]: key 'method'",
        ),
        (
            '[output]\nfolder = "x"\n[[picker]]\nlabel = "a"\npath = "a.csv"\n',
            r"\[output\]: unknown key\(s\) 'folder'",
        ),
        ('[outputs]\nout = "x"\n', r"unknown table\(s\) 'outputs'"),
        ('[output]\nout = "x"\n', r"no \[\[picker\]\] table"),
        ("[[picker]\n", r"not a valid TOML file"),
    ],
)
def test_errors_name_the_file_the_table_and_the_key(tmp_path, text, message):
    _csv(tmp_path / "a.csv")
    path = tmp_path / "in.toml"
    path.write_text(text)
    with pytest.raises(InputsFileError, match=message) as info:
        read_inputs_file(path)
    assert str(path) in str(info.value) and info.value.exit_code == 2


def test_simulated_world_inputs_file_gives_the_same_outputs_as_the_flags(tmp_path):
    from picks.simulate.world import aggregate_command, simulate

    sim = simulate(tmp_path / "w", seed=4, n_tomograms=1, size=(96, 96, 48))
    assert (sim.out / "inputs.toml").exists()
    assert "picks aggregate --inputs inputs.toml" in sim.readme.read_text()
    app = get_app()
    short = runner.invoke(
        app,
        ["aggregate", "--inputs", str(sim.out / "inputs.toml"), "--db", str(tmp_path / "a.db")],
    )
    assert short.exit_code == 0, short.output
    # the flags version, run inside the folder as the README says, into another output folder
    command = aggregate_command(sim, db=str(tmp_path / "b.db"), out=str(tmp_path / "b"))
    args = shlex.split(command.replace("\\\n", " "))
    import os

    cwd = os.getcwd()
    os.chdir(sim.out)
    try:
        long = runner.invoke(app, args[1:])
    finally:
        os.chdir(cwd)
    assert long.exit_code == 0, long.output
    a_files = sorted(
        p.relative_to(sim.out / "consensus") for p in (sim.out / "consensus").rglob("*.csv")
    )
    b_files = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.csv"))
    assert a_files == b_files and a_files
    for rel in a_files:
        assert (sim.out / "consensus" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_command_line_options_win_over_the_file(tmp_path):
    _csv(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text(
        "id,experiment,particle_type,x,y,z\n0,TS_1,ribosome,110,200,300\n"
    )
    (tmp_path / "in.toml").write_text(
        '[output]\nout = "from-file"\nformats = ["czii-csv"]\n'
        '[decision]\nmethod = "vote"\n'
        '[[picker]]\nlabel = "a"\npath = "a.csv"\n[[picker]]\nlabel = "b"\npath = "b.csv"\n'
    )
    res = runner.invoke(
        get_app(),
        [
            "aggregate",
            "--inputs",
            str(tmp_path / "in.toml"),
            "--db",
            str(tmp_path / "p.db"),
            "--method",
            "latent",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    import json

    report = json.loads(res.stdout)
    assert report["method"] == "latent"  # the command line wins
    assert report["out"] == str(tmp_path.resolve() / "from-file")  # the file's, not the default
    assert report["pickers"] == ["a", "b"]


def test_the_file_knows_the_same_methods_and_roles_as_the_pipeline():
    from picks.cli.choices import ROLES as CLI_ROLES
    from picks.core.inputs_file import METHODS, ROLES
    from picks.workflows.aggregate import METHODS as PIPELINE_METHODS

    assert set(METHODS) == set(PIPELINE_METHODS)
    assert set(ROLES) == set(CLI_ROLES)
