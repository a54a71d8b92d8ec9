"""A pytest plugin that tells Llama Stack's own recorder which test is running.

Llama Stack 0.7's recorder, in a server, files each provider call under the test id it reads
from the `__test_id` field of the `X-LlamaStack-Provider-Data` header (and only when the server
runs with LLAMA_STACK_TEST_STACK_CONFIG_TYPE=server). Its own suite puts it there by patching its
clients in the test process; this plugin does the same for every httpx and httpx2 client a test
uses, for the duration of the test, so that `replay_vs_llama_stack.py` can run the harness's
suite (in live mode, the harness recording nothing) through Llama Stack's recorder.

    pytest -p llama_stack_test_id ...   (with benchmarks/ on PYTHONPATH)
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

HEADER = "X-LlamaStack-Provider-Data"


def _with_test_id(request: Any, test_id: str) -> None:
    data = json.loads(request.headers.get(HEADER) or "{}")
    data["__test_id"] = test_id
    request.headers[HEADER] = json.dumps(data)


@pytest.fixture(autouse=True)
def _llama_stack_test_id(request: pytest.FixtureRequest) -> Iterator[None]:
    test_id = request.node.nodeid
    originals: list[tuple[type, Any]] = []
    for name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        original = module.Client.send

        def send(self: Any, req: Any, *args: Any, _original: Any = original, **kw: Any) -> Any:
            _with_test_id(req, test_id)
            return _original(self, req, *args, **kw)

        module.Client.send = send
        originals.append((module.Client, original))
    try:
        yield
    finally:
        for cls, original in originals:
            cls.send = original
