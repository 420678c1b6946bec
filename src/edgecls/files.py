"""Atomic file writing: an output is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


# Temporary files are named `.<output name>.<pid>.edgecls-partial-<random><suffix>`: hidden, and
# marked as partial, so none is mistaken for output; the pid lets a later write of the same output
# remove those a killed process (SIGKILL, a power cut) left behind, and leave a running one's alone.
PARTIAL_MARK = ".edgecls-partial-"

# Temporary files being written now: removed by `remove_partial_files()` when the process is
# ended from outside the Python stack (the CLI's invoke watchdog, which then calls os._exit).
_partial_files: set[Path] = set()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.

    Use this for writers that want a file name (Keras `save`, matplotlib `savefig`). `path` must
    be a regular file or not exist yet: a device node, FIFO, socket or folder there (or a link to
    one) is refused, never replaced.
    """
    path = Path(path)
    check_output_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}{PARTIAL_MARK}", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    _partial_files.add(tmp_path)
    try:
        # mkstemp makes the file 0600; outputs should be as readable as any file the user creates.
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp_path
        # On disk before the rename: after a power cut the name points at the whole file, not
        # at an empty one (ext4 and XFS may order the rename before the data otherwise).
        with open(tmp_path, "rb") as written:
            os.fsync(written.fileno())
        check_output_target(path)  # something else may have appeared there meanwhile
        os.replace(tmp_path, path)
    finally:
        _partial_files.discard(tmp_path)
        if tmp_path.exists():
            tmp_path.unlink()


def check_output_target(path: str | os.PathLike) -> None:
    """Raise EdgeclsError unless `path` is absent or a regular file (links followed)."""
    from edgecls.errors import EdgeclsError

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):  # a dangling link: writing would replace the link, not fill its target
            raise EdgeclsError(f"{path}: is a link to nothing; give the output's real path") from None
        return
    except OSError as exc:
        raise EdgeclsError(f"{path}: cannot use as output ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise EdgeclsError(f"{path}: is a folder; the output needs a file name")
    if not stat.S_ISREG(mode):
        raise EdgeclsError(f"{path}: exists and is not a regular file ({file_kind(mode)}); edgecls replaces regular files only")


def check_not_an_input(output: str | os.PathLike, files: Iterable[str | os.PathLike] = (), folders: Iterable[str | os.PathLike] = (),
                       folder_suffixes: Iterable[str] = ()) -> None:  # fmt: skip
    """Raise EdgeclsError if `output` is one of `files`, or a file with one of `folder_suffixes`
    inside one of `folders` (what a folder walk reads): writing it would destroy an input."""
    from edgecls.errors import EdgeclsError

    try:
        target = os.stat(output)
    except OSError:  # not there yet: it cannot be an input
        return
    for file in files:
        try:
            if os.path.samestat(target, os.stat(file)):
                raise EdgeclsError(f"{output}: is one of the inputs; choose another output file")
        except OSError:
            continue
    if os.path.splitext(os.fspath(output))[1].lower() not in set(folder_suffixes):
        return
    real = os.path.realpath(output)
    for folder in folders:
        root = os.path.realpath(folder)
        if os.path.commonpath([real, root]) == root:
            raise EdgeclsError(f"{output}: is an image inside the input folder {folder}; choose another output file")


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a link"),
    ):  # fmt: skip
        if test(mode):
            return name
    return "not a regular file"


def _remove_stale_partials(path: Path) -> None:
    """Remove the partial files of `path` left by processes that no longer run."""
    prefix = f".{path.name}."
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix) and PARTIAL_MARK in n]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix) : name.index(PARTIAL_MARK)]
        if not pid.isdigit() or _process_alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(path.parent / name)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill(pid, 0) would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # someone else's process, or no way to tell: leave its file
        return True
    return True


def remove_partial_files() -> None:
    """Remove the temporary files of outputs being written now (their writers are about to be
    cut short: see edge_runtime.watchdog)."""
    for tmp in list(_partial_files):
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths: the usual non-JSON things in metrics and configs.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
