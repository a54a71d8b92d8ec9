"""Setups: named bundles of provider environment defaults and default model ids.

A replay on a fresh machine must enable the same providers and ask for the same model ids as
the machine that recorded, or every request misses. Llama Stack's suites call such a bundle a
setup; `--setup ollama` (the default) is what the committed recordings were made with. The
defaults never override a value already set in the environment, so a real `OLLAMA_URL` still
records against a real model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

DEFAULT_SETUP = "ollama"


class SetupError(ValueError):
    """An unknown setup name; the message lists the valid ones."""


# The variable that carries the API key of each hosted provider, by model-id prefix.
PROVIDER_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "openai": "OPENAI_API_KEY",
        "anthropic": "ANTHROPIC_API_KEY",
        "gemini": "GEMINI_API_KEY",
        "groq": "GROQ_API_KEY",
        "together": "TOGETHER_API_KEY",
        "fireworks": "FIREWORKS_API_KEY",
    }
)
REPLAY_KEY_PLACEHOLDER = "replay-needs-no-key"


@dataclass(frozen=True)
class Setup:
    name: str
    description: str
    env: Mapping[str, str] = field(default_factory=dict)
    text_model: str | None = None
    embedding_model: str | None = None
    vision_model: str | None = None
    embedding_dimension: int | None = None
    keys: tuple[str, ...] = ()  # the API-key variables its provider needs to record
    stack_command: str | None = None  # the --stack-command it runs, if not the reference stack

    def env_defaults(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The setup's variables that `environ` does not already set (an empty value is unset)."""
        return {key: value for key, value in self.env.items() if not environ.get(key)}


def key_variables(setup: Setup, models: list[str | None]) -> list[str]:
    """The API-key variables a run needs: the setup's, and those of its models' providers."""
    names = list(setup.keys)
    for model in models:
        prefix = (model or "").split("/", 1)[0]
        if prefix in PROVIDER_KEYS and PROVIDER_KEYS[prefix] not in names:
            names.append(PROVIDER_KEYS[prefix])
    return names


SETUPS: Mapping[str, Setup] = MappingProxyType(
    {
        "ollama": Setup(
            name="ollama",
            description="Ollama at OLLAMA_URL (default http://localhost:11434)",
            env=MappingProxyType({"OLLAMA_URL": "http://localhost:11434"}),
            text_model="ollama/llama3.2:3b",
            embedding_model="ollama/all-minilm:l6-v2",
            vision_model="ollama/qwen2.5vl:3b",
            embedding_dimension=384,
        ),
        "vllm": Setup(
            name="vllm",
            description="vLLM at VLLM_URL (default http://localhost:8000/v1), no embedding model",
            env=MappingProxyType({"VLLM_URL": "http://localhost:8000/v1"}),
            text_model="vllm/Qwen/Qwen3-0.6B",
        ),
        "openai": Setup(
            name="openai",
            description="an OpenAI-compatible server at OPENAI_BASE_URL with OPENAI_API_KEY",
            text_model="openai/gpt-4o-mini",
            embedding_model="openai/text-embedding-3-small",
            embedding_dimension=1536,
            keys=("OPENAI_API_KEY",),
        ),
        "gpt": Setup(
            name="gpt",
            description="OpenAI's GPT models at api.openai.com with OPENAI_API_KEY",
            env=MappingProxyType({"OPENAI_BASE_URL": "https://api.openai.com/v1"}),
            text_model="openai/gpt-4o-mini",
            embedding_model="openai/text-embedding-3-small",
            vision_model="openai/gpt-4o-mini",
            embedding_dimension=1536,
            keys=("OPENAI_API_KEY",),
        ),
        "claude": Setup(
            name="claude",
            description="Anthropic's Claude through its OpenAI-compatible endpoint, with "
            "ANTHROPIC_API_KEY (no embedding model)",
            env=MappingProxyType({"ANTHROPIC_BASE_URL": "https://api.anthropic.com/v1"}),
            text_model="anthropic/claude-haiku-4-5",
            vision_model="anthropic/claude-haiku-4-5",
            keys=("ANTHROPIC_API_KEY",),
        ),
    }
)


def get_setup(name: str, *, source: str = "--setup", known: Mapping[str, Setup] = SETUPS) -> Setup:
    """Look a setup up by name; an unknown name is a `SetupError` listing the valid ones."""
    try:
        return known[name.strip()]
    except KeyError:
        raise SetupError(
            f"{source}={name!r} is not a known setup; use one of: {', '.join(known)}"
        ) from None


def help_text() -> str:
    """One line per built-in setup, for `pytest --help`."""
    return "; ".join(f"{s.name}: {s.description}" for s in SETUPS.values())
