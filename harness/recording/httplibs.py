"""httpx and httpx2: one API, two sets of classes.

The openai SDK 3.x is built on httpx2, a fork of httpx with the same API whose classes are
distinct: an httpx2 client takes only httpx2 transports, and an httpx2 response only httpx2
byte streams. Code that must subclass a library's base class (a transport, a byte stream) is
written once, as a mixin that reaches the library through ``self.lib``, and bound to each
library here. Nothing imports httpx2 unless the caller already has an httpx2 object.
"""

from __future__ import annotations

import sys
from functools import cache
from types import ModuleType
from typing import Any

LIBRARY_NAMES = ("httpx", "httpx2")


def library_of(obj: Any) -> ModuleType:
    """The library (httpx or httpx2) whose transport, request or response `obj` is."""
    for name in LIBRARY_NAMES:
        lib = sys.modules.get(name)
        if lib is None:
            continue
        kinds = (lib.BaseTransport, lib.AsyncBaseTransport, lib.Request, lib.Response)
        if isinstance(obj, kinds):
            return lib
    raise TypeError(f"{type(obj).__qualname__} is neither an httpx nor an httpx2 object")


@cache
def bind(mixin: type, base: str, lib: ModuleType) -> type:
    """`mixin` as a subclass of `lib.<base>` (built once per library), e.g. a byte stream."""
    name = mixin.__name__.removeprefix("_").removesuffix("Mixin")
    return type(name, (mixin, getattr(lib, base)), {"lib": lib, "__module__": mixin.__module__})
