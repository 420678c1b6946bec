"""The one exception type the CLI turns into a clean one-line error and an exit code."""

from __future__ import annotations

# Exit codes, documented in docs/reference/cli.md.
EXIT_OK = 0
EXIT_PARTIAL = 1  # a batch ran, but some inputs could not be processed
EXIT_ERROR = 2  # bad input, bad model, bad flags: nothing useful was produced
EXIT_GATE = 3  # convert: the int8 model fell further behind float than --max-drop allows
EXIT_INCONCLUSIVE = 4  # convert: the test split is too small to tell whether int8 is within --max-drop
EXIT_INTERRUPTED = 130  # train: Ctrl-C (128 + SIGINT, as shells report it); --resume continues


class EdgeclsError(Exception):
    """An error a user can fix; the CLI prints its message on one line, with no traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR):
        super().__init__(message)
        self.exit_code = exit_code


class ParityGateFailed(EdgeclsError):
    """A full-integer file is, with confidence, further behind float than the allowed drop (or
    computes in float where it should not). The files are written and marked failing."""

    def __init__(self, message: str):
        super().__init__(message, EXIT_GATE)


class ParityGateInconclusive(EdgeclsError):
    """The test split is too small to tell whether a full-integer file is within the allowed
    drop: the difference's confidence interval straddles it."""

    def __init__(self, message: str):
        super().__init__(message, EXIT_INCONCLUSIVE)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most `limit` characters (its type's name
    when it has no message): third-party errors can run to pages, the CLI prints one line."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
