"""Shared CLI plumbing: one-line errors instead of tracebacks, terse warnings, log lines."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
import warnings
from typing import Callable, Iterator, TypeVar

import typer

from edgecls.errors import (
    EXIT_ERROR,
    EXIT_GATE,
    EXIT_INCONCLUSIVE,
    EXIT_INTERRUPTED,
    EdgeclsError,
    Interrupted,
    ParityGateFailed,
    ParityGateInconclusive,
)

F = TypeVar("F", bound=Callable)


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    from edgecls.text import printable

    typer.echo(f"edgecls: error: {printable(message)}", err=True)
    return typer.Exit(code)


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread like KeyboardInterrupt is for SIGINT, so the
    `finally` blocks on the way out run: an output's temporary file is removed (edgecls.files),
    decode threads are stopped. A BaseException: no `except Exception` (or EdgeclsError) on the
    way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


@contextlib.contextmanager
def _terminate_as_exception() -> Iterator[None]:
    """SIGTERM and SIGHUP -> Terminated while the command runs (main thread only: elsewhere,
    such as a test runner's worker thread, handlers cannot be set and the defaults stay)."""
    def raise_terminated(signum, frame):
        raise Terminated(signum)

    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in wanted:
            previous[signum] = signal.signal(signum, raise_terminated)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def invoke_time_limit(seconds: float) -> Iterator[None]:
    """Bound every invoke of the command to `seconds` (edge_runtime.watchdog): LiteRT cannot
    cancel an invoke, so one that runs longer ends the process with a one-line error and exit 2,
    after removing the temporary files of outputs being written."""
    from edgecls.edge_runtime import watchdog

    def on_timeout(limit: float, what: str) -> None:
        from edgecls.files import remove_partial_files

        remove_partial_files()
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        message = (
            f"edgecls: error: one invoke of {what} ran longer than {limit:g} s (--invoke-timeout) and was stopped: "
            "the model does not finish (a loop that does not end?)\n"
        )
        try:  # sys.stderr, not fd 2: quiet_native_stderr points fd 2 at /dev/null meanwhile
            sys.stderr.write(message)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        finally:
            os._exit(EXIT_ERROR)

    watchdog.bound_invokes(seconds, on_timeout)
    try:
        yield
    finally:
        watchdog.stop_bounding()


# The exit code of each kind of library error (the most specific class first); any other
# EdgeclsError is EXIT_ERROR.
_EXIT_CODES: tuple[tuple[type[EdgeclsError], int], ...] = (
    (ParityGateFailed, EXIT_GATE),
    (ParityGateInconclusive, EXIT_INCONCLUSIVE),
    (Interrupted, EXIT_INTERRUPTED),
)

# Option fields and arguments whose flag is not "--" + the name with dashes for underscores.
_FLAG_NAMES = {
    "learning_rate": "--lr",
    "qat_learning_rate": "--qat-lr",
    "data_format": "--format",
    "io_type": "--io",
    "modes": "--mode",
    "groups": "--group",
}


def exit_code(exc: EdgeclsError) -> int:
    """The exit code the CLI ends with for a library error, chosen by its class."""
    return next((code for cls, code in _EXIT_CODES if isinstance(exc, cls)), EXIT_ERROR)


def flag_name(field: str) -> str:
    """The CLI flag that sets an option field or API argument: learning_rate -> --lr."""
    return _FLAG_NAMES.get(field, "--" + field.replace("_", "-"))


def cli_message(exc: EdgeclsError) -> str:
    """A library error's message as a CLI user reads it: the fields it names (in backticks,
    `learning_rate`) become flags (--lr)."""
    message = str(exc)
    for field in exc.fields:
        message = message.replace(f"`{field}`", flag_name(field))
    return message


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
            with _terminate_as_exception():
                return func(*args, **kwargs)
        except EdgeclsError as exc:
            raise fail(cli_message(exc), exit_code(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except Terminated as exc:
            raise fail(f"terminated by {exc.name}", 128 + exc.signum) from None
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
        from edgecls.text import printable

        print(f"edgecls: warning: {printable(message)}", file=file or sys.stderr)

    warnings.showwarning = show
