"""The workdir lock: one holder at a time, named in the error; gone with its process."""

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from colorjax.training.lock import LOCK_NAME, WorkdirBusyError, WorkdirLock

HOLD_UNTIL_KILLED = """
import sys, time
from colorjax.training.lock import WorkdirLock
lock = WorkdirLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_holder_is_refused_with_the_first_ones_pid_and_host(tmp_path):
    with WorkdirLock(tmp_path), pytest.raises(WorkdirBusyError) as caught:
        WorkdirLock(tmp_path).acquire()
    message = str(caught.value)
    assert str(tmp_path) in message
    assert f"PID {os.getpid()} on {socket.gethostname()}" in message
    with WorkdirLock(tmp_path):  # released at the end of the block
        holder = json.loads((tmp_path / LOCK_NAME).read_text())
    assert holder["pid"] == os.getpid()


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_UNTIL_KILLED, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WorkdirBusyError, match=f"PID {holder.pid} "):
            WorkdirLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder.pid  # stale file
    with WorkdirLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_hosts_other_than_the_first_do_not_take_the_lock(tmp_path):
    with WorkdirLock(tmp_path, hold=False), WorkdirLock(tmp_path):
        pass  # the second would raise WorkdirBusyError had the first locked


def test_a_filesystem_without_locks_warns_and_goes_on(tmp_path, monkeypatch):
    def unsupported(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", unsupported)
    with pytest.warns(UserWarning, match="does not support file locks"), WorkdirLock(tmp_path):
        pass
