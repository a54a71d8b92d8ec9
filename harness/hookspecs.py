"""The hooks a project's conftest may implement for the harness."""

from __future__ import annotations

from collections.abc import Iterable

import pytest


@pytest.hookspec
def pytest_harness_request_normalizers(config: pytest.Config) -> Iterable[object] | None:
    """Request normalisers of the project, beside the ini's ``normalize_request`` lines.

    Return an iterable of ``(name, regex)`` pairs or ``"name = regex"`` strings: every match
    in a provider request becomes ``<name:N>`` in its fingerprint (numbered by first appearance
    within the test; a group named ``keep`` is kept), so a generated value or an edited system
    prompt does not force a re-record. Patterns travel to the stack process as data.
    """
