"""The pytest plugin: `--stack-config` and friends, and the fixtures tests use.

Hooks and fixtures only. Options are resolved once into a frozen value (`options`), the stack
is started, reused or adopted by one entry point (`lifecycle`), misses and the summary are
rendered by `reporting`; parsing lives in `targets`, processes in `server`, in-process serving
in `inprocess`, and everything about recordings in `harness.recording`. Heavy imports (httpx,
openai, the stack's app) happen only when a test asks for a stack.

Under pytest-xdist the controller holds a server it starts (before the workers exist) and hands
its URL, the usage log and the scratch directory to the workers; library mode runs one
in-process stack per worker.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from harness import options as harness_options
from harness import reporting, setups
from harness.lifecycle import (
    StackHandle,
    StackLifecycle,
    StackStartError,
    sdk_http_library,
)
from harness.options import STACK_CONFIG_ENV, WORKER_KEY, HarnessOptions
from harness.recording.context import attribution_headers
from harness.recording.errors import RecordingError
from harness.recording.modes import Mode
from harness.stack.run_config import StackConfigError
from harness.targets import ServerTarget, StackTarget, UrlTarget

SKIP_MESSAGE = (
    "no stack to test against: pass --stack-config (e.g. --stack-config=server:starter), "
    f"set {STACK_CONFIG_ENV}, or set stack_config in the pytest ini options"
)

_OPTIONS = pytest.StashKey[HarnessOptions]()
_LIFECYCLE = pytest.StashKey[StackLifecycle]()
_COLLECTION = pytest.StashKey[reporting.Collection]()
_FAULTS = pytest.StashKey[reporting.FaultCollector]()
_INVOCATION = pytest.StashKey[str]()
_STOOD_ASIDE = pytest.StashKey[list[str]]()


# -- options ----------------------------------------------------------------------------------


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from harness import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser) -> Any:
    # Options are added once the project's initial conftests are loaded, so a conftest that
    # defines the same ones (Llama Stack's own tests/integration/conftest.py does) wins: the
    # harness then stands aside for the session instead of breaking it with an argparse clash.
    result = yield
    taken = harness_options.taken_flags(parser)
    if taken:
        early_config.stash[_STOOD_ASIDE] = taken
    else:
        harness_options.add_options(parser)
    return result


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if _STOOD_ASIDE in config.stash:
        return
    try:
        options = harness_options.resolve(config)
    except (StackConfigError, RecordingError, setups.SetupError) as exc:
        raise pytest.UsageError(str(exc)) from None
    lifecycle = StackLifecycle(options, partial(reporting.announce, config))
    if hasattr(config, "workerinput") and isinstance(options.target, ServerTarget):
        shared = config.workerinput[WORKER_KEY]
        lifecycle.adopt(shared["base_url"], shared["server_pid"])
    config.stash[_OPTIONS] = options
    config.stash[_LIFECYCLE] = lifecycle
    config.stash[_COLLECTION] = reporting.Collection()
    config.stash[_FAULTS] = reporting.FaultCollector(options.recording.usage_log)


def pytest_report_header(config: pytest.Config) -> str | None:
    if _STOOD_ASIDE in config.stash:
        return (
            "stack-harness: standing aside for this session: the project's conftest defines "
            f"{', '.join(config.stash[_STOOD_ASIDE])} itself"
        )
    options = config.stash.get(_OPTIONS, None)
    if options is None or options.target is None:
        return None
    return (
        f"stack-harness: {options.target.describe()}, mode {options.mode}, "
        f"setup {options.setup.name}, recordings {options.recording.directory}"
    )


def _options(config: pytest.Config) -> HarnessOptions:
    """The session's options, for a fixture; skips when the harness stands aside."""
    if _STOOD_ASIDE in config.stash:
        pytest.skip("stack-harness stands aside in this session: the project's conftest owns it")
    return config.stash[_OPTIONS]


def _stack(config: pytest.Config) -> StackHandle:
    """The session's stack; a failure to start it ends the session with the reason."""
    try:
        return config.stash[_LIFECYCLE].stack()
    except StackStartError as exc:
        pytest.exit(f"stack-harness: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)


def _server_wanted_now(config: pytest.Config) -> bool:
    options = config.stash.get(_OPTIONS, None)
    return (
        options is not None
        and isinstance(options.target, ServerTarget)
        and not hasattr(config, "workerinput")
        and not config.option.collectonly
    )


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    # An xdist controller starts the server before its workers exist, to share it with them.
    if _server_wanted_now(session.config) and session.config.pluginmanager.has_plugin("dsession"):
        _stack(session.config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    options = node.config.stash.get(_OPTIONS, None)
    if options is None:
        return
    node.workerinput[WORKER_KEY] = {
        "base_url": node.config.stash[_LIFECYCLE].base_url,
        "server_pid": node.config.stash[_LIFECYCLE].server_pid,
        "work_dir": str(options.work_dir),
        "session": options.session,
        "started": options.started,
    }


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Before the terminal summary (a hook wrapper that writes after us), so it can say what
    # happened to the stack. Workers leave their controller's server alone.
    lifecycle = session.config.stash.get(_LIFECYCLE, None)
    if lifecycle is not None:
        lifecycle.close()
    options = session.config.stash.get(_OPTIONS, None)
    if options is not None and options.misses_file and not hasattr(session.config, "workerinput"):
        reporting.write_misses(options)


def pytest_unconfigure(config: pytest.Config) -> None:
    lifecycle = config.stash.get(_LIFECYCLE, None)
    if lifecycle is not None:
        lifecycle.close()
    options = config.stash.get(_OPTIONS, None)
    if options is not None and options.owns_work_dir and options.work_dir is not None:
        shutil.rmtree(options.work_dir, ignore_errors=True)
        if options.recording.usage_log is not None:
            options.recording.usage_log.unlink(missing_ok=True)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _harness_stack(pytestconfig: pytest.Config) -> StackHandle:
    if _options(pytestconfig).target is None:
        pytest.skip(SKIP_MESSAGE)
    return _stack(pytestconfig)


@dataclass(frozen=True)
class _TestClientConfig:
    headers: dict[str, str]
    hooks: dict[str, list[Any]]


@pytest.fixture
def _harness_test(request: pytest.FixtureRequest, _harness_stack: StackHandle) -> Any:
    """The test's attribution headers; in URL mode, its cassette."""
    options = _options(request.config)
    dead = request.config.stash[_LIFECYCLE].dead
    if dead is not None:
        pytest.fail(f"stack-harness: {dead.splitlines()[0]}", pytrace=False)
    invocation = request.node.stash.setdefault(_INVOCATION, uuid.uuid4().hex)
    headers = attribution_headers(options.session, request.node.nodeid, invocation)
    client_config = _TestClientConfig(headers=headers, hooks={})
    if isinstance(options.target, UrlTarget) and options.mode is not Mode.LIVE:
        from harness.recording.cassettes import client_cassette
        from harness.recording.context import Attribution

        attribution = Attribution(request.node.nodeid, invocation, options.session)
        with client_cassette(options.recording, request.node.nodeid, attribution=attribution):
            yield client_config
    else:
        yield client_config


@pytest.fixture
def http_client(_harness_stack: StackHandle, _harness_test: Any) -> Any:
    """An `httpx.Client` on the stack's root URL, carrying the test-id headers."""
    import httpx

    with _harness_stack.client(
        httpx, _harness_test.headers, _harness_test.hooks, base_url=_harness_stack.base_url
    ) as client:
        yield client


@pytest.fixture
def openai_client(_harness_stack: StackHandle, _harness_test: Any) -> Any:
    """The official openai SDK at `<stack>/v1`, no retries, carrying the test-id headers.

    Works with the SDK the project has: 1.x and 2.x are built on httpx, 3.x on httpx2.
    """
    import openai

    with _harness_stack.client(
        sdk_http_library(openai), _harness_test.headers, _harness_test.hooks
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
    target = _options(pytestconfig).target
    if target is None:
        pytest.skip(SKIP_MESSAGE)
    return target


@pytest.fixture(scope="session")
def stack_base_url(_harness_stack: StackHandle) -> str:
    return _harness_stack.base_url


@pytest.fixture(scope="session")
def stack_run_config(pytestconfig: pytest.Config, stack_config: StackTarget) -> Any:
    """The run config in use (server and library modes); None for a remote stack, or for a
    foreign stack command whose config this harness cannot read."""
    options = _options(pytestconfig)
    if not isinstance(stack_config, ServerTarget):
        return options.run_config
    if options.runs_reference_stack:
        return harness_options.load_run_config_for(stack_config, options.stack_env)
    try:  # a real Llama Stack's run.yaml mostly reads the same; its distro names do not
        if Path(stack_config.config).expanduser().is_file():
            return harness_options.load_run_config_for(stack_config, options.stack_env)
    except StackConfigError:
        pass
    return None


@pytest.fixture(scope="session")
def inference_mode(pytestconfig: pytest.Config) -> str:
    return _options(pytestconfig).mode.value


# The model fixtures run a test once per model given for their kind (pytest_generate_tests);
# these bodies run only when no model of the kind is known.
MODEL_FIXTURES = {
    "text_model_id": ("text", "txt"),
    "vision_model_id": ("vision", "vis"),
    "embedding_model_id": ("embedding", "emb"),
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    options = metafunc.config.stash.get(_OPTIONS, None)
    if options is None:
        return
    for fixture, (kind, prefix) in MODEL_FIXTURES.items():
        models = options.models[kind]
        if fixture in metafunc.fixturenames and models:
            ids = [f"{prefix}={model}" for model in models]
            metafunc.parametrize(fixture, models, ids=ids, scope="session")


@pytest.fixture(scope="session")
def text_model_id() -> str:
    pytest.skip("no text model for this setup: pass --text-model")


@pytest.fixture(scope="session")
def vision_model_id() -> str:
    pytest.skip("no vision model for this setup: pass --vision-model")


@pytest.fixture(scope="session")
def embedding_model_id() -> str:
    pytest.skip("no embedding model for this setup: pass --embedding-model")


@pytest.fixture(scope="session")
def embedding_dimension(pytestconfig: pytest.Config) -> int:
    dimension = _options(pytestconfig).embedding_dimension
    if dimension is None:
        pytest.skip("no embedding dimension for this setup: pass --embedding-dimension")
    return dimension


@pytest.fixture
def llama_stack_client(_harness_stack: StackHandle, _harness_test: Any) -> Any:
    """The official llama-stack-client at the stack, carrying the test-id headers, through the
    same transport as openai_client (skips when llama-stack-client is not installed)."""
    module = pytest.importorskip("llama_stack_client", reason="llama-stack-client is not installed")
    with _harness_stack.client(
        sdk_http_library(module), _harness_test.headers, _harness_test.hooks
    ) as http:
        yield module.LlamaStackClient(
            base_url=_harness_stack.base_url,
            max_retries=0,
            http_client=http,
            default_headers=_harness_test.headers,
        )


# -- reporting --------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    options = item.config.stash.get(_OPTIONS, None)
    invocation = item.stash.get(_INVOCATION, None)
    if options is None or invocation is None:
        return report
    faults = item.config.stash[_FAULTS].take(invocation)
    if faults:
        reporting.show_faults(report, faults, options)
    lifecycle = item.config.stash[_LIFECYCLE]
    if report.failed and lifecycle.dead is None and lifecycle.stack_gone() is not None:
        reporting.show_stack_gone(report, lifecycle.dead)
        item.session.shouldstop = f"stack-harness: {lifecycle.ending}"
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    options = config.stash.get(_OPTIONS, None)
    if options is None or options.suite is None:
        return
    roots = [(config.rootpath / root).resolve() for root in options.suite.roots]
    kept, dropped = [], []
    for item in items:
        path = item.path.resolve()
        (kept if any(path.is_relative_to(root) for root in roots) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items:
        collection = items[0].config.stash.get(_COLLECTION, None)
        if collection is not None:
            collection.deselected = True


def pytest_collection_finish(session: pytest.Session) -> None:
    collection = session.config.stash.get(_COLLECTION, None)
    if collection is None:
        return
    collection.node_ids.update(item.nodeid for item in session.items)
    needed = any("_harness_stack" in getattr(i, "fixturenames", ()) for i in session.items)
    if needed and _server_wanted_now(session.config):
        _stack(session.config)  # now, so its messages precede the progress


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    collection = node.config.stash.get(_COLLECTION, None)
    if collection is not None:
        collection.node_ids.update(ids)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    options = config.stash.get(_OPTIONS, None)
    if options is None or options.target is None or hasattr(config, "workerinput"):
        return
    lifecycle = config.stash[_LIFECYCLE]
    for line in reporting.summary_lines(options, lifecycle):
        terminalreporter.write_line(line)
    written, problem = reporting.finish_usage(
        config, options, config.stash[_COLLECTION], exitstatus
    )
    for path in written:
        terminalreporter.write_line(f"stack-harness: wrote {path} for `harness recordings prune`")
    if problem is not None:
        terminalreporter.write_line(f"stack-harness: {problem}", red=True)
