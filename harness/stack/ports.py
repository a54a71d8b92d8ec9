"""Where a stack serves when nothing names a port, and the variable that names one: Llama
Stack's. `harness stack run` and `--stack-config=server:<config>` both resolve ports with them.

A module of its own, so the plugin reads them without importing the run-config models.
"""

DEFAULT_PORT = 8321
PORT_ENV = "LLAMA_STACK_PORT"
