"""The run.yaml (version 2) schema as pydantic models, and its errors in the user's terms.

The models describe the file as it nests (names as mapping keys, `server.port`, ...); the
loader turns a validated file into the typed values the stack uses (`run_config_model`). Keys
the models do not name are ignored: Llama Stack's and OGX's configs carry many this stack does
not serve. Scalars are strict (a quoted "8321" is not a port) and a null counts as absent,
since `${env.X:=}` substitutes to null. Every problem is reported as
`<file>: <dotted.key[0].path>: <what was expected>, got <what was given>`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from harness.stack.errors import StackConfigError
from harness.stack.providers.registry import known_apis, resolve_provider_type
from harness.stack.run_config_model import BACKEND_TYPES, DEFAULT_PROMPTS_STORE, STORE_FAMILIES

# The error type of this module's own checks; its context says where below the error's loc.
PROBLEM = "run_config"


def problem(message: str, *at: str | int) -> PydanticCustomError:
    """A validation error with our message, `at` the key path below the validated value."""
    return PydanticCustomError(PROBLEM, "{problem}", {"problem": message, "at": at})


def _number_as_text(value: Any) -> Any:
    """Model ids such as `3` or `1.5` arrive as YAML numbers; they name a model all the same."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _served_api(api: str) -> str:
    apis = known_apis()
    if api not in apis:
        raise problem(f"unknown API '{api}'; this stack serves: {', '.join(apis)}")
    return api


Text = StrictStr
NumberOrText = Annotated[StrictStr, BeforeValidator(_number_as_text)]
ApiName = Annotated[StrictStr, AfterValidator(_served_api)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        return _without_nulls(data)


def _without_nulls(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: value for key, value in data.items() if value is not None}
    return data


class ProviderEntry(_Table):
    provider_id: Text | None = None
    provider_type: Text
    config: dict[str, Any] = {}


class ModelEntry(_Table):
    model_id: NumberOrText
    provider_id: Text | None = None
    provider_model_id: Text | None = None
    model_type: Literal["llm", "embedding"] = "llm"
    metadata: dict[str, Any] = {}


class Resources(_Table):
    models: list[ModelEntry] = []


class Server(_Table):
    port: StrictInt | None = None
    host: Text | None = None


class Backend(_Table):
    type: Text
    db_path: NumberOrText

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        """An unsupported type is the one problem worth saying: its other keys do not apply."""
        data = _without_nulls(data)
        kind = data.get("type") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind not in BACKEND_TYPES:
            raise problem(
                f"unsupported backend type '{kind}'; this stack supports: "
                f"{', '.join(BACKEND_TYPES)}",
                "type",
            )
        return data

    @property
    def family(self) -> str:
        return BACKEND_TYPES[self.type]


class StoreRef(_Table):
    """A store's reference into `storage.backends`: a KV namespace or a SQL table.

    Llama Stack's `max_write_queue_size` / `num_writers` tune its async write queue; this stack
    writes directly, so they are ignored like any unknown key.
    """

    backend: Text
    namespace: Text | None = None
    table_name: Text | None = None


class Stores(_Table):
    metadata: StoreRef | None = None
    inference: StoreRef | None = None
    conversations: StoreRef | None = None
    responses: StoreRef | None = None
    prompts: StoreRef | None = None


class Storage(_Table):
    backends: dict[str, Backend]
    stores: Stores = Stores()

    @model_validator(mode="after")
    def _stores_reference_backends_of_their_family(self) -> Storage:
        for name, ref in self.named_stores().items():
            if ref.backend not in self.backends:
                raise problem(
                    f"{name} references unknown backend '{ref.backend}'. "
                    f"Available backends: {sorted(self.backends)}",
                    "stores",
                    name,
                    "backend",
                )
            backend = self.backends[ref.backend]
            families = STORE_FAMILIES[name]
            if backend.family not in families:
                required = " or ".join(f"{f}_*" for f in families)
                raise problem(
                    f"{name} references backend '{ref.backend}' of type '{backend.type}', "
                    f"but a backend of type {required} is required.",
                    "stores",
                    name,
                    "backend",
                )
            key = "namespace" if backend.family == "kv" else "table_name"
            if getattr(ref, key) is None:
                raise problem(
                    f"missing required key '{key}' (a store on the {backend.family}_* backend "
                    f"'{ref.backend}' names its {key.replace('_', ' ')})",
                    "stores",
                    name,
                    key,
                )
        return self

    def named_stores(self) -> dict[str, StoreRef]:
        """The stores this stack reads, the prompts store defaulting as in Llama Stack."""
        stores = {name: getattr(self.stores, name) for name in STORE_FAMILIES}
        if stores["prompts"] is None:
            stores["prompts"] = StoreRef.model_validate(DEFAULT_PROMPTS_STORE)
        return {name: ref for name, ref in stores.items() if ref is not None}


class RunConfigFile(_Table):
    """The whole file. `distro_name` is OGX's name for `image_name` (and wins over it, as there)."""

    version: StrictInt = 2
    image_name: Text
    apis: list[Text] = []
    providers: dict[ApiName, list[ProviderEntry]]
    registered_resources: Resources = Resources()
    server: Server = Server()
    storage: Storage

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        data = _without_nulls(data)
        if isinstance(data, dict) and "distro_name" in data:
            data = {**data, "image_name": data["distro_name"]}
        elif isinstance(data, dict) and "image_name" not in data:
            raise problem("missing required key 'image_name' (or 'distro_name')", "image_name")
        return data

    @field_validator("providers")
    @classmethod
    def _provider_types_are_known(
        cls, value: dict[str, list[ProviderEntry]]
    ) -> dict[str, list[ProviderEntry]]:
        apis = known_apis()
        for api, entries in value.items():
            for index, entry in enumerate(entries):
                if resolve_provider_type(api, entry.provider_type) != entry.provider_type:
                    raise problem(
                        f"unknown provider type '{entry.provider_type}' for API '{api}'; "
                        f"valid: {', '.join(apis[api])}",
                        api,
                        index,
                        "provider_type",
                    )
        return value


def validate_file(data: dict[str, Any], source: str) -> RunConfigFile:
    """The validated file, or one StackConfigError with a line per problem."""
    try:
        return RunConfigFile.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, source) from None


# What a pydantic type error expected, in the words of a YAML file.
EXPECTED = {
    "int_type": "int",
    "string_type": "string",
    "bool_type": "bool",
    "float_type": "number",
    "dict_type": "mapping",
    "model_type": "mapping",
    "list_type": "list",
}


def config_error(exc: ValidationError, source: str) -> StackConfigError:
    lines = []
    for error in exc.errors(include_url=False):
        context = error.get("ctx") or {}
        loc = (*error["loc"], *(context.get("at", ()) if error["type"] == PROBLEM else ()))
        lines.append(f"{source}: {key_path(loc)}: {describe(error, loc)}")
    return StackConfigError("\n".join(lines))


def key_path(loc: tuple[str | int, ...]) -> str:
    """('providers', 'inference', 0, 'provider_type') -> providers.inference[0].provider_type"""
    path = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the key itself", which the path names
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def describe(error: Any, loc: tuple[str | int, ...]) -> str:
    kind, given = error["type"], error.get("input")
    if kind == PROBLEM:
        return str(error["ctx"]["problem"])
    if kind == "missing":
        return f"missing required key '{loc[-1]}'"
    if kind in EXPECTED:
        return f"expected {EXPECTED[kind]}, got {kind_of(given)} {short_repr(given)}"
    if kind == "literal_error":
        return f"expected {error['ctx']['expected']}, got {short_repr(given)}"
    return f"{error['msg']}, got {short_repr(given)}"


def kind_of(value: Any) -> str:
    names = {dict: "mapping", list: "list", str: "string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
