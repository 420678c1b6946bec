"""`edgecls bench` (issue 5): placeholder until the benchmark command lands."""

from edgecls.errors import EdgeclsError


def bench(model: str) -> None:
    """Measure latency of .tflite models (not implemented yet)."""
    raise EdgeclsError("bench is not implemented yet")
