"""`edgecls train` and `edgecls evaluate` (issue 3): placeholders until training lands."""

from edgecls.errors import EdgeclsError


def train(data: str) -> None:
    """Train a classifier (not implemented yet)."""
    raise EdgeclsError("train is not implemented yet")


def evaluate(model: str, data: str) -> None:
    """Evaluate a model on a dataset (not implemented yet)."""
    raise EdgeclsError("evaluate is not implemented yet")
