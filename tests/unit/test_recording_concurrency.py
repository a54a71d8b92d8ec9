"""Concurrent writers (threads and processes) never leave a partial or invalid recording."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from harness.recording.fingerprint import fingerprint_of_record
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.records import JsonBody
from harness.recording.store import RecordingStore
from harness.recording.transport import wrap_transport
from tests.support.recording import in_test

TEST_ID = "tests/integration/test_concurrent.py::test_many"
REQUESTS = 20
ROUNDS = 3
PAYLOAD = "x" * 20_000  # large enough that a torn write would be visible


def write_all(directory: Path, writer: str) -> None:
    """Record the same REQUESTS interactions ROUNDS times, each answer naming its writer."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"writer": writer, "payload": PAYLOAD})

    settings = RecordingSettings(mode=Mode.RECORD, directory=directory)
    transport = wrap_transport(httpx.MockTransport(answer), settings)
    with httpx.Client(base_url="http://provider", transport=transport) as http:
        for _ in range(ROUNDS):
            for n in range(REQUESTS):
                with in_test(TEST_ID):
                    http.post("/v1/chat/completions", json={"n": n})


WORKER = """
import sys, time
from pathlib import Path
from tests.unit.test_recording_concurrency import write_all
start = Path(sys.argv[2])
while not start.exists():
    time.sleep(0.005)
write_all(Path(sys.argv[1]), sys.argv[3])
"""


def test_eight_threads_and_four_processes_recording_at_once_leave_valid_files(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "recordings"
    start = tmp_path / "start"
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(directory), str(start), f"process-{i}"], env=env
        )
        for i in range(4)
    ]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def thread_writer(i: int) -> None:
        try:
            barrier.wait()
            write_all(directory, f"thread-{i}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=thread_writer, args=(i,)) for i in range(8)]
    time.sleep(0.2)  # let the processes import before releasing everyone together
    start.touch()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    codes = [p.wait(timeout=120) for p in processes]
    assert errors == []
    assert codes == [0, 0, 0, 0]

    store = RecordingStore(directory)
    files = list(store.iter_files())
    assert len(files) == REQUESTS
    writers = set()
    for path in files:
        record = store.load(path)  # parses and has the full shape
        assert fingerprint_of_record(record) == path.stem
        body = record.response.payload
        assert isinstance(body, JsonBody) and body.value["payload"] == PAYLOAD
        writers.add(body.value["writer"])
    assert writers <= {f"thread-{i}" for i in range(8)} | {f"process-{i}" for i in range(4)}
    leftovers = [p for p in directory.rglob("*") if p.is_file() and p.suffix != ".json"]
    assert leftovers == []
