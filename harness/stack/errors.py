"""Exception types of the reference stack and their HTTP translation.

One place decides which status and body every failure becomes, so the JSON handlers, the
streaming error events and the tests agree with Llama Stack's `translate_exception`.
"""

from __future__ import annotations

from typing import Any


class StackConfigError(Exception):
    """A run configuration the user must fix: the message names the file, key path and fix."""


class ModelNotFoundError(Exception):
    """The requested model is neither registered nor routable to a provider (HTTP 404)."""

    status_code = 404

    def __init__(self, model_id: str) -> None:
        super().__init__(
            f"Model '{model_id}' not found. Use 'client.models.list()' to list available Models."
        )
        self.model_id = model_id


class ModelTypeError(Exception):
    """A model used for the wrong kind of request (an embedding model for chat); HTTP 500."""


class UpstreamError(Exception):
    """The provider answered with an error status; the stack answers with the same status."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class UpstreamConnectionError(Exception):
    """The provider could not be reached (HTTP 502); names the provider and its URL."""

    status_code = 502

    def __init__(self, provider_id: str, url: str, reason: str) -> None:
        super().__init__(f"Could not connect to provider '{provider_id}' at {url}: {reason}")


INTERNAL_ERROR = "Internal server error: An unexpected error occurred."


def translate_exception(exc: BaseException) -> tuple[int, Any]:
    """Map an exception raised while serving a request to (status, detail).

    Mirrors Llama Stack's table: validation errors 400 with their error list, ValueError 400
    "Invalid value: ...", anything with an int `status_code` keeps it, the rest is 500.
    """
    from pydantic import ValidationError

    from harness.recording.errors import RecordingError, ReplayMissError

    if isinstance(exc, ReplayMissError):
        return 500, exc.summary()
    if isinstance(exc, RecordingError):
        return 500, str(exc)  # names the recording file and the cause
    if isinstance(exc, ValidationError):
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return 400, {"errors": errors}
    if isinstance(exc, UpstreamError):
        return exc.status_code, exc.detail
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool):
        return status, str(exc)
    if isinstance(exc, ValueError):
        return 400, f"Invalid value: {exc}"
    if isinstance(exc, PermissionError):
        return 403, f"Permission denied: {exc}"
    if isinstance(exc, ConnectionError):
        return 502, str(exc)
    if isinstance(exc, TimeoutError):
        return 504, f"Operation timed out: {exc}"
    if isinstance(exc, NotImplementedError):
        return 501, f"Not implemented: {exc}"
    return 500, INTERNAL_ERROR
