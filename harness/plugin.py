"""The pytest plugin: `--stack-config` and friends, and the fixtures tests use.

Hooks and fixtures only. Flags are declared in `flags`, resolved once into a frozen value
(`options`); everything the session makes or holds belongs to one `session.HarnessSession`
(its stack, through `lifecycle` and the stack's kind in `kinds`; the current test; the patch
for clients a test builds itself), which is closed in one place. Misses are shown by
`reporting` (from the session's event log, the one route by which a recording fault reaches
its test), the end of the session by `summary`. Heavy imports (httpx, openai, the stack's
app) happen only when a test asks for a stack.

The client fixtures are session-scoped, as Llama Stack's are, and each request still carries
the current test's id: the session knows which test runs, from the start of its setup to the
end of its teardown (a session fixture set up during the first test belongs to that test).
"""

from __future__ import annotations

import importlib
import os
from functools import partial
from typing import Any

import pytest

from harness import flags, reporting
from harness.environment import API_KEY_ENV, STACK_CONFIG_NAMES
from harness.kinds import StackStartError
from harness.lifecycle import StackHandle, sdk_http_library
from harness.options import HarnessOptions, resolve
from harness.session import WORKER_KEY, HarnessSession, TestScope, WorkerData
from harness.summary import Collection, Ending, finish
from harness.targets import StackTarget, TargetSource

SKIP_MESSAGE = (
    "no stack to test against: pass --stack-config (e.g. --stack-config=server:starter), "
    f"set {' or '.join(STACK_CONFIG_NAMES)}, or set stack_config in the pytest ini options"
)
STACK_FIXTURE = "_harness_stack"
MODEL_FIXTURES_PLUGIN = "stack_harness.model_fixtures"

SESSION = pytest.StashKey[HarnessSession]()
_COLLECTION = pytest.StashKey[Collection]()
_ENDING = pytest.StashKey[Ending]()
_SCOPE = pytest.StashKey[TestScope]()
_STOOD_ASIDE = pytest.StashKey[list[str]]()


# -- options and the session ------------------------------------------------------------------


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from harness import hookspecs

    pluginmanager.add_hookspecs(hookspecs)
    # By import_module, not `from harness import`: a session that imported this plugin afresh
    # (pytester's in-process runs drop what each one imported) gets model fixtures made
    # afresh too, on this module's stash key, not the stale package attribute's.
    if pluginmanager.get_plugin(MODEL_FIXTURES_PLUGIN) is None:
        models = importlib.import_module("harness.model_fixtures")
        pluginmanager.register(models, MODEL_FIXTURES_PLUGIN)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser) -> Any:
    # Options are added once the project's initial conftests are loaded, so a conftest that
    # defines the same ones (Llama Stack's own tests/integration/conftest.py does) wins: the
    # harness then stands aside for the session instead of breaking it with an argparse clash.
    result = yield
    taken = flags.taken_flags(parser)
    if taken:
        early_config.stash[_STOOD_ASIDE] = taken
    else:
        flags.add_options(parser)
    return result


def _worker_data(config: pytest.Config) -> WorkerData | None:
    """The one place that asks whether this process is an xdist worker."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or WORKER_KEY not in workerinput:
        return None
    return WorkerData.from_dict(workerinput[WORKER_KEY])


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if _STOOD_ASIDE in config.stash:
        return
    options = resolve(config)
    session = HarnessSession(options, partial(reporting.announce, config), _worker_data(config))
    config.stash[SESSION] = session
    config.stash[_COLLECTION] = Collection()
    config.add_cleanup(session.close)  # for a session pytest ends before sessionfinish


def pytest_report_header(config: pytest.Config) -> str | None:
    if _STOOD_ASIDE in config.stash:
        return (
            "stack-harness: standing aside for this session: the project's conftest defines "
            f"{', '.join(config.stash[_STOOD_ASIDE])} itself"
        )
    session = config.stash.get(SESSION, None)
    if session is None or session.options.target is None:
        return None
    options = session.options
    return (
        f"stack-harness: {options.target.describe()}, mode {options.mode}, "
        f"setup {options.setup.name}, recordings {options.recording.directory}"
    )


def _session(config: pytest.Config) -> HarnessSession:
    """The session, for a fixture; skips when the harness stands aside."""
    if _STOOD_ASIDE in config.stash:
        pytest.skip("stack-harness stands aside in this session: the project's conftest owns it")
    return config.stash[SESSION]


def options_of(config: pytest.Config) -> HarnessOptions:
    return _session(config).options


def _stack(config: pytest.Config) -> StackHandle:
    """The session's stack. One the user asked for that cannot start ends the session; the
    project's default target (ini) that cannot start fails only the tests that need it."""
    session = config.stash[SESSION]
    first = session.lifecycle.start_error is None
    try:
        return session.stack()
    except StackStartError as exc:
        if session.options.target_source is not TargetSource.INI:
            pytest.exit(f"stack-harness: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)
        if first:
            reporting.announce(config, f"{exc}\nthe tests that need the stack fail; others run")
        headline = str(exc).splitlines()[0]
        pytest.fail(f"stack-harness: the stack did not start: {headline}", pytrace=False)


def _uses_stack(item: pytest.Item) -> bool:
    return STACK_FIXTURE in getattr(item, "fixturenames", ())


def _server_wanted_now(config: pytest.Config) -> bool:
    session = config.stash.get(SESSION, None)
    return (
        session is not None
        and session.lifecycle.kind is not None
        and session.lifecycle.kind.holds_process
        and not session.is_worker
        and not config.getoption("collectonly")
    )


def _open_early(config: pytest.Config) -> None:
    """Start the stack before the tests run (its messages precede the progress)."""
    session = config.stash[SESSION]
    try:
        session.stack()
    except StackStartError as exc:
        if session.options.target_source is not TargetSource.INI:
            pytest.exit(f"stack-harness: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)
        reporting.announce(config, f"{exc}\nthe tests that need the stack fail; others run")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    # The server starts in the background: while pytest collects, or while an xdist
    # controller's workers boot (they learn of it from a file, being made before it is up).
    # A target from the ini file is started only once a collected test needs it: it may be
    # there for some of the project's tests, not for this session's.
    config = session.config
    if not _server_wanted_now(config):
        return
    harness = config.stash[SESSION]
    if config.pluginmanager.has_plugin("dsession"):
        harness.begin_stack(for_workers=True)
    elif harness.options.target_source is not TargetSource.INI:
        harness.begin_stack()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> Any:
    # An xdist controller collects nothing: its server is handed over before the tests run.
    harness = session.config.stash.get(SESSION, None)
    if harness is not None and harness.lifecycle.opening:
        _open_early(session.config)
    return (yield)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    session = node.config.stash.get(SESSION, None)
    if session is not None and session.options.target is not None:
        node.workerinput[WORKER_KEY] = session.worker_data().to_dict()


# -- the current test -------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    session = item.config.stash.get(SESSION, None)
    if session is not None:
        item.stash[_SCOPE] = session.begin_test(item.nodeid, _uses_stack(item))
    return (yield)


@pytest.hookimpl(tryfirst=True, specname="pytest_runtest_setup")
def pytest_runtest_setup_on_a_gone_stack(item: pytest.Item) -> None:
    # Not in the wrapper: failing before its yield would skip every other plugin's setup
    # wrapper too, and their teardowns then fail on what their setup never stored.
    session = item.config.stash.get(SESSION, None)
    gone = session.lifecycle.gone() if session is not None and _uses_stack(item) else None
    if gone is not None:
        pytest.fail(f"stack-harness: {gone.message().splitlines()[0]}", pytrace=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    try:
        return (yield)
    finally:
        session = item.config.stash.get(SESSION, None)
        scope = item.stash.get(_SCOPE, None)
        if session is not None and scope is not None:
            session.end_test(scope)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Before the terminal summary (a hook wrapper that writes after us), so it can say what
    # happened to the stack. Workers leave their controller's server alone.
    harness = session.config.stash.get(SESSION, None)
    if harness is None:
        return
    harness.close()
    if harness.is_worker or harness.options.target is None:
        return
    ending = finish(session.config, harness, session.config.stash[_COLLECTION], exitstatus)
    session.config.stash[_ENDING] = ending
    if ending.failed_output and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _harness_stack(pytestconfig: pytest.Config) -> StackHandle:
    if options_of(pytestconfig).target is None:
        pytest.skip(SKIP_MESSAGE)
    return _stack(pytestconfig)


@pytest.fixture(scope="session")
def http_client(pytestconfig: pytest.Config, _harness_stack: StackHandle) -> Any:
    """An `httpx.Client` on the stack's root URL; each request carries the current test's id."""
    import httpx

    hooks = _session(pytestconfig).client_hooks()
    with _harness_stack.client(httpx, hooks, base_url=_harness_stack.base_url) as client:
        yield client


@pytest.fixture(scope="session")
def openai_client(pytestconfig: pytest.Config, _harness_stack: StackHandle) -> Any:
    """The official openai SDK at `<stack>/v1`, no retries; each request carries the current
    test's id. Works with the SDK the project has: 1.x and 2.x are built on httpx, 3.x on
    httpx2."""
    import openai

    hooks = _session(pytestconfig).client_hooks()
    with _harness_stack.client(sdk_http_library(openai), hooks) as http:
        yield openai.OpenAI(
            base_url=f"{_harness_stack.base_url}/v1",
            api_key=os.environ.get(API_KEY_ENV) or "no-key-needed",
            max_retries=0,
            http_client=http,
        )


@pytest.fixture(scope="session")
def llama_stack_client(pytestconfig: pytest.Config, _harness_stack: StackHandle) -> Any:
    """The official llama-stack-client at the stack, through the same transport as
    openai_client; each request carries the current test's id (skips when llama-stack-client
    is not installed)."""
    module = pytest.importorskip("llama_stack_client", reason="llama-stack-client is not installed")
    hooks = _session(pytestconfig).client_hooks()
    with _harness_stack.client(sdk_http_library(module), hooks) as http:
        yield module.LlamaStackClient(
            base_url=_harness_stack.base_url, max_retries=0, http_client=http
        )


@pytest.fixture(scope="session")
def ogx_client(pytestconfig: pytest.Config, _harness_stack: StackHandle) -> Any:
    """The official ogx-client (the client of OGX, as Llama Stack is called since its rename)
    at the stack, through the same transport as openai_client; each request carries the
    current test's id (skips when ogx-client is not installed)."""
    module = pytest.importorskip("ogx_client", reason="ogx-client is not installed")
    hooks = _session(pytestconfig).client_hooks()
    with _harness_stack.client(sdk_http_library(module), hooks) as http:
        yield module.OgxClient(base_url=_harness_stack.base_url, max_retries=0, http_client=http)


@pytest.fixture(scope="session")
def stack_config(pytestconfig: pytest.Config) -> StackTarget:
    """The parsed `--stack-config` target (skips the test when none is given)."""
    target = options_of(pytestconfig).target
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
    kind = _session(pytestconfig).lifecycle.kind
    return kind.run_config() if kind is not None else None


@pytest.fixture(scope="session")
def inference_mode(pytestconfig: pytest.Config) -> str:
    return options_of(pytestconfig).mode.value


# -- reporting --------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    session = item.config.stash.get(SESSION, None)
    scope = item.stash.get(_SCOPE, None)
    if session is None or scope is None:
        return report
    faults = session.faults.take(scope.invocation)
    if faults:
        reporting.show_faults(report, faults, session.options)
    gone = session.lifecycle.report_gone() if report.failed else None
    if gone is not None:
        reporting.show_stack_gone(report, gone.message())
        item.session.shouldstop = f"stack-harness: {gone.ending()}"
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    session = config.stash.get(SESSION, None)
    if session is None or session.options.suite is None:
        return
    roots = [(config.rootpath / root).resolve() for root in session.options.suite.roots]
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
    harness = session.config.stash[SESSION]
    interrupted = session.testsfailed and not session.config.option.continue_on_collection_errors
    needed = any(_uses_stack(item) for item in session.items) and not interrupted
    if needed and _server_wanted_now(session.config):
        _open_early(session.config)
    elif harness.lifecycle.opening:  # begun at session start; no test will use it
        harness.lifecycle.cancel_opening()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    collection = node.config.stash.get(_COLLECTION, None)
    if collection is not None:
        collection.node_ids.update(ids)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    ending = config.stash.get(_ENDING, None)
    if ending is not None:
        for line in ending.lines:
            terminalreporter.write_line(line)
