"""One trainer per run directory: an exclusive `flock` on RUN_DIR/.lock, held by rank 0 for the whole run.

Rank 0 is the only process that renames, prunes and deletes inside the run directory and the only one
writing log.jsonl, status.json and done, so one lock per job, taken by rank 0, is enough to keep a second
job (or a second `soraplan train` by hand) out. Its lock file also holds a per-run token that the other
ranks read back, which proves they see the same directory (`soraplan.models.trainer`).

Why flock: the kernel drops it when the holding process dies (kill -9, OOM, node reboot), so a stale lock
never blocks a restart; a file that merely exists (left by a dead trainer) is not a lock. The file is
never replaced or deleted, so every process locks the same inode. Its content (host, pid, time) only names
the holder in the refusal message.

Shared filesystems: on NFS (v4, or v3 with lockd) Linux turns flock into a whole-file POSIX lock that the
server arbitrates between nodes; a crashed node's lock is released when its lease expires (NFSv4: about
90 s). Lustre needs the `flock` mount option and GPFS supports it natively. Where the filesystem refuses
locks (ENOLCK, EOPNOTSUPP, ENOSYS: `nolock` NFS, Lustre without `flock`) the run goes on with a one-line
warning that a second trainer would not be refused; NFS mounted with `local_lock=flock` only excludes
trainers on the same node.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".lock"
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class RunDirBusy(Exception):
    """Another live process holds the run directory's lock; the message is one line naming it."""


class RunLock:
    """The exclusive lock on RUN_DIR/.lock.

    Args:
        run_dir: the run directory (must exist).
        token: written into the lock file so other ranks can check they see the same file.
    """

    def __init__(self, run_dir: str | os.PathLike, token: str = "") -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.token = token
        self.fd: int | None = None
        self.supported = True

    def acquire(self) -> "RunLock":
        """Take the lock without waiting.

        Returns:
            self. Raises RunDirBusy (one line: holder's host and pid) when a live process holds it;
            on a filesystem without locks `self.supported` becomes False and nothing is held.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = _describe(fd)
                os.close(fd)
                raise RunDirBusy(f"run-dir: {self.path.parent} is in use by another trainer ({holder}); "
                                 "wait for it to finish, stop it, or use another --run-dir") from None
            if e.errno in _UNSUPPORTED:
                self.supported = False
            else:
                os.close(fd)
                raise
        self.fd = fd
        info = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "token": self.token,
                "locked": self.supported}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        os.fsync(fd)
        return self

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it); the file stays for the next run."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_token(run_dir: str | os.PathLike) -> str | None:
    """The token the lock holder wrote, or None when the lock file is absent or unreadable.

    Args:
        run_dir: the run directory as this process sees it.

    Returns:
        The token string or None.
    """
    try:
        info = json.loads((Path(run_dir) / LOCK_NAME).read_text())
        return str(info.get("token")) if isinstance(info, dict) else None
    except (OSError, ValueError):
        return None


def _describe(fd: int) -> str:
    """'pid P on host H' from the lock file's content, or a neutral phrase when it is unreadable."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
        return f"pid {int(info['pid'])} on host {str(info['host'])[:64]}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
