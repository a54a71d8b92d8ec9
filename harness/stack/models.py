"""The model registry: identifiers `provider_id/provider_model_id`, and their wire shapes.

Objects carry both the OpenAI fields (`id`, `object`, `created`, `owned_by`) and the Llama Stack
ones (`identifier`, `provider_id`, ...), so the openai SDK and both generations of
llama-stack-client each find what they read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.stack.errors import ModelNotFoundError


class ModelProvider(Protocol):
    """What registration needs of a provider: whether it serves a model id."""

    def is_available(self, provider_model_id: str) -> bool: ...


@dataclass
class Model:
    identifier: str
    provider_id: str
    provider_resource_id: str
    model_type: str = "llm"
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = "listed_from_provider"

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.identifier,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "llama_stack",
            "custom_metadata": {
                "model_type": self.model_type,
                "provider_id": self.provider_id,
                "provider_resource_id": self.provider_resource_id,
                **self.metadata,
            },
            "identifier": self.identifier,
            "provider_resource_id": self.provider_resource_id,
            "provider_id": self.provider_id,
            "type": "model",
            "metadata": self.metadata,
            "model_type": self.model_type,
        }

    def to_detail(self) -> dict[str, Any]:
        return {**self.to_wire(), "owner": None, "source": self.source}


class ModelRegistry:
    """Registered models by identifier, plus Llama Stack's registration rules."""

    def __init__(self, providers: dict[str, ModelProvider]) -> None:
        self.providers = providers
        self._models: dict[str, Model] = {}

    def list(self) -> list[Model]:
        return list(self._models.values())

    def find(self, identifier: str) -> Model | None:
        return self._models.get(identifier)

    def get(self, identifier: str) -> Model:
        model = self._models.get(identifier)
        if model is None:
            raise ModelNotFoundError(identifier)
        return model

    def add(self, model: Model) -> Model:
        """Register without checks (startup listing, run.yaml); replaces a same-named model."""
        self._models[model.identifier] = model
        return model

    def unregister(self, identifier: str) -> None:
        self.get(identifier)
        del self._models[identifier]

    def register(
        self,
        model_id: str,
        *,
        provider_model_id: str | None = None,
        provider_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        model_type: str | None = None,
    ) -> Model:
        """POST /v1/models semantics: the identifier is provider_id/provider_model_id."""
        metadata = dict(metadata or {})
        model_type = model_type or "llm"
        if provider_id is None:
            if len(self.providers) != 1:
                raise ValueError(
                    f"Please specify a provider_id for model {model_id} since multiple "
                    f"providers are available: {self.providers.keys()}.\n\n"
                    "Use the provider_id as a prefix to disambiguate, e.g. "
                    "'provider_id/model_id'."
                )
            provider_id = next(iter(self.providers))
        if provider_id not in self.providers:
            raise ValueError(
                f"Provider '{provider_id}' not found; enabled inference providers: "
                f"{sorted(self.providers)}"
            )
        provider_model_id = provider_model_id or model_id
        if model_type == "embedding" and "embedding_dimension" not in metadata:
            raise ValueError("Embedding model must have an embedding dimension in its metadata")
        if not self.providers[provider_id].is_available(provider_model_id):
            raise ValueError(
                f"Model {provider_model_id} is not available from provider {provider_id}"
            )
        identifier = f"{provider_id}/{provider_model_id}"
        if identifier in self._models:
            raise ValueError(
                f"Object of type 'model' and identifier '{identifier}' already exists. "
                "Unregister it first if you want to replace it."
            )
        return self.add(
            Model(
                identifier, provider_id, provider_model_id, model_type, metadata, "via_register_api"
            )
        )
