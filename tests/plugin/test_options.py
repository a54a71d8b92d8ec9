"""Option precedence (flag > environment > ini > default), setups, and --help."""

from __future__ import annotations

import pytest

from tests.support.projects import HARNESS_ENV

SHOW = """
def test_show(pytestconfig, inference_mode, stack_config, text_model_id, embedding_model_id):
    print("MODE", inference_mode)
    print("TARGET", stack_config)
    print("MODELS", text_model_id, embedding_model_id)
"""


@pytest.fixture
def inner(pytester, monkeypatch):
    for name in HARNESS_ENV:
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_show=SHOW)
    return pytester


def show(pytester, *args: str) -> str:
    result = pytester.runpytest_inprocess("-s", "-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    return result.stdout.str()


def test_mode_flag_beats_environment_beats_ini_beats_default(inner, monkeypatch):
    assert "MODE replay" in show(inner, "--stack-config=http://h:1")
    inner.makeini("[pytest]\ninference_mode = record-if-missing\nstack_config = http://h:1\n")
    assert "MODE record-if-missing" in show(inner)
    monkeypatch.setenv("LLAMA_STACK_TEST_INFERENCE_MODE", "live")
    assert "MODE live" in show(inner)
    assert "MODE record" in show(inner, "--inference-mode=record")


def test_stack_config_flag_beats_environment_beats_ini(inner, monkeypatch):
    inner.makeini("[pytest]\nstack_config = http://from-ini:1\n")
    assert "TARGET UrlTarget(url='http://from-ini:1')" in show(inner)
    monkeypatch.setenv("LLAMA_STACK_CONFIG", "http://from-env:1")
    assert "TARGET UrlTarget(url='http://from-env:1')" in show(inner)
    assert "TARGET UrlTarget(url='http://from-flag:1')" in show(
        inner, "--stack-config=http://from-flag:1"
    )


def test_ogx_names_set_the_mode_and_the_target_and_llama_stacks_win_when_both_are_set(
    inner, monkeypatch
):
    monkeypatch.setenv("OGX_TEST_INFERENCE_MODE", "record")
    monkeypatch.setenv("OGX_CONFIG", "http://from-ogx:1")
    output = show(inner)
    assert "MODE record\n" in output
    assert "TARGET UrlTarget(url='http://from-ogx:1')" in output

    monkeypatch.setenv("LLAMA_STACK_TEST_INFERENCE_MODE", "live")
    monkeypatch.setenv("LLAMA_STACK_CONFIG", "http://from-llama-stack:1")
    output = show(inner)
    assert "MODE live" in output
    assert "TARGET UrlTarget(url='http://from-llama-stack:1')" in output


def test_a_bad_value_in_an_ogx_variable_names_that_variable(inner, monkeypatch):
    monkeypatch.setenv("OGX_TEST_INFERENCE_MODE", "replay-ish")
    result = inner.runpytest_inprocess("--stack-config=http://h:1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*OGX_TEST_INFERENCE_MODE='replay-ish' is not a valid*"])

    monkeypatch.delenv("OGX_TEST_INFERENCE_MODE")
    monkeypatch.setenv("OGX_CONFIG", "server:")
    result = inner.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*OGX_CONFIG='server:' is not valid: the config after*"])

    monkeypatch.setenv("OGX_CONFIG", "server:starter")
    monkeypatch.setenv("OGX_PORT", "eighty")
    result = inner.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*OGX_PORT 'eighty' is not a port number*"])


def test_a_providers_command_makes_the_api_provider_form_a_server_target(inner, monkeypatch):
    library = show(inner, "--stack-config=inference=remote::openai")
    assert "TARGET ProvidersTarget(spec='inference=remote::openai')" in library

    monkeypatch.setenv("OGX_PORT", "8400")
    command = "--stack-command=ogx run --providers {providers} --port {port} --insecure"
    served = show(inner, "--stack-config=inference=remote::openai", command)
    assert (
        "TARGET ServerTarget(config='inference=remote::openai', port=8400, "
        "port_rule=<PortRule.PREFERRED: 'preferred'>, providers=True)"
    ) in served

    result = inner.runpytest_inprocess("--stack-config=server:run.yaml", command)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--stack-config='server:run.yaml' names a config*{providers}*"])


def test_an_empty_stack_config_flag_is_a_usage_error_not_the_ini_value(inner):
    inner.makeini("[pytest]\nstack_config = http://from-ini:1\n")

    result = inner.runpytest_inprocess("--stack-config=")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--stack-config='' is not valid: it is empty*"])
    result = inner.runpytest_inprocess("--text-model=", "--stack-config=http://h:1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--text-model= is empty: give it a value or leave it out*"])


def test_unknown_mode_in_the_environment_lists_the_four_modes(inner, monkeypatch):
    monkeypatch.setenv("LLAMA_STACK_TEST_INFERENCE_MODE", "replay-ish")

    result = inner.runpytest_inprocess("--stack-config=http://h:1")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*LLAMA_STACK_TEST_INFERENCE_MODE='replay-ish'*replay, record, live, record-if-missing*"]
    )


@pytest.mark.parametrize(
    ("setup", "models"),
    [
        ("ollama", "MODELS ollama/llama3.2:3b ollama/all-minilm:l6-v2"),
        ("openai", "MODELS openai/gpt-4o-mini openai/text-embedding-3-small"),
    ],
)
def test_setup_chooses_default_models(inner, setup, models):
    assert models in show(inner, "--stack-config=http://h:1", f"--setup={setup}")


def test_model_flags_override_the_setup(inner):
    output = show(inner, "--stack-config=http://h:1", "--text-model=a/b", "--embedding-model=c/d")
    assert "MODELS a/b c/d" in output


def test_vllm_setup_has_no_embedding_model_and_skips_naming_the_option(inner):
    result = inner.runpytest_inprocess("-rs", "--stack-config=http://h:1", "--setup=vllm")

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no embedding model for this setup: pass --embedding-model*"])


def test_unknown_setup_lists_the_valid_ones(inner):
    result = inner.runpytest_inprocess("--setup=bedrock")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--setup='bedrock' is not a known setup; use one of: ollama, vllm, openai*"]
    )


def test_unknown_setup_in_the_ini_lists_the_valid_ones(inner):
    inner.makeini("[pytest]\nstack_setup = bedrock\n")

    result = inner.runpytest_inprocess()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*stack_setup (ini)='bedrock' is not a known setup; use one of: ollama, vllm, openai*"]
    )


def test_help_shows_the_option_group_and_setup_values(inner):
    result = inner.runpytest_inprocess("--help")

    result.stdout.fnmatch_lines(
        [
            "stack-harness*",
            "*--stack-config=STACK_CONFIG*",
            "*--inference-mode=INFERENCE_MODE*",
            "*--recordings-dir=RECORDINGS_DIR*",
            "*--env=KEY=VALUE*",
            "*--text-model=TEXT_MODEL*",
            "*--embedding-model=EMBEDDING_MODEL*",
            "*--stack-startup-timeout=STACK_STARTUP_TIMEOUT*",
            "*--stack-command=STACK_COMMAND*",
            "*--setup=NAME*(ollama: Ollama*",
        ]
    )
    result.stdout.fnmatch_lines(["*stack_config (string):*", "*inference_mode (string):*"])


def test_env_option_must_be_key_equals_value(inner):
    result = inner.runpytest_inprocess("--stack-config=http://h:1", "--env=NOEQUALS")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--env 'NOEQUALS': expected KEY=VALUE*"])


def test_setup_env_defaults_never_override_a_value_already_set():
    from harness.setups import get_setup

    ollama = get_setup("ollama")

    assert ollama.env_defaults({}) == {"OLLAMA_URL": "http://localhost:11434"}
    assert ollama.env_defaults({"OLLAMA_URL": "http://gpu-box:11434"}) == {}
    assert get_setup("vllm").env_defaults({}) == {"VLLM_URL": "http://localhost:8000/v1"}


def test_recordings_dir_flag_beats_environment_beats_ini_beats_rootdir(inner, monkeypatch):
    def recordings_dir(*args: str) -> str:
        output = show(inner, "--stack-config=http://h:1", *args)
        return output.split("recordings ", 1)[1].splitlines()[0]

    assert recordings_dir() == str(inner.path / "recordings")
    inner.makeini("[pytest]\nrecordings_dir = from-ini\n")
    assert recordings_dir() == str(inner.path / "from-ini")
    monkeypatch.setenv("OGX_TEST_RECORDING_DIR", str(inner.path / "from-ogx"))
    assert recordings_dir() == str(inner.path / "from-ogx")
    monkeypatch.setenv("LLAMA_STACK_TEST_RECORDING_DIR", str(inner.path / "from-env"))
    assert recordings_dir() == str(inner.path / "from-env")
    assert recordings_dir("--recordings-dir=from-flag") == str(inner.path / "from-flag")


def test_every_client_sends_the_test_id_and_a_fresh_invocation_per_test(inner, stub_server):
    server = stub_server(lambda request, reply: reply.json(200, {"object": "list", "data": []}))
    inner.makepyfile(
        test_clients="""
        def test_first(http_client, openai_client):
            assert openai_client.max_retries == 0
            http_client.get("/v1/models")
            openai_client.models.list()

        def test_second(http_client):
            http_client.get("/v1/models")
        """
    )
    result = inner.runpytest_inprocess(
        f"--stack-config={server.url}", "--inference-mode=live", "test_clients.py"
    )

    result.assert_outcomes(passed=2)
    seen = [
        (r.headers["x-harness-test-id"], r.headers["x-harness-test-invocation"])
        for r in server.requests
    ]
    assert [test for test, _ in seen] == [
        "test_clients.py::test_first",
        "test_clients.py::test_first",
        "test_clients.py::test_second",
    ]
    assert seen[0][1] == seen[1][1] != seen[2][1]


LLAMA_STACK_LIKE_CONFTEST = """
import pytest


def pytest_addoption(parser):
    parser.addoption("--stack-config", help="the project's own")
    parser.addoption("--env", action="append", help="the project's own")
    parser.addoption("--text-model", help="the project's own")
    parser.addoption("--embedding-model", help="the project's own")
    parser.addoption("--inference-mode", default="replay", help="the project's own")
    parser.addoption("--setup", help="the project's own")


@pytest.fixture
def own(request):
    return request.config.getoption("--stack-config"), request.config.getoption("--text-model")
"""


def test_the_harness_stands_aside_for_a_conftest_that_defines_its_options(pytester, monkeypatch):
    for name in HARNESS_ENV:
        monkeypatch.delenv(name, raising=False)
    pytester.makeconftest(LLAMA_STACK_LIKE_CONFTEST)
    pytester.makepyfile(test_own="def test_own(own):\n    assert own == ('server:starter', 'm1')\n")

    result = pytester.runpytest_subprocess("--stack-config=server:starter", "--text-model=m1")

    result.assert_outcomes(passed=1)
    output = result.stdout.str()
    assert output.count("stack-harness: standing aside for this session") == 1
    assert "--stack-config, --inference-mode, --env, --text-model, --embedding-model" in output
    assert "started the stack server" not in output

    # Its fixtures stand aside too (a skip that says why), also with xdist workers.
    pytester.makepyfile(test_ours="def test_ours(http_client):\n    pass\n")
    mixed = pytester.runpytest_subprocess(
        "-n", "2", "-rs", "--stack-config=server:starter", "test_ours.py"
    )
    mixed.assert_outcomes(skipped=1)
    mixed.stdout.fnmatch_lines(["*stack-harness stands aside in this session*"])


def test_a_bad_embedding_dimension_in_the_ini_names_the_key(inner):
    inner.makeini("[pytest]\nembedding_dimension = abc\n")

    result = inner.runpytest_inprocess("--stack-config=http://h:1")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*embedding_dimension (ini)='abc': expected a whole number*"])
