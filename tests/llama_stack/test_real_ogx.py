"""The seed's prompts-store test through a real OGX server, on both of its run-config layouts,
and an OGX that refuses to start, named by its reason.

OGX keeps prompts in a SQL table and migrates a KV prompts reference when its config loads, so
the same run config puts the rows in another file than Llama Stack does; `stored_prompts`
(prompts_location) must find them there. Needs OGX (Python 3.12): HARNESS_OGX_BIN names its
`ogx` executable (`pip install ogx==1.5.0` in a 3.12 virtualenv).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import free_port

pytestmark = pytest.mark.ogx

ROOT = Path(__file__).resolve().parents[2]
SEED_TEST = (
    "tests/integration/prompts/test_prompts_seed_plan.py::test_prompt_rows_sit_in_the_prompts_store"
)
CONFIG = """\
version: 2
distro_name: harness-ogx
apis: [inference, prompts]
providers:
  inference:
  - provider_id: openai
    provider_type: remote::openai
    config: {api_key: "${env.OPENAI_API_KEY:=}", base_url: "http://127.0.0.1:9/v1"}
server: {insecure: true}
storage:
  backends:
    kv_default: {type: kv_sqlite, db_path: "${env.SQLITE_STORE_DIR}/kvstore.db"}
    sql_default: {type: sql_sqlite, db_path: "${env.SQLITE_STORE_DIR}/sql_store.db"}
  stores:
    metadata: {namespace: registry, backend: kv_default}
    inference: {table_name: inference_store, backend: sql_default}
    conversations: {table_name: openai_conversations, backend: sql_default}
"""
LAYOUTS = {
    "seed-kv": "    prompts: {namespace: prompts, backend: kv_default}\n",
    "ogx-sql": "    prompts: {table_name: prompts, backend: sql_default}\n",
}


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LLAMA_STACK_", "OGX_")) and k != "OPENAI_API_KEY"
    }
    env.update(SQLITE_STORE_DIR=str(tmp_path / "stores"), OGX_DISABLE_VERSION_CHECK="1")
    return env


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_seed_plan_finds_the_prompt_rows_where_ogx_wrote_them(ogx, tmp_path, layout):
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG + LAYOUTS[layout])
    env = clean_env(tmp_path)

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", SEED_TEST]
        + [f"--stack-config=server:{config}:{free_port()}", "--inference-mode=live"]
        + [f"--stack-command={shlex.quote(ogx)} run {{config}} --port {{port}}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout
    log = Path(re.search(r"log: (\S+)", result.stdout).group(1)).read_text()
    migrated = "Migrating prompts store config from KVStoreReference to" in log
    assert migrated is (layout == "seed-kv")


def test_an_ogx_that_requires_tls_is_named_by_that_in_the_headline(ogx, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.replace("server: {insecure: true}\n", "") + LAYOUTS["ogx-sql"])

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", SEED_TEST]
        + [f"--stack-config=server:{config}:{free_port()}", "--inference-mode=live"]
        + [f"--stack-command={shlex.quote(ogx)} run {{config}} --port {{port}}"],
        cwd=ROOT,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode != 0
    headline = next(line for line in result.stdout.splitlines() if "stack-harness: " in line)
    assert headline.endswith(
        "stack-harness: the stack server exited with code 1 before it was healthy: TLS required: "
        "set tls_certfile/tls_keyfile in server config or pass '--insecure' to disable."
    ), result.stdout
    assert "last 40 lines of" in result.stdout
