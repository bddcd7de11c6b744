"""Durable, all-or-nothing file writes for the run directory and checkpoints.

Every write that must not be half-done goes through here: the bytes go to a temp file next to the target,
the file is fsynced, renamed over the target (atomic on POSIX filesystems), and the parent directory is
fsynced so the rename itself survives a power loss. Readers therefore see either the old file or the new
one, never a torn one. `sha256_file` gives the checksums of checkpoint manifests.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_CHUNK = 1 << 22


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so the names created, renamed or removed in it are durable.

    Args:
        path: the directory. Filesystems that cannot fsync a directory (EINVAL) are accepted silently.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """fsync an existing file's data and metadata.

    Args:
        path: the file.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace `path` by `data` atomically and durably (temp file, fsync, rename, fsync of the directory).

    Args:
        path: the target file; its directory must exist.
        data: the whole new content.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text(path: str | os.PathLike, text: str) -> None:
    """`write_bytes` of UTF-8 text.

    Args:
        path: the target file.
        text: the whole new content.
    """
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    """`write_bytes` of `obj` as one JSON document ending in a newline.

    Args:
        path: the target file.
        obj: a JSON-serialisable value.
        indent: passed to json.dumps.
    """
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document in `path`.

    Args:
        path: the file.

    Returns:
        The parsed value. Raises OSError when unreadable and ValueError (UnicodeDecodeError or
        json.JSONDecodeError) when it is not a whole JSON document, e.g. a half-written file.
    """
    return json.loads(Path(path).read_bytes().decode("utf-8"))


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 4 MiB chunks.

    Args:
        path: the file.

    Returns:
        64 hex digits.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
