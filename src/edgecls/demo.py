"""`edgecls demo` (issue 8): placeholder."""

from edgecls.errors import EdgeclsError


def demo() -> None:
    """Run the whole pipeline offline on a small built-in dataset (not implemented yet)."""
    raise EdgeclsError("demo is not implemented yet")
