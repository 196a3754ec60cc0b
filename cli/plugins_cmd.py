"""``picks plugins``: list every adapter and where it came from."""

from __future__ import annotations

import typer

from picks.cli.common import JsonOption, echo_json, echo_table


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins_cmd)


def plugins_cmd(json_out: JsonOption = False) -> None:
    """List adapters: name, picker, read/write, origin (built-in, entry point, local), version."""
    from picks.core.errors import PicksError
    from picks.plugins.manager import get_registry

    rows = []
    broken = []
    for entry in get_registry():
        try:
            entry.check()  # a missing module or file, found without importing any adapter
            write = "yes" if entry.can_write else "no"
            read = "yes"
        except PicksError as exc:  # listed, not fatal: the other adapters still work
            read = write = "BROKEN"
            broken.append(str(exc))
        rows.append(
            {
                "name": entry.name,
                "picker": entry.picker,
                "read": read,
                "write": write,
                "origin": entry.origin,
                "version": entry.version,
                "patterns": " ".join(entry.patterns),
                "description": entry.description,
            }
        )
    if json_out:
        echo_json(rows)
    else:
        echo_table(rows, ["name", "picker", "read", "write", "origin", "version", "patterns"])
    for message in broken:
        typer.echo(f"error: {message}", err=True)
    if broken:
        raise typer.Exit(1)
