"""The `edgecls` command line: a thin layer over the Python API (`edgecls.Classifier`,
`train_classifier`, `evaluate_classifier`, `convert_classifier`, `builtin_models`).

One module per group of commands: `device` (classify, info, models), `bench`, `train` (train,
evaluate), `convert`, `demo`, `export` (export web); `support` (one-line errors, log lines) and `output` (tables,
JSON/CSV records, progress bars) serve them all. Device commands need only numpy, Pillow and a
TFLite interpreter. Workstation commands (train, evaluate, convert, demo) import TensorFlow
inside the command, never at import time, so `edgecls --help` stays fast on a Raspberry Pi.
"""

from __future__ import annotations

import os
import sys

import typer

from edgecls import __version__
from edgecls.cli.support import handle_errors

app = typer.Typer(
    name="edgecls",
    help="Train a cancer-cell image classifier, quantize it to int8 with a parity gate, "
    "and run it fast on a phone or a Raspberry Pi.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgecls {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    pass


DEVICE_COMMANDS = ("classify", "info", "models", "bench")


def _register_commands() -> None:
    # Each module imports TensorFlow (and the API behind the command) inside its command functions only.
    from edgecls.cli.bench import bench
    from edgecls.cli.device import classify, info, models

    commands = [classify, info, models, bench]
    invoked = _invoked_command()
    if invoked in DEVICE_COMMANDS:
        # numpy's bundled OpenBLAS starts a busy-waiting thread per core when numpy is imported
        # (next, inside the command): ~0.1 s of CPU a process, taken from the decode threads of a
        # folder run, for BLAS these commands never call (the model runs in LiteRT; numpy only does
        # small element-wise work). A user's own setting wins.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # A device command (on a Raspberry Pi often one process per photo) does not import the
    # workstation commands' modules: ~14 ms of its ~0.2 s cold start. Anything else (--help, a
    # workstation command, a typo, the CLI imported by tests or another program) registers all.
    if invoked not in DEVICE_COMMANDS:
        from edgecls.cli.convert import convert
        from edgecls.cli.demo import demo
        from edgecls.cli.export import export_app
        from edgecls.cli.train import evaluate, train

        commands += [train, evaluate, convert, demo]
        for sub in export_app.registered_commands:
            sub.callback = handle_errors(sub.callback)
        app.add_typer(export_app)
    for command in commands:
        app.command()(handle_errors(command))


def _invoked_command() -> str | None:
    """The command this process was started for (`edgecls classify ...`, `python -m edgecls info ...`)."""
    from pathlib import Path

    if not sys.argv or Path(sys.argv[0]).name not in ("edgecls", "__main__.py"):
        return None
    return next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)


_register_commands()


def main() -> None:
    """Console entry point: like `app()`, but a bad flag is one `edgecls: error:` line too."""
    import click

    try:
        code = app(standalone_mode=False)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "edgecls"
        typer.echo(f"edgecls: error: {exc.format_message()} (see '{command} --help')", err=True)
        code = exc.exit_code
    except click.ClickException as exc:
        typer.echo(f"edgecls: error: {exc.format_message()}", err=True)
        code = exc.exit_code
    except click.Abort:
        typer.echo("edgecls: error: interrupted", err=True)
        code = 130
    code = code if isinstance(code, int) else 0
    if _invoked_command() in DEVICE_COMMANDS:
        _exit_without_finalizing(code)
    sys.exit(code)


def _exit_without_finalizing(code: int) -> None:
    """End a device command's process without Python's finalization.

    Finalization frees every module and object one by one (numpy, LiteRT, Typer, Click): 40-70 ms
    on this project's 2-core x86 machine, paid by every one-photo classify
    and at the end of every folder run, for memory the OS takes back at once anyway (the trick
    Instagram's servers use: `os._exit` after the work). What finalization must do still happens:
    atexit handlers run (logging's flush, a coverage tool's save), then the standard streams are
    flushed. With a thread still running (none of edgecls's are), or a stream that cannot be
    flushed (a closed pipe), it is the ordinary exit instead.
    """
    import atexit
    import threading

    # atexit._run_exitfuncs is CPython's own (what finalization itself calls); without it, or with
    # a thread still running, leave the ordinary way.
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_handlers is None or threading.active_count() > 1:
        sys.exit(code)
    run_exit_handlers()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    main()
