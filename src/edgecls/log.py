"""Logging for all of edgecls: library code logs to the `edgecls` logger and is quiet by default.

Library code never prints its messages and never calls `sys.exit`; it logs them (INFO for
progress, WARNING for things to look at) and raises `EdgeclsError`. Nothing is shown until
the application configures logging, or calls `enable_logging()`, which is what a notebook
wants: `edgecls.enable_logging()` once, then every step says what it does.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import TextIO

LOGGER_NAME = "edgecls"
_HANDLER_NAME = "edgecls.enable_logging"

logger = logging.getLogger(LOGGER_NAME)
# A library adds no handler of its own beyond this one (the logging HOWTO's advice), so an
# application that configures nothing sees nothing, and one that configures logging sees all.
if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
    logger.addHandler(logging.NullHandler())


def notice(message: str) -> None:
    """A one-line warning about the user's input (a fresh split that may overlap training, an
    assumed pixel range), which the CLI prints as `edgecls: warning: ...`: a Python warning, so
    that a notebook shows it once and a test can catch it."""
    warnings.warn(message, UserWarning, stacklevel=2)


def get_logger(name: str = "") -> logging.Logger:
    """The `edgecls` logger, or one of its children (`get_logger("train")` -> `edgecls.train`)."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


def enable_logging(level: int | str | None = "INFO", stream: TextIO | None = None) -> logging.Logger:
    """Show edgecls's messages on `stream` (default: stderr, which notebooks display too) as
    `edgecls: message` lines, from `level` up; `enable_logging(None)` turns this off again.

    Calling it again changes the level and stream; it never adds a second handler. While it is
    on, the messages go to `stream` only, not on to the root logger too (TensorFlow's absl
    configures the root logger when it first logs, which would show each message twice).
    Applications with their own logging set-up need not call it: the `edgecls` logger
    propagates to the root logger like any other. Returns the `edgecls` logger.
    """
    for handler in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(handler)
    if level is None:
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
        return logger
    resolved = logging.getLevelName(level.upper()) if isinstance(level, str) else int(level)
    if not isinstance(resolved, int):
        from edgecls.errors import EdgeclsError

        raise EdgeclsError(f"unknown logging level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("edgecls: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(resolved)
    logger.propagate = False
    return logger
