"""Strings from files (labels, model names, provenance, file names) made safe to show on a terminal.

A model file or a file name is not ours: it may hold ANSI/OSC escape sequences (colours, a new
window title, a hyperlink), a carriage return that overwrites what was printed before it,
right-to-left overrides that reorder what follows, or newlines that forge extra output lines.
`printable` makes every such character visible as a Python-style escape (`\\x1b`, `\\u202e`);
ordinary text, accented letters and scripts of every language pass unchanged. Rich markup is
a separate matter: the CLI gives rich `Text` objects, never markup strings, for these values.
"""

from __future__ import annotations

import math
from typing import Any


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: Any) -> str:
    """`text` (str() of it) with every character that is not printable escaped: C0 and C1
    controls (ESC, CR, LF, the 8-bit CSI), format characters (bidi overrides and isolates,
    zero-width ones), line and paragraph separators, non-space blanks, surrogates."""
    text = str(text)
    if text.isprintable():  # the common case, one C-level scan
        return text
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates (undecodable names)
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float (NaN, +-Infinity, from a model file's metadata) turned
    into None, so `json.dumps(..., allow_nan=False)` writes valid JSON instead of `NaN`."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalars and arrays
        return json_safe(value.tolist())
    return value
