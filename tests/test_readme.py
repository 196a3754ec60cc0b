"""The README's set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_ci_runs_the_readme_test_command():
    demo, test = readme_commands()[:2]
    ci = (REPO / ".ci" / "run").read_text()
    # .ci/run creates and activates the venv itself, then runs the README's command verbatim.
    install_and_test = test.split("&& ", 2)[2]
    assert install_and_test in ci
    assert "picks demo" in demo and "pip install ." in demo
