"""The ``picks`` command line. Each module in :data:`COMMAND_MODULES` adds its commands.

Commands stay thin: they parse options, call library functions and print results. Heavy
imports (pandas, TensorFlow) happen inside command bodies so that ``picks --help`` is fast.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys

import typer
from typer.core import TyperArgument, TyperCommand

from picks import __version__
from picks.cli.logs import setup_logging

# Modules under picks.cli with a ``register(app)`` function, in help order.
COMMAND_MODULES = [
    "store_cmds",
    "plugins_cmd",
    "convert_cmd",
    "simulate_cmd",
    "evaluate_cmd",
    "demo_cmd",
    "aggregate",
    "export_cmd",
    "pickers_cmd",
    "cnn_cmds",
    "report_cmd",
]


_debug = False  # --debug: full tracebacks (set per invocation; the environment is not touched)


def _debugging() -> bool:
    return _debug or bool(os.environ.get("PICKS_DEBUG"))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"picks {__version__}")
        raise typer.Exit()


def get_app() -> typer.Typer:
    app = typer.Typer(
        name="picks",
        help="Consensus of cryo-ET particle pickers, with provenance for every pick.",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
        rich_markup_mode=None,
        add_completion=False,
    )

    @app.callback()
    def root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Show the version."
        ),
        debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
        verbose: int = typer.Option(
            0,
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="Also print debug messages on stderr.",
        ),
        quiet: bool = typer.Option(
            False, "--quiet", "-q", help="Only warnings and results: no progress or notes."
        ),
        registry: str = typer.Option(
            None,
            "--registry",
            metavar="FILE",
            help="Local adapter registry file (else $PICKS_REGISTRY; never read from the "
            "current folder).",
        ),
    ) -> None:
        """Consensus of cryo-ET particle pickers, with provenance for every pick."""
        global _debug
        _debug = debug
        if registry or "picks.plugins.manager" in sys.modules:
            # set for this invocation, and cleared when not given (pluggy stays unimported
            # by commands that list no adapters)
            from picks.plugins.manager import use_local_registry

            use_local_registry(registry)
        setup_logging(verbose=verbose, quiet=quiet)

    for name in COMMAND_MODULES:
        importlib.import_module(f"picks.cli.{name}").register(app)
    for info in app.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = _Command
    return app


class _Command(TyperCommand):
    """Help shows an argument's metavar (``[LABEL=]PATH``) without typer's ``<list[str]>``:
    the metavar already says what to give."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument) and param.metavar:
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]

    def invoke(self, ctx):
        """Errors name the flags the user typed, not the library's parameters."""
        from picks.core.errors import PicksError

        try:
            return super().invoke(ctx)
        except PicksError as exc:
            from picks.cli.flags import to_flags

            to_flags(exc)
            raise


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """Console entry point: user errors become one ``Error:`` line and a meaningful exit code."""
    import signal

    from picks.core.errors import PicksError

    # A terminated command unwinds like an interrupted one, so its run is recorded as
    # failed (kill -9 cannot be caught: such runs are marked stale by the next command).
    signal.signal(signal.SIGTERM, _terminate)
    command = typer.main.get_command(get_app())
    try:
        # Click handles usage errors itself (exit 2); our errors arrive here.
        command.main(prog_name="picks", standalone_mode=True)
    except sqlite3.OperationalError as exc:
        # what busy_retry did not absorb (a lock held past $PICKS_BUSY_TIMEOUT mid-statement)
        from picks.core.store import is_busy

        if _debugging() or not is_busy(exc):
            raise
        typer.echo(f"Error: store busy: another picks command holds it ({exc})", err=True)
        sys.exit(1)
    except PicksError as exc:
        if _debugging():
            raise
        from picks.cli.flags import to_flags

        to_flags(exc)  # an error from outside a command (the group's options) names flags too
        typer.echo(f"Error: {exc}", err=True)
        if exc.hint:
            typer.echo(f"Hint: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
