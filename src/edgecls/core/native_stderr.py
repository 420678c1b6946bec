"""Native libraries' own stderr lines (TensorFlow's start-up, LiteRT's delegate notice) kept
out of edgecls's stderr, which carries only `edgecls: ...` lines. No heavy imports: the device
commands use it too."""

from __future__ import annotations

import contextlib
import os
import sys


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
