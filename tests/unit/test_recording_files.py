"""Recording files as people edit them, paths that must check out everywhere, and prune."""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from harness.recording import cli
from harness.recording.errors import RecordingError
from harness.recording.modes import Mode, RecordingSettings, parse_pace
from harness.recording.store import RecordingStore, module_dir, safe_part
from harness.recording.transport import wrap_transport
from harness.recording.usage import write_last_run, write_run
from tests.support.recording import in_test

TEST_ID = "tests/integration/test_files.py::test_one"


def good_record() -> dict:
    return {
        "fingerprint": "a" * 64,
        "test_id": TEST_ID,
        "request": {"method": "POST", "path": "/v1/x", "query": {}, "headers": {}, "body": {}},
        "response": {
            "status": 200,
            "headers": {"content-type": "text/event-stream"},
            "stream": {"framing": "sse", "chunks": [{"at": 0.1, "data": "data: {}\n\n"}]},
        },
    }


@pytest.mark.parametrize(
    ("edit", "names"),
    [
        (lambda r: r["response"].update(status=99999), '"response.status" to be an HTTP status'),
        (lambda r: r["response"].update(headers={"x": 1}), '"response.headers.x" to be a string'),
        (lambda r: r["response"].update(headers=[]), '"response.headers" to be an object'),
        (lambda r: r["response"]["stream"].update(chunks=[]), "to hold at least one chunk"),
        (
            lambda r: r["response"]["stream"]["chunks"][0].update(data="garbage"),
            '"response.stream.chunks[0].data" to be an SSE event',
        ),
        (
            lambda r: r["response"]["stream"]["chunks"][0].update(at=1e9),
            '"response.stream.chunks[0].at" to be seconds from 0 to 3600',
        ),
        (lambda r: r.update(occurrence=-1), '"occurrence" to be 0 or more'),
        (lambda r: r["request"].update(headers={"a": None}), '"request.headers.a"'),
        (
            lambda r: r["response"].update(failure={"kind": "x", "message": "m"}),
            'exactly one of "response.body"',
        ),
    ],
)
def test_a_hand_edited_recording_names_the_file_and_the_field(
    tmp_path: Path, edit: object, names: str
) -> None:
    record = good_record()
    edit(record)  # type: ignore[operator]
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(record))
    with pytest.raises(RecordingError) as caught:
        RecordingStore(tmp_path).load(path)
    assert str(path) in str(caught.value) and names in str(caught.value)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('{"fingerprint": NaN}', "NaN is not valid JSON"),
        ('{"x": Infinity}', "Infinity is not valid JSON"),
        ("[" * 200_000 + "]" * 200_000, "nested 200000 levels deep"),
    ],
)
def test_nan_infinity_and_deep_nesting_are_named_not_tracebacks(
    tmp_path: Path, text: str, names: str
) -> None:
    path = tmp_path / "odd.json"
    path.write_text(text)
    with pytest.raises(RecordingError, match=names):
        RecordingStore(tmp_path).load(path)


def test_a_directory_where_a_recording_should_be_is_named(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path)
    path = store.path_for(TEST_ID, "b" * 64)
    path.mkdir(parents=True)
    with pytest.raises(RecordingError, match="is a directory where a recording file should be"):
        store.load_if_exists(path)


def test_paths_that_break_a_checkout_elsewhere_are_mapped_or_refused(tmp_path: Path) -> None:
    assert module_dir("tests/con/aux.py::t") == "tests/con_/aux_"
    assert module_dir("tests/com1.txt/x.py::t") == "tests/com1_.txt/x"
    assert safe_part('what?"<>|*') == "what______" and safe_part("trailing. ") == "trailing"
    assert module_dir("tests/integration/inference/test_chat.py::t") == (
        "tests/integration/inference/test_chat"
    )
    store = RecordingStore(tmp_path)
    first = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    settings = RecordingSettings(Mode.RECORD, tmp_path)
    with httpx.Client(base_url="http://p", transport=wrap_transport(first, settings)) as http:
        with in_test("tests/Inference/test_a.py::t"):
            http.get("/v1/a")
        with in_test("tests/inference/test_b.py::t"), pytest.raises(RecordingError) as caught:
            http.get("/v1/b")
    assert "differs only in case from" in str(caught.value)
    assert len(list(store.iter_files())) == 1


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "1e9", "fast"])
def test_a_replay_pace_that_would_hang_or_means_nothing_is_refused(value: str) -> None:
    with pytest.raises(RecordingError, match="not a valid replay pace"):
        parse_pace(value)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def record(directory: Path, test_id: str, path: str) -> Path:
    answer = httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True}))
    settings = RecordingSettings(mode=Mode.RECORD, directory=directory)
    with (
        in_test(test_id),
        httpx.Client(base_url="http://p", transport=wrap_transport(answer, settings)) as http,
    ):
        http.post(path, json={})
    for file in directory.rglob("*.json"):
        try:  # the prune beside this may delete the stale file while we look
            stored = json.loads(file.read_text())
        except FileNotFoundError:
            continue
        if isinstance(stored, dict) and stored.get("request", {}).get("path") == path:
            return file
    raise AssertionError(f"no recording of {path} under {directory}")


def test_prune_never_deletes_a_recording_written_after_the_run_it_trusts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "recordings"
    kept = record(directory, "tests/t.py::a", "/v1/one")
    stale = record(directory, "tests/t.py::a", "/v1/stale")
    started = time.time()
    write_last_run(directory, [kept.relative_to(directory).as_posix()], ["tests/t.py::a"], started)
    fresh: list[Path] = []
    stop = threading.Event()

    def prune_all_the_time() -> None:
        while not stop.is_set():
            run(["recordings", "prune", "--dir", str(directory)])
            time.sleep(0.01)

    pruner = threading.Thread(target=prune_all_the_time)
    pruner.start()
    try:
        for n in range(20):  # a record session re-recording a changed test beside it
            fresh.append(record(directory, "tests/t.py::a", f"/v1/new-{n}"))
    finally:
        stop.set()
        pruner.join()
    capsys.readouterr()
    assert not stale.exists()
    assert kept.exists() and all(p.exists() for p in fresh)


def test_prune_trusts_shards_only_when_together_they_ran_every_recorded_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "recordings"
    a = record(directory, "tests/t.py::a", "/v1/a")
    b = record(directory, "tests/u.py::b", "/v1/b")
    unused = record(directory, "tests/u.py::b", "/v1/old")
    started = time.time()
    shard_a = write_run(tmp_path / "a.json", [a.relative_to(directory).as_posix()],
                        ["tests/t.py::a"], started)  # fmt: skip
    shard_b = write_run(tmp_path / "b.json", [b.relative_to(directory).as_posix()],
                        ["tests/u.py::b"], started)  # fmt: skip

    with pytest.raises(RecordingError, match="did not run 1 recorded test"):
        run(["recordings", "prune", "--dir", str(directory), "--run", str(shard_a)])
    assert run(["recordings", "prune", "--dir", str(directory)]
               + ["--run", str(shard_a), "--run", str(shard_b)]) == 0  # fmt: skip
    assert a.exists() and b.exists() and not unused.exists()
    assert "1 unused recording(s)" in capsys.readouterr().out


def test_list_says_which_stack_and_setup_made_each_test_s_recordings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.recording.recorder import Recorder

    directory = tmp_path / "recordings"
    answer = httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True}))
    settings = RecordingSettings(Mode.RECORD, directory, setup="ollama")
    recorder = Recorder(settings, provenance=lambda: {"stack": "ogx 1.5.0"})
    with (
        in_test(TEST_ID),
        httpx.Client(
            base_url="http://p", transport=wrap_transport(answer, settings, recorder=recorder)
        ) as http,
    ):
        http.get("/v1/models")
    (path,) = directory.rglob("*.json")
    assert json.loads(path.read_text())["provenance"] == {"setup": "ollama", "stack": "ogx 1.5.0"}
    assert run(["recordings", "list", "--dir", str(directory)]) == 0
    assert "setup ollama, stack ogx 1.5.0" in capsys.readouterr().out


def test_writers_making_the_same_new_directory_at_once_are_no_case_clash(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from harness.recording.records import JsonBody, RecordedRequest, RecordedResponse, Recording

    store = RecordingStore(tmp_path)

    def write(n: int) -> None:
        test_id = f"tests/dir{n // 8}/test_m.py::t"
        request = RecordedRequest("GET", f"/v1/{n}", {}, {}, None)
        store.write(
            Recording(f"{n:064x}", test_id, request, RecordedResponse(200, {}, JsonBody(n)))
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8 * 40)))  # 40 new directories, 8 writers racing for each
    assert len(list(store.iter_files())) == 8 * 40
