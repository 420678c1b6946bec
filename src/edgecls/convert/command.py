"""`edgecls convert` (issue 4): placeholder until the converter lands."""

from edgecls.errors import EdgeclsError


def convert(run: str) -> None:
    """Quantize a trained model to int8 TFLite (not implemented yet)."""
    raise EdgeclsError("convert is not implemented yet")
