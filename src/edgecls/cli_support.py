"""Shared CLI plumbing: one-line errors instead of tracebacks, terse warnings, output files."""

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
    """Turn EdgeclsError (and Ctrl-C) into a one-line message and an exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        _install_warning_format()
        try:
            return func(*args, **kwargs)
        except EdgeclsError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper  # type: ignore[return-value]


def _install_warning_format() -> None:
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"edgecls: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show
