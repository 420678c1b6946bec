"""The exception types the CLI turns into a clean one-line error; which exit code each gets is
the CLI's mapping (`edgecls.cli.support.exit_code`), not the error's."""

from __future__ import annotations

# Exit codes, documented in docs/reference/cli.md.
EXIT_OK = 0
EXIT_PARTIAL = 1  # a batch ran, but some inputs could not be processed
EXIT_ERROR = 2  # bad input, bad model, bad flags: nothing useful was produced
EXIT_GATE = 3  # convert: the int8 model fell further behind float than --max-drop allows
EXIT_INCONCLUSIVE = 4  # convert: the test split is too small to tell whether int8 is within --max-drop
EXIT_INTERRUPTED = 130  # train: Ctrl-C (128 + SIGINT, as shells report it); --resume continues


class EdgeclsError(Exception):
    """An error a user can fix; the CLI prints its message on one line, with no traceback.

    The message names Python fields and arguments in backticks ("`learning_rate` must be
    positive"), and `fields` lists them, so that the CLI can name its flags instead ("--lr must be
    positive")."""

    def __init__(self, message: str, *, fields: tuple[str, ...] | str = ()):
        super().__init__(message)
        self.fields: tuple[str, ...] = (fields,) if isinstance(fields, str) else tuple(fields)


class ParityGateFailed(EdgeclsError):
    """A full-integer file is, with confidence, further behind float than the allowed drop (or
    computes in float where it should not). The files are written and marked failing."""


class ParityGateInconclusive(EdgeclsError):
    """The test split is too small to tell whether a full-integer file is within the allowed
    drop: the difference's confidence interval straddles it."""


class Interrupted(EdgeclsError):
    """The user stopped a long job (Ctrl-C); the message says how to continue it."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most `limit` characters (its type's name
    when it has no message): third-party errors can run to pages, the CLI prints one line."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
