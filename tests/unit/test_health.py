"""What a dead stack's log says killed it: the line the start-up failure's headline quotes.

The logs are excerpts of real ones: OGX 1.5.0 refusing to serve without TLS and dying without
aiohttp (its traceback inside a log record, wrapped to the terminal's width), Llama Stack
0.7.3's rich traceback box, and Python's own tracebacks.
"""

from __future__ import annotations

from harness import health
from harness.health import exit_cause, log_exit_cause

OGX_WITHOUT_TLS = """\
INFO     2026-12-01T11:11:53.783784Z  ogx.cli.stack.run:112 Using stack configuration   category=cli
         config_file=run.yaml
TLS required: set tls_certfile/tls_keyfile in server config or pass '--insecure' to disable.
"""
OGX_WITHOUT_AIOHTTP = """\
INFO     2026-12-01T11:12:09.504744Z  ogx.core.server.server:182 Starting up OGX server
         category=core::server
         version=1.5.0
ERROR    2026-12-01T11:12:09.517761Z  Traceback (most recent call last):
           File "/venv/lib/python3.12/site-packages/starlette/routing.py", line 661, in lifespan
             async with self.lifespan_context(app) as maybe_state:
           File "/venv/lib/python3.12/site-packages/ogx/testing/api_recorder.py", line 1862, in
         api_recording
             patch_inference_clients()
           File "/venv/lib/python3.12/site-packages/ogx/testing/api_recorder.py", line 1651, in
         patch_inference_clients
             import aiohttp
         ModuleNotFoundError: No module named 'aiohttp'
           category=server
ERROR    2026-12-01T11:12:09.522912Z  Application startup failed. Exiting.  category=server
INFO     2026-12-01T11:12:09.524656Z  ogx.cli.stack.run:235 Received interrupt signal, shutting
         down gracefully...
         category=cli
"""
RICH_BOX = """\
ERROR    2026-12-01T11:15:04.8Z  Error executing endpoint route=/v1/prompts method=POST
         ╭───────────────────── Traceback (most recent call last) ─────────────────────╮
         │ /venv/lib/python3.12/site-packages/pydantic/main.py:280 in __init__         │
         │                                                                             │
         │ ❱  280 │   │   validated_self = self.__pydantic_validator__.validate_python(    │
         ╰─────────────────────────────────────────────────────────────────────────────╯
         ValidationError: 1 validation error for Prompt
           Value error, Prompt contains undeclared variables: ['undeclared']
"""
CHAINED = """\
Traceback (most recent call last):
  File "/app/run.py", line 3, in <module>
    import yaml
ModuleNotFoundError: No module named 'yaml'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/run.py", line 5, in <module>
    raise SystemExit(main())
          ^^^^^^^^^^^^^^^^^^
  File "/app/run.py", line 9, in main
    Config: dict = load()
RuntimeError: no YAML parser: pip install pyyaml
"""
GROUP = """\
  + Exception Group Traceback (most recent call last):
  |   File "/app/serve.py", line 12, in <module>
  |     anyio.run(main)
  | ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File "/app/serve.py", line 8, in start
    |     Listener = bind(port)
    | OSError: [Errno 98] Address already in use
    +------------------------------------
"""


def test_ogx_refusing_to_serve_without_tls_is_named_by_its_message():
    assert exit_cause(OGX_WITHOUT_TLS) == (
        "TLS required: set tls_certfile/tls_keyfile in server config or pass '--insecure' to "
        "disable."
    )


def test_a_missing_module_is_named_from_a_traceback_inside_a_wrapped_log_record():
    assert exit_cause(OGX_WITHOUT_AIOHTTP) == "ModuleNotFoundError: No module named 'aiohttp'"


def test_a_rich_traceback_box_is_named_by_the_exception_under_it():
    assert exit_cause(RICH_BOX) == "ValidationError: 1 validation error for Prompt"


def test_the_last_of_chained_tracebacks_is_the_cause_and_source_lines_are_not_exceptions():
    assert exit_cause(CHAINED) == "RuntimeError: no YAML parser: pip install pyyaml"


def test_an_exception_group_is_named_by_its_innermost_exception():
    assert exit_cause(GROUP) == "OSError: [Errno 98] Address already in use"


def test_a_log_that_says_nothing_but_how_well_it_went_names_no_cause(tmp_path):
    assert exit_cause("INFO     started\n         category=cli\n\n") is None
    assert exit_cause("") is None
    assert log_exit_cause(tmp_path / "no-such.log") is None


def test_a_long_cause_is_cut_and_a_big_log_is_read_from_its_end(tmp_path):
    log = tmp_path / "stack.log"
    log.write_text(
        "INFO     noise\n" * 100_000
        + "Traceback (most recent call last):\n"
        + '  File "x.py", line 1, in <module>\n'
        + "ValueError: "
        + "x" * 1000
        + "\n"
    )

    cause = log_exit_cause(log)

    assert cause is not None and cause.startswith("ValueError: xxx") and len(cause) == 300


def test_the_tail_of_a_long_log_is_its_last_whole_lines(tmp_path):
    log = tmp_path / "server.log"
    lines = [f'{{"event": "request {i}", "pad": "{"x" * 200}"}}' for i in range(5000)]
    log.write_text("\n".join(lines) + "\n")  # about 1 MB, four times what is read of it

    tail = health.log_tail(log).splitlines()

    assert tail == lines[-health.LOG_TAIL_LINES :]


def test_the_tail_of_a_short_log_is_all_of_it_and_an_empty_one_says_so(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("one\ntwo\n")
    assert health.log_tail(log) == "one\ntwo"
    log.write_text("")
    assert health.log_tail(log) == "(the log is empty)"
    assert health.log_tail(tmp_path / "none.log") == f"(no log at {tmp_path / 'none.log'})"
