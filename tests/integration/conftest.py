"""Fixtures the integration suite adds on top of the harness plugin's."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def prompts_kvstore_path(stack_run_config) -> Path:
    """The sqlite file behind `storage.stores.prompts`, read from the run config in use."""
    if stack_run_config is None:
        pytest.skip("the stack is remote: its prompts store is not on this machine")
    path = stack_run_config.kv_store_path("prompts")
    if path is None:
        pytest.skip("the prompts store is not on a kv_sqlite backend")
    return path
