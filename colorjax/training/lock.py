"""One training run per workdir: an OS lock on ``WORKDIR/.lock``, held while the run trains.

The lock is ``flock``'s: the kernel drops it when its process ends, however it ends, so a
crashed or killed run never blocks the next one. The file names the holder (PID, host, start
time) for the error a second run gets. Some network filesystems ignore or refuse such locks;
there a run warns and trains unprotected.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import warnings
from pathlib import Path

LOCK_NAME = ".lock"


class WorkdirBusyError(RuntimeError):
    """Another process holds the workdir's lock."""


class WorkdirLock:
    """``with WorkdirLock(workdir):`` holds ``workdir/.lock`` for the block (``hold=False``:
    does nothing, e.g. on the hosts of a multi-host run other than process 0)."""

    def __init__(self, workdir: str | Path, *, hold: bool = True):
        self.path = Path(workdir) / LOCK_NAME
        self.hold = hold
        self._fd: int | None = None

    def __enter__(self) -> WorkdirLock:
        if self.hold:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise WorkdirBusyError naming the process that has it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkdirBusyError(
                f"{self.path.parent} is in use by another training run ({holder}); "
                "wait for it to finish or stop it, or use another --workdir"
            ) from None
        except OSError as err:
            os.close(fd)
            warnings.warn(
                f"{self.path}: this filesystem does not support file locks ({err.strerror}); "
                "nothing stops a second run from writing the same workdir",
                stacklevel=2,
            )
            return
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_this_process()).encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock. The file stays: removing it could let two runs lock two files."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _this_process() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def _read_holder(fd: int) -> str:
    """``PID 123 on host, since ...`` from the lock file (or that it is not known yet)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, 4096))
        return f"PID {holder['pid']} on {holder['host']}, since {holder['since']}"
    return "its PID is not written yet"
