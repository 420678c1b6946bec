"""Shared CLI plumbing: one-line errors instead of tracebacks, terse warnings, output files."""

from __future__ import annotations

import contextlib
import functools
import os
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


@contextlib.contextmanager
def quiet_native_stderr():
    """Keep the TFLite runtime's own log lines ("INFO: Created TensorFlow Lite XNNPACK delegate
    for CPU.", written straight to file descriptor 2) out of the CLI's stderr, which carries only
    `edgecls: ...` lines. Python's sys.stderr keeps writing to the real stderr meanwhile; native
    errors still arrive, as the exception messages the interpreter raises.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    python_stderr = sys.stderr
    try:
        uses_fd2 = python_stderr.fileno() == 2
    except (OSError, ValueError, AttributeError):
        uses_fd2 = False
    devnull = os.open(os.devnull, os.O_WRONLY)
    replacement = None
    try:
        os.dup2(devnull, 2)
        if uses_fd2:
            replacement = open(saved, "w", encoding=python_stderr.encoding, errors=python_stderr.errors, buffering=1, closefd=False)
            sys.stderr = replacement
        yield
    finally:
        if replacement is not None:
            replacement.flush()
            sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
