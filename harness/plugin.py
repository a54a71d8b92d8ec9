"""The pytest plugin: `--stack-config` and friends, the stack's lifecycle, and client fixtures.

Hooks and fixtures only. Option resolution and reporting helpers live in `session`, parsing
in `stack_config`, processes and ports in `server`, the in-process transport in `inprocess`,
provider defaults in `setups`, and everything about recordings in `harness.recording`.
Heavy imports (httpx, openai, the stack's app) happen only when a test asks for a stack, so
the plugin costs nothing in sessions that do not use it.

Under pytest-xdist the controller owns a server it starts (before the workers exist) and hands
its URL, the usage log and the work directory to the workers; library mode runs one in-process
stack per worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from harness import setups
from harness.recording.context import scope_headers
from harness.recording.errors import RecordingError
from harness.recording.modes import MODE_ENV, Mode
from harness.session import (
    RECORDING_DIR_ENV,
    STACK_CONFIG_ENV,
    WORKER_KEY,
    Harness,
    StackHandle,
    UrlCassette,
    build_harness,
    chained_miss,
    complete_replay,
    load_run_config_for,
    miss_text,
)
from harness.stack.run_config import StackConfigError
from harness.stack_config import ServerTarget, StackTarget, UrlTarget

MISS_HEADER = "X-Harness-Recording-Miss"  # harness.recording.transport.RECORDING_MISS_HEADER
CLIENT_TIMEOUT = 120.0
SKIP_MESSAGE = (
    "no stack to test against: pass --stack-config (e.g. --stack-config=server:starter), "
    f"set {STACK_CONFIG_ENV}, or set stack_config in the pytest ini options"
)

_MISSES = pytest.StashKey[list]()
_CASSETTE = pytest.StashKey["UrlCassette"]()
_HARNESS = pytest.StashKey[Harness]()


# -- options ----------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("stack-harness", "stack-harness (record-replay against a stack)")

    def add(flag: str, ini: str, help: str, **kwargs: Any) -> None:
        group.addoption(flag, dest=ini, default=None, help=help, **kwargs)
        parser.addini(ini, f"default for {flag}", type="string")

    add(
        "--stack-config",
        "stack_config",
        f"the stack to test (also ${STACK_CONFIG_ENV}); one of: server:<config>[:<port>], "
        "a URL, a distribution name or run.yaml (library mode), api=provider,...",
    )
    add(
        "--inference-mode",
        "inference_mode",
        f"replay (default), record, live or record-if-missing (also ${MODE_ENV})",
    )
    add(
        "--recordings-dir",
        "recordings_dir",
        f"recordings directory (also ${RECORDING_DIR_ENV}; default <rootdir>/recordings)",
    )
    group.addoption(
        "--env",
        dest="stack_env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a variable in the stack's environment, e.g. an API key (repeatable)",
    )
    parser.addini("stack_env", "KEY=VALUE lines for the stack's environment", type="linelist")
    add("--text-model", "text_model", "text model id (default: the setup's)")
    add("--embedding-model", "embedding_model", "embedding model id (default: the setup's)")
    add(
        "--stack-startup-timeout",
        "stack_startup_timeout",
        "seconds to wait for a started stack to be healthy (default 60)",
        type=float,
    )
    add(
        "--setup",
        "stack_setup",
        f"provider env defaults and default models ({setups.help_text()}); default ollama",
        choices=list(setups.SETUPS),
    )


@pytest.hookimpl(trylast=True)  # after the cache provider: the work dir lives in its cache
def pytest_configure(config: pytest.Config) -> None:
    try:
        harness = build_harness(config)
    except (StackConfigError, RecordingError, setups.SetupError) as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_HARNESS] = harness
    if hasattr(config, "workerinput"):
        harness.base_url = config.workerinput[WORKER_KEY]["base_url"]
        harness.owns_usage_log = False


def pytest_report_header(config: pytest.Config) -> str | None:
    harness = config.stash.get(_HARNESS, None)
    if harness is None or harness.target is None:
        return None
    return (
        f"stack-harness: {harness.target.describe()}, mode {harness.settings.mode}, "
        f"setup {harness.setup.name}, recordings {harness.settings.directory}"
    )


# -- the stack's lifecycle --------------------------------------------------------------------


def _acquire_server(config: pytest.Config, harness: Harness) -> None:
    """Start or reuse the server; a failure ends the session with the reason."""
    target = harness.target
    assert isinstance(target, ServerTarget)
    settings = harness.settings
    env = {**harness.stack_env, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    from harness import server as stack_server  # filelock & co. only when a server is used

    spec = stack_server.ServerSpec(
        command=[sys.executable, "-m", "harness.cli", "stack", "run", target.config]
        + ["--port", str(target.port)],
        port=target.port,
        env=env,
        log_path=harness.work_dir / f"stack-server-{target.port}.log",
        startup_timeout=harness.startup_timeout,
        signature={"config": target.config, "mode": str(settings.mode)}
        | {"recordings": str(settings.directory)},
    )
    _trap_sigterm()
    try:
        harness.lease = stack_server.acquire(spec)
    except stack_server.StackServerError as exc:
        pytest.exit(f"stack-harness: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)
    lease = harness.lease
    harness.base_url = lease.base_url
    harness.owns_usage_log = lease.origin == stack_server.ORIGIN_STARTED
    harness.origin = {
        stack_server.ORIGIN_STARTED: f"started the stack server (pid {lease.pid}) on port "
        f"{lease.port}; log: {lease.log_path}",
        stack_server.ORIGIN_SHARED: f"sharing the stack server (pid {lease.pid}) on port "
        f"{lease.port} started by another test session",
        stack_server.ORIGIN_EXTERNAL: f"reusing the stack already running on port {lease.port} "
        "(left running; its recording settings are the ones it was started with)",
    }[lease.origin]
    _announce(config, harness.origin)


def _announce(config: pytest.Config, message: str) -> None:
    """Write a line to the terminal now, even from inside a fixture with capture on."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.write_line(f"stack-harness: {message}")


def _trap_sigterm() -> None:
    """A SIGTERM to pytest unwinds like Ctrl-C, so the server we hold is stopped, not orphaned."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, interrupt)


def _is_xdist_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.has_plugin("dsession")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    harness = session.config.stash.get(_HARNESS, None)
    if harness is None or not isinstance(harness.target, ServerTarget):
        return
    if _is_xdist_controller(session.config) and not session.config.option.collectonly:
        _acquire_server(session.config, harness)  # before the workers start


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    harness = node.config.stash[_HARNESS]
    node.workerinput[WORKER_KEY] = {
        "base_url": harness.base_url,
        "work_dir": str(harness.work_dir),
        "usage_log": str(harness.settings.usage_log),
    }


def pytest_unconfigure(config: pytest.Config) -> None:
    harness = config.stash.get(_HARNESS, None)
    if harness is not None and harness.lease is not None:
        harness.lease.release()
        harness.lease = None


@pytest.fixture(scope="session")
def _harness_stack(pytestconfig: pytest.Config) -> Any:
    harness = pytestconfig.stash[_HARNESS]
    target = harness.target
    if target is None:
        pytest.skip(SKIP_MESSAGE)
    if isinstance(target, UrlTarget):
        stack = StackHandle(base_url=target.url)
    elif isinstance(target, ServerTarget):
        if harness.base_url is None:
            _acquire_server(pytestconfig, harness)
        stack = StackHandle(base_url=harness.base_url)
    else:
        stack = StackHandle(base_url="", inprocess=_start_inprocess(harness))
        stack.base_url = stack.inprocess.base_url
    yield stack
    stack.close()
    if stack.inprocess is not None:
        stack.inprocess.stop()


def _start_inprocess(harness: Harness) -> Any:
    from harness.inprocess import InProcessStack
    from harness.stack.app import create_app

    try:
        app = create_app(harness.run_config, recording=harness.settings)
        return InProcessStack(app).start(timeout=harness.startup_timeout)
    except Exception as exc:
        pytest.exit(
            f"stack-harness: the in-process stack failed to start: {exc}",
            returncode=pytest.ExitCode.INTERNAL_ERROR,
        )


# -- per test ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TestClientConfig:
    headers: dict[str, str]
    hooks: dict[str, list[Any]]


@pytest.fixture
def _harness_test(request: pytest.FixtureRequest, _harness_stack: StackHandle) -> Any:
    """The test's scope headers and miss collector; in URL mode, its client-layer cassette."""
    harness = request.config.stash[_HARNESS]
    misses = request.node.stash.setdefault(_MISSES, [])

    def collect(response: Any) -> None:
        if response.headers.get(MISS_HEADER):
            response.read()
            try:
                miss = response.json().get("recording_miss")
            except ValueError:
                miss = None
            misses.append(miss or {"fingerprint": response.headers[MISS_HEADER]})

    headers = scope_headers(request.node.nodeid, uuid.uuid4().hex)
    client_config = _TestClientConfig(headers=headers, hooks={"response": [collect]})
    if isinstance(harness.target, UrlTarget) and harness.settings.mode is not Mode.LIVE:
        cassette = UrlCassette(harness.settings, request.node.nodeid)
        request.node.stash[_CASSETTE] = cassette
        with cassette:
            yield client_config
    else:
        yield client_config


@pytest.fixture
def http_client(_harness_stack: StackHandle, _harness_test: Any) -> Any:
    """An `httpx.Client` on the stack's root URL, carrying the test-id headers."""
    import httpx

    with httpx.Client(
        base_url=_harness_stack.base_url,
        transport=_harness_stack.transport(httpx),
        headers=_harness_test.headers,
        event_hooks=_harness_test.hooks,
        timeout=CLIENT_TIMEOUT,
    ) as client:
        yield client


@pytest.fixture
def openai_client(_harness_stack: StackHandle, _harness_test: Any) -> Any:
    """The official openai SDK at `<stack>/v1`, no retries, carrying the test-id headers."""
    import httpx2
    import openai

    with httpx2.Client(
        transport=_harness_stack.transport(httpx2),
        headers=_harness_test.headers,
        event_hooks=_harness_test.hooks,
        timeout=CLIENT_TIMEOUT,
    ) as http:
        yield openai.OpenAI(
            base_url=f"{_harness_stack.base_url}/v1",
            api_key=os.environ.get("LLAMA_STACK_API_KEY") or "no-key-needed",
            max_retries=0,
            http_client=http,
            default_headers=_harness_test.headers,
        )


@pytest.fixture(scope="session")
def stack_config(pytestconfig: pytest.Config) -> StackTarget:
    """The parsed `--stack-config` target (skips the test when none is given)."""
    target = pytestconfig.stash[_HARNESS].target
    if target is None:
        pytest.skip(SKIP_MESSAGE)
    return target


@pytest.fixture(scope="session")
def stack_base_url(_harness_stack: StackHandle) -> str:
    return _harness_stack.base_url


@pytest.fixture(scope="session")
def stack_run_config(pytestconfig: pytest.Config, stack_config: StackTarget) -> Any:
    """The run config in use (server and library modes); None for a remote stack."""
    harness = pytestconfig.stash[_HARNESS]
    if harness.run_config is None and isinstance(stack_config, ServerTarget):
        harness.run_config = load_run_config_for(stack_config, harness.stack_env)
    return harness.run_config


@pytest.fixture(scope="session")
def inference_mode(pytestconfig: pytest.Config) -> str:
    return pytestconfig.stash[_HARNESS].settings.mode.value


@pytest.fixture(scope="session")
def text_model_id(pytestconfig: pytest.Config) -> str:
    model = pytestconfig.stash[_HARNESS].text_model
    if not model:
        pytest.skip("no text model for this setup: pass --text-model")
    return model


@pytest.fixture(scope="session")
def embedding_model_id(pytestconfig: pytest.Config) -> str:
    model = pytestconfig.stash[_HARNESS].embedding_model
    if not model:
        pytest.skip("no embedding model for this setup: pass --embedding-model")
    return model


# -- reporting --------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    harness = item.config.stash.get(_HARNESS, None)
    misses = item.stash.get(_MISSES, [])
    found = list(misses)
    misses.clear()
    raised = chained_miss(call.excinfo)
    cassette = item.stash.get(_CASSETTE, None)
    if raised is None and cassette is not None and call.excinfo is not None:
        raised = cassette.miss_for(call.excinfo.value)
    if raised is not None and not found:
        found.append(raised)
    if not found or harness is None:
        return report
    text = "\n\n".join(miss_text(harness, miss) for miss in found)
    title = f"stack-harness: replay miss ({len(found)})"
    if report.passed:
        report.outcome = "failed"
        report.longrepr = f"{title}: the stack had no recording for a request\n\n{text}"
    elif hasattr(report.longrepr, "addsection"):
        report.longrepr.addsection(title, text)
    else:
        report.sections.append((title, text))
    return report


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        items[0].config.stash[_HARNESS].deselected = True


def pytest_collection_finish(session: pytest.Session) -> None:
    harness = session.config.stash.get(_HARNESS, None)
    if harness is None:
        return
    harness.collected_modules.update(i.nodeid.split("::")[0] for i in session.items)
    needed = any("_harness_stack" in getattr(i, "fixturenames", ()) for i in session.items)
    if (
        needed
        and isinstance(harness.target, ServerTarget)
        and harness.base_url is None
        and not session.config.option.collectonly
    ):
        _acquire_server(session.config, harness)  # now, so its messages precede the progress


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    node.config.stash[_HARNESS].collected_modules.update(i.split("::")[0] for i in ids)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    from harness.recording import usage

    harness = config.stash.get(_HARNESS, None)
    if harness is None or harness.target is None or hasattr(config, "workerinput"):
        return
    log = harness.settings.usage_log
    if harness.owns_usage_log:
        counts = usage.read_usage(log).counts
        tally = ", ".join(f"{counts[k]} {k}" for k in (usage.USED, usage.RECORDED, usage.MISSED))
    else:
        tally = "not counted (the server was not started by this session)"
    terminalreporter.write_line(
        f"stack-harness: {harness.target.describe()}, mode {harness.settings.mode}; "
        f"recordings {tally} ({harness.settings.directory})"
    )
    if harness.origin:
        terminalreporter.write_line(f"stack-harness: {harness.origin}")
    if complete_replay(config, harness, exitstatus):
        path = usage.write_last_run(harness.settings.directory, usage.read_usage(log).touched)
        terminalreporter.write_line(f"stack-harness: wrote {path} for `harness recordings prune`")
    log.unlink(missing_ok=True)
