"""What this stack knows about each API and provider type, without importing any client code.

The config loader validates against this table and `run_config_from_providers` builds its
defaults from it, so adding a provider type is one entry here plus, if its wire format is not
OpenAI's, an adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProviderSpec:
    """One provider type: its default config (run.yaml form) and embedding-model metadata."""

    provider_type: str
    default_config: dict[str, Any]
    embedding_models: dict[str, dict[str, int]] = field(default_factory=dict)


INFERENCE_PROVIDERS: dict[str, ProviderSpec] = {
    "remote::ollama": ProviderSpec(
        "remote::ollama",
        {"url": "${env.OLLAMA_URL:=http://localhost:11434}"},
        {
            "all-minilm:l6-v2": {"embedding_dimension": 384, "context_length": 512},
            "nomic-embed-text": {"embedding_dimension": 768, "context_length": 8192},
        },
    ),
    "remote::vllm": ProviderSpec(
        "remote::vllm",
        {
            "url": "${env.VLLM_URL:=}",
            "max_tokens": "${env.VLLM_MAX_TOKENS:=4096}",
            "api_token": "${env.VLLM_API_TOKEN:=fake}",
            "tls_verify": "${env.VLLM_TLS_VERIFY:=true}",
        },
    ),
    "remote::openai": ProviderSpec(
        "remote::openai",
        {
            "api_key": "${env.OPENAI_API_KEY:=}",
            "base_url": "${env.OPENAI_BASE_URL:=https://api.openai.com/v1}",
        },
        {
            "text-embedding-3-small": {"embedding_dimension": 1536, "context_length": 8192},
            "text-embedding-3-large": {"embedding_dimension": 3072, "context_length": 8192},
        },
    ),
}

# The Prompts API is built in; its only "provider" is the KV backend type behind its store.
PROMPTS_PROVIDERS = ("kv_sqlite",)

# Config keys whose values are secrets: redacted in logs and /v1/providers, kept off disk.
SECRET_KEY_PARTS = ("api_key", "api_token", "password", "secret")


PLACEHOLDER_SECRETS = frozenset({"fake", "NO KEY REQUIRED"})


def known_apis() -> dict[str, list[str]]:
    """API name -> the provider types this stack accepts for it."""
    return {"inference": sorted(INFERENCE_PROVIDERS), "prompts": list(PROMPTS_PROVIDERS)}


def resolve_provider_type(api: str, name: str) -> str | None:
    """Accept a full type ("remote::ollama") or its short name ("ollama"); None if unknown."""
    for provider_type in known_apis().get(api, []):
        if name in (provider_type, provider_type.split("::")[-1]):
            return provider_type
    return None


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def redact(value: Any) -> Any:
    """A copy of a config tree with every secret-named key's value replaced by ********."""
    if isinstance(value, dict):
        return {k: ("********" if is_secret_key(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def secret_values(config: dict[str, Any]) -> list[str]:
    """The real secret values of one provider config (passed to the recording layer).

    Placeholders such as vLLM's default token "fake" are left out: redacting them would
    rewrite every occurrence of an ordinary word in recorded bodies.
    """
    return [
        str(v)
        for k, v in config.items()
        if is_secret_key(k) and v and str(v) not in PLACEHOLDER_SECRETS and len(str(v)) >= 4
    ]
