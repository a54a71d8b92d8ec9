"""Helpers for the stack's unit tests: run configs pointing at fake providers, in-process apps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from starlette.testclient import TestClient

from harness.stack.app import create_app
from harness.stack.run_config import load_run_config


def provider_entry(provider_type: str, base_url: str, **config: Any) -> dict[str, Any]:
    """A provider entry for a fake at `base_url` (its Ollama-style root)."""
    provider_id = provider_type.split("::")[-1]
    if provider_type == "remote::ollama":
        config = {"url": base_url, **config}
    elif provider_type == "remote::vllm":
        config = {"url": base_url + "/v1", **config}
    else:
        config = {"base_url": base_url + "/v1", "api_key": "sk-test-key", **config}
    return {"provider_id": provider_id, "provider_type": provider_type, "config": config}


def write_run_config(
    directory: Path, providers: list[dict[str, Any]], models: list[dict[str, Any]] | None = None
) -> Path:
    data = {
        "version": 2,
        "image_name": "unit",
        "providers": {"inference": providers},
        "registered_resources": {"models": models or []},
        "storage": {
            "backends": {
                "kv_default": {"type": "kv_sqlite", "db_path": str(directory / "kvstore.db")},
                "sql_default": {"type": "sql_sqlite", "db_path": str(directory / "sql_store.db")},
            },
            "stores": {
                "metadata": {"backend": "kv_default", "namespace": "registry"},
                "inference": {"backend": "sql_default", "table_name": "inference_store"},
                "prompts": {"backend": "kv_default", "namespace": "prompts"},
            },
        },
    }
    path = directory / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def stack_client(directory: Path, providers: list[dict[str, Any]], **kwargs: Any) -> TestClient:
    """A TestClient over a fresh app (use it as a context manager to run the lifespan)."""
    config = load_run_config(write_run_config(directory, providers, **kwargs), env={})
    return TestClient(create_app(config), raise_server_exceptions=False)
