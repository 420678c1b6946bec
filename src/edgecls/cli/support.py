"""Shared CLI plumbing: one-line errors instead of tracebacks, terse warnings, log lines."""

from __future__ import annotations

import functools
import sys
import warnings
from typing import Callable, TypeVar

import typer

from edgecls.errors import EXIT_ERROR, EdgeclsError

F = TypeVar("F", bound=Callable)


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    typer.echo(f"edgecls: error: {message}", err=True)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """Run a command with the library's progress messages shown as `edgecls: ...` lines on
    stderr (its `edgecls` logger at INFO; `show_progress(False)` in a command turns them down to
    warnings), and turn EdgeclsError (and Ctrl-C) into a one-line message and an exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from edgecls.log import enable_logging

        _install_warning_format()
        enable_logging("INFO")
        try:
            return func(*args, **kwargs)
        except EdgeclsError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        finally:
            # Back to a library's silence: in one process (tests, a notebook running the CLI)
            # the next caller's stderr may not be this command's.
            enable_logging(None)

    return wrapper  # type: ignore[return-value]


def show_progress(shown: bool) -> None:
    """The library's INFO progress messages on (the default in a command) or off (--quiet)."""
    from edgecls.log import enable_logging

    enable_logging("INFO" if shown else "WARNING")


def _install_warning_format() -> None:
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"edgecls: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show
