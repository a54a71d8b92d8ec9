"""Processes by identity: a pid with its start time, its state, and how it ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from harness import serverstate
from harness.processes import (
    ProcessId,
    descendants,
    describe_exit,
    start_time,
    stopped_in_tree,
)
from tests.support.processes import wait_gone


def test_a_reused_pid_is_not_the_process_that_held_it():
    me = ProcessId.current()

    assert me.alive()
    assert me.start is not None
    # The same pid with another start time: what a state file names after the kernel reused
    # the pid of a session that died.
    assert not ProcessId(me.pid, me.start - 1).alive()
    assert ProcessId(me.pid).alive()  # without a start time the pid is trusted


def test_a_state_file_of_an_older_release_is_still_read(tmp_path):
    old = {"pid": os.getpid(), "holders": [os.getpid(), 123456789], "signature": {}}
    serverstate.write_state(tmp_path, 9, old)

    state = serverstate.read_state(tmp_path, 9)

    assert serverstate.server_of(state) == ProcessId(os.getpid())
    assert serverstate.holders_of(state) == [ProcessId(os.getpid()), ProcessId(123456789)]
    assert serverstate.live_holders(state) == [ProcessId(os.getpid())]


def test_holders_are_written_with_their_start_time(tmp_path):
    state: dict = {}
    serverstate.set_holders(state, [ProcessId.current()])
    serverstate.write_state(tmp_path, 9, state)

    (holder,) = serverstate.read_state(tmp_path, 9)["holders"]

    assert holder == {"pid": os.getpid(), "start": start_time(os.getpid())}


def test_an_exit_is_described_by_its_code_or_its_signal_by_name():
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGKILL) == "was killed by signal SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "was killed by signal SIGSEGV"


def _eventually(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
    return value


def test_a_stopped_child_is_found_in_the_tree_of_its_parent():
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess; subprocess.run(['sleep', '30'])"],
        start_new_session=True,
    )
    try:
        (child,) = _eventually(lambda: descendants(parent.pid))
        assert stopped_in_tree(parent.pid) == []
        os.kill(child, signal.SIGSTOP)
        assert _eventually(lambda: stopped_in_tree(parent.pid)) == [child]
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    assert wait_gone(parent.pid)
