"""Running recording-layer code as part of a test, as the stack's middleware does."""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager

from harness.recording.context import Attribution, attributed


def in_test(test_id: str) -> AbstractContextManager[Attribution]:
    """Attribute the requests made in a block to one fresh run of `test_id`."""
    return attributed(Attribution(test_id, uuid.uuid4().hex))
