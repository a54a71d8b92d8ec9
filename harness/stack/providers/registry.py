"""What this stack knows about each API and provider type, without importing any client code.

The config loader validates against this table, `run_config_from_providers` builds its
defaults from it, and the OpenAI-compatible adapter reads every provider difference (URL, key,
defaults, model aliases) from it; so adding a provider type is one entry here plus, if its wire
format is not OpenAI's, an adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.recording.redaction import MIN_SECRET_LENGTH


@dataclass(frozen=True)
class ProviderSpec:
    """Everything that sets one provider type apart; the adapter reads these, never the type.

    The defaults describe a provider that needs nothing special: its OpenAI API lives at the
    configured URL, it sends no key, and its model listing is taken at its word.
    """

    provider_type: str
    # Run.yaml form, `${env.*}` placeholders included; substituted with an empty environment,
    # it also gives the fallbacks for keys a run config leaves empty (e.g. the URL).
    default_config: dict[str, Any]
    # Metadata of the embedding models the provider lists, keyed by provider model id.
    embedding_models: dict[str, dict[str, int]] = field(default_factory=dict)
    # The config key holding the URL, and what to append to reach the OpenAI API under it.
    url_key: str = "url"
    url_suffix: str = ""
    # Said when neither the config nor the default config gives a URL.
    url_required_message: str = "its config has no URL."
    # The config key holding the API key, if the provider sends one, and whether nothing works
    # without a key: then its models are not listed, and a request with no key (config or
    # provider data) is refused before it reaches the provider.
    key_field: str | None = None
    key_required: bool = False
    # The X-LlamaStack-Provider-Data field that overrides the key for one request.
    provider_data_key: str | None = None
    # With a key set, any model id is accepted without looking at the listing.
    unchecked_when_keyed: bool = False
    # Suffixes under which the provider may list a model registered without them.
    alias_suffixes: tuple[str, ...] = ()
    # Config keys for a default `max_tokens` on text requests and for TLS verification.
    max_tokens_key: str | None = None
    verify_key: str | None = None


INFERENCE_PROVIDERS: dict[str, ProviderSpec] = {
    # Ollama serves its OpenAI API under /v1 of its root URL and needs no key; it lists
    # models with their tag, so registering "llama3.2" also accepts "llama3.2:latest".
    "remote::ollama": ProviderSpec(
        "remote::ollama",
        default_config={"url": "${env.OLLAMA_URL:=http://localhost:11434}"},
        embedding_models={
            "all-minilm:l6-v2": {"embedding_dimension": 384, "context_length": 512},
            "nomic-embed-text": {"embedding_dimension": 768, "context_length": 8192},
        },
        url_suffix="/v1",
        alias_suffixes=(":latest",),
    ),
    # vLLM's URL is used as given (it includes /v1) and has no default; with a token set the
    # model check is skipped, and text requests without max_tokens get the configured one.
    "remote::vllm": ProviderSpec(
        "remote::vllm",
        default_config={
            "url": "${env.VLLM_URL:=}",
            "max_tokens": "${env.VLLM_MAX_TOKENS:=4096}",
            "api_token": "${env.VLLM_API_TOKEN:=fake}",
            "tls_verify": "${env.VLLM_TLS_VERIFY:=true}",
        },
        url_required_message="You must provide a URL in run.yaml (or via the VLLM_URL "
        "environment variable) to use vLLM.",
        key_field="api_token",
        provider_data_key="vllm_api_token",
        unchecked_when_keyed=True,
        max_tokens_key="max_tokens",
        verify_key="tls_verify",
    ),
    # OpenAI: base_url (with /v1) and a key that is required, from the config or per request.
    "remote::openai": ProviderSpec(
        "remote::openai",
        default_config={
            "api_key": "${env.OPENAI_API_KEY:=}",
            "base_url": "${env.OPENAI_BASE_URL:=https://api.openai.com/v1}",
        },
        embedding_models={
            "text-embedding-3-small": {"embedding_dimension": 1536, "context_length": 8192},
            "text-embedding-3-large": {"embedding_dimension": 3072, "context_length": 8192},
        },
        url_key="base_url",
        key_field="api_key",
        key_required=True,
        provider_data_key="openai_api_key",
    ),
    # Anthropic through its OpenAI-compatible endpoint: base_url and a required key, like OpenAI.
    "remote::anthropic": ProviderSpec(
        "remote::anthropic",
        default_config={
            "api_key": "${env.ANTHROPIC_API_KEY:=}",
            "base_url": "${env.ANTHROPIC_BASE_URL:=https://api.anthropic.com/v1}",
        },
        url_key="base_url",
        key_field="api_key",
        key_required=True,
        provider_data_key="anthropic_api_key",
    ),
}

# The Prompts API is built in; its only "provider" is the KV backend type behind its store.
PROMPTS_PROVIDERS = ("kv_sqlite",)

# Config keys whose values are secrets: redacted in logs and /v1/providers, kept off disk.
SECRET_KEY_PARTS = ("api_key", "api_token", "password", "secret")
# Default "keys" that are no secret (vLLM's starter token, Llama Stack's keyless marker).
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
    rewrite every occurrence of an ordinary word in recorded bodies. The length floor is the
    redactor's own, so nothing is handed over that it would ignore anyway.
    """
    return [
        str(v)
        for k, v in config.items()
        if is_secret_key(k)
        and v
        and str(v) not in PLACEHOLDER_SECRETS
        and len(str(v)) >= MIN_SECRET_LENGTH
    ]
