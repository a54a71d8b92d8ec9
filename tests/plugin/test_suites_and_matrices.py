"""Model matrices, suites, project setups, --misses-file, the llama_stack_client and ogx_client
fixtures, through real pytest sessions (and, for the project's own suite, its committed
recordings)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.provider import FakeProvider
from tests.support.processes import free_port
from tests.support.projects import HARNESS_ENV, recordings

ROOT = Path(__file__).resolve().parents[2]

MATRIX_TEST = """
def test_chat(openai_client, text_model_id):
    reply = openai_client.chat.completions.create(
        model=text_model_id, messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "You said: hi"
    assert reply.model == text_model_id


def test_needs_vision(vision_model_id):
    pass


def test_dimension(embedding_dimension):
    assert embedding_dimension == 384
"""


def test_a_model_list_runs_each_test_once_per_model_and_recordings_never_collide(
    project, monkeypatch
):
    project.makepyfile(test_matrix=MATRIX_TEST)
    with FakeProvider(models=["llama3.2:3b", "qwen3:0.6b"]) as fake:
        monkeypatch.setenv("OLLAMA_URL", fake.base_url)
        models = "--text-model=ollama/llama3.2:3b,ollama/qwen3:0.6b"
        recorded = project.runpytest_inprocess(
            "--stack-config=run.yaml", models, "--inference-mode=record", "-v", "test_matrix.py"
        )

    recorded.assert_outcomes(passed=4)
    recorded.stdout.fnmatch_lines(
        [
            "*test_chat[[]txt=ollama/llama3.2:3b[]] PASSED*",
            "*test_chat[[]txt=ollama/qwen3:0.6b[]] PASSED*",
        ]
    )
    files = [p for p in recordings(project.path / "recordings") if p.parent.name == "test_matrix"]
    assert len(files) == 2
    replayed = project.runpytest_inprocess("--stack-config=run.yaml", models, "test_matrix.py")
    replayed.assert_outcomes(passed=4)


def test_a_model_kind_that_is_not_given_skips_naming_the_option(project):
    project.makepyfile(test_matrix=MATRIX_TEST)

    result = project.runpytest_inprocess(
        "--stack-config=run.yaml", "--setup=vllm", "-rs", "test_matrix.py::test_needs_vision"
    )

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no vision model for this setup: pass --vision-model*"])


PYPROJECT = """
[tool.stack-harness.suites.fast]
roots = ["fast"]
default_setup = "fakes"

[tool.stack-harness.setups.fakes]
description = "the fake provider"
env = { OLLAMA_URL = "http://127.0.0.1:9" }
text_model = "ollama/tiny:1b"
embedding_dimension = 384
"""

SHOW = """
def test_show(text_model_id, embedding_dimension):
    print("MODEL", text_model_id, embedding_dimension)
"""


@pytest.fixture
def suites(pytester, monkeypatch):
    for name in HARNESS_ENV:
        monkeypatch.delenv(name, raising=False)
    pytester.makepyprojecttoml(PYPROJECT)
    pytester.mkdir("fast")
    pytester.mkdir("slow")
    (pytester.path / "fast" / "test_fast.py").write_text(SHOW)
    (pytester.path / "slow" / "test_slow.py").write_text("def test_slow():\n    pass\n")
    return pytester


def test_a_suite_narrows_collection_and_brings_its_project_setup(suites):
    result = suites.runpytest_inprocess("-s", "--suite=fast", "--stack-config=http://h:1")

    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["*setup fakes*", "*MODEL ollama/tiny:1b 384*"])


def test_explicit_options_beat_the_suites_setup(suites):
    result = suites.runpytest_inprocess(
        "-s", "--suite=fast", "--stack-config=http://h:1", "--text-model=ollama/other:2b"
    )

    result.stdout.fnmatch_lines(["*MODEL ollama/other:2b 384*"])


def test_an_unknown_suite_is_a_usage_error_listing_the_known_ones(suites):
    result = suites.runpytest_inprocess("--suite=everything", "--stack-config=http://h:1")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--suite='everything' is not a known suite; known suites: fast*"])


def test_a_malformed_suite_table_names_the_file_and_key(suites):
    suites.makepyprojecttoml("[tool.stack-harness.suites.bad]\nroots = 'not-a-list'\n")

    result = suites.runpytest_inprocess("--stack-config=http://h:1")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*pyproject.toml [[]tool.stack-harness.suites.bad[]].roots: expected a list*"]
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            '[tool.stack-harness.setups.fakes]\ntext_modle = "ollama/tiny:1b"\n',
            "*pyproject.toml [[]tool.stack-harness.setups.fakes[]]: unknown key 'text_modle'; "
            "did you mean 'text_model'?",
        ),
        (
            '[tool.stack-harness.suites.fast]\nroots = ["fast", "fsat"]\n',
            "*pyproject.toml [[]tool.stack-harness.suites.fast[]].roots: 'fsat' does not exist "
            "under the project root *",
        ),
        (
            '[tool.stack-harness.suites.fast]\nroots = ["../fast"]\n',
            "*pyproject.toml [[]tool.stack-harness.suites.fast[]].roots: '../fast' lies outside "
            "the project root *",
        ),
        (
            "[tool.stack-harness.setups.fakes]\nembedding_dimension = 0\n",
            "*pyproject.toml [[]tool.stack-harness.setups.fakes[]].embedding_dimension: expected a "
            "whole number above 0, got 0",
        ),
    ],
    ids=["typod-setup-key", "missing-root", "root-outside", "zero-dimension"],
)
def test_a_project_table_mistake_is_a_usage_error_and_no_test_runs(suites, table, message):
    suites.makepyprojecttoml(table)
    (suites.path.parent / "fast").mkdir(exist_ok=True)
    suites.makepyfile(test_ran="def test_ran():\n    open('ran', 'w').close()\n")

    result = suites.runpytest_inprocess("--stack-config=http://h:1")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()
    assert not (suites.path / "ran").exists()


def test_the_misses_file_lists_the_tests_that_missed(project, tmp_path):
    project.makepyfile(
        test_two="""
def test_recorded(http_client):
    assert http_client.get("/v1/health").status_code == 200

def test_missing(openai_client, text_model_id):
    openai_client.chat.completions.create(
        model=text_model_id, messages=[{"role": "user", "content": "never recorded"}]
    )
"""
    )
    misses = tmp_path / "out" / "misses.txt"

    result = project.runpytest_subprocess(
        f"--stack-config=server:run.yaml:{free_port()}", f"--misses-file={misses}", "test_two.py"
    )

    result.assert_outcomes(passed=1, failed=1)
    assert misses.read_text() == "test_two.py::test_missing[txt=ollama/llama3.2:3b]\n"
    clean = project.runpytest_inprocess(
        "--stack-config=run.yaml", f"--misses-file={misses}", "test_two.py::test_recorded"
    )
    clean.assert_outcomes(passed=1)
    assert misses.read_text() == ""


def test_llama_stack_client_reaches_the_stack_with_the_test_id(project, stub_server):
    import llama_stack_client  # noqa: F401 - a test dependency: its absence must fail here

    project.makepyfile(
        test_client="""
def test_models(llama_stack_client, text_model_id):
    assert text_model_id in [m.identifier for m in llama_stack_client.models.list()]
"""
    )
    for config, run in (
        ("run.yaml", project.runpytest_inprocess),
        (f"server:run.yaml:{free_port()}", project.runpytest_subprocess),
    ):
        result = run(f"--stack-config={config}", "--inference-mode=record", "test_client.py")
        result.assert_outcomes(passed=1)

    seen = []
    stub = stub_server(
        lambda request, reply: (
            seen.append(request.headers)
            or reply.json(
                200, {"data": [{"identifier": "ollama/llama3.2:3b", "model_type": "llm"}]}
            )
        )
    )
    project.runpytest_inprocess(
        f"--stack-config={stub.url}", "--inference-mode=live", "test_client.py"
    ).assert_outcomes(passed=1)
    assert seen[0]["x-harness-test-id"] == "test_client.py::test_models[txt=ollama/llama3.2:3b]"


OGX_CLIENT_TESTS = """
def test_prompts(ogx_client):
    created = ogx_client.prompts.create(prompt="Hi {{ name }}", variables=["name"])
    assert ogx_client.prompts.retrieve(created.prompt_id).prompt == "Hi {{ name }}"


def test_models(ogx_client, text_model_id):
    assert text_model_id in [m.id for m in ogx_client.models.list().data]
"""


def test_ogx_client_reaches_the_stack_in_library_and_server_mode_with_the_test_id(
    project, stub_server
):
    import ogx_client  # noqa: F401 - a test dependency: its absence must fail here

    project.makepyfile(test_client=OGX_CLIENT_TESTS)
    for config, run in (
        ("run.yaml", project.runpytest_inprocess),
        (f"server:run.yaml:{free_port()}", project.runpytest_subprocess),
    ):
        result = run(f"--stack-config={config}", "--inference-mode=record", "test_client.py")
        result.assert_outcomes(passed=2)

    seen = []
    stub = stub_server(
        lambda request, reply: (
            seen.append(request.headers)
            or reply.json(200, {"data": [{"id": "ollama/llama3.2:3b", "object": "model"}]})
        )
    )
    project.runpytest_inprocess(
        f"--stack-config={stub.url}", "--inference-mode=live", "test_client.py::test_models"
    ).assert_outcomes(passed=1)
    assert seen[0]["x-harness-test-id"] == "test_client.py::test_models[txt=ollama/llama3.2:3b]"


def test_ogx_client_skips_naming_the_package_when_it_is_not_installed(project, stub_server):
    stub = stub_server(lambda request, reply: reply.json(200, {}))
    project.makeconftest("import sys\n\nsys.modules['ogx_client'] = None  # not importable\n")
    project.makepyfile(test_client="def test_c(ogx_client):\n    pass\n")

    result = project.runpytest_subprocess(f"--stack-config={stub.url}", "-rs", "test_client.py")

    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*ogx-client is not installed*"])


def test_the_projects_suite_replays_a_two_model_matrix_with_no_provider(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in HARNESS_ENV}
    env.update(OLLAMA_URL="http://127.0.0.1:9", SQLITE_STORE_DIR=str(tmp_path / "stores"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/integration"]
        + [f"--stack-config=server:starter:{free_port()}"]
        + ["--text-model=ollama/llama3.2:3b,ollama/qwen3:0.6b"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout[-4000:]
    assert "42 passed" in result.stdout and " 0 missed" in result.stdout


def test_llama_stack_client_records_and_replays_at_the_client_layer(project, run_stack_server):
    project.makepyfile(
        test_client="""
def test_models(llama_stack_client, text_model_id):
    assert text_model_id in [m.identifier for m in llama_stack_client.models.list()]
"""
    )
    port = free_port()
    stack = run_stack_server(project.path / "run.yaml", port)
    url = f"--stack-config=http://127.0.0.1:{port}"
    project.runpytest_subprocess(url, "--inference-mode=record", "test_client.py").assert_outcomes(
        passed=1
    )
    assert [p for p in recordings(project.path / "recordings") if p.parent.name == "test_client"]

    stack.terminate()
    stack.wait(timeout=10)
    project.runpytest_subprocess(url, "test_client.py").assert_outcomes(passed=1)
