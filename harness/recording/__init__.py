"""Record and replay of provider HTTP traffic for integration tests.

The pieces, each in its own module:

- ``modes``: the four inference modes and ``RecordingSettings`` (environment variables);
- ``context``: which test a request belongs to (context variable, headers, ASGI middleware);
- ``fingerprint``: the one definition of a request's identity;
- ``store``: one JSON file per interaction, atomic writes, O(1) look-up;
- ``redaction`` / ``normalize``: what never reaches disk, what is made deterministic;
- ``transport``: the httpx transports the stack's provider clients are wrapped in;
- ``diagnostics``: the nearest recording and field diff shown on a replay miss;
- ``cassettes``: the vcrpy client layer for a remote stack;
- ``usage`` / ``cli``: which recordings a run used, and ``harness recordings``.

This package depends on neither the stack nor pytest.
"""
