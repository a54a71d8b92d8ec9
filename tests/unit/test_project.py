"""[tool.stack-harness] in pyproject.toml: suites and setups, and every way to get them wrong."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness import project
from harness.setups import SETUPS


def load(tmp_path: Path, toml: str) -> project.Project:
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent(toml))
    return project.load(tmp_path)


def error(tmp_path: Path, toml: str) -> str:
    with pytest.raises(project.ProjectConfigError) as caught:
        load(tmp_path, toml)
    return str(caught.value)


def test_suites_and_setups_are_read_and_a_project_setup_replaces_a_builtin(tmp_path):
    (tmp_path / "tests" / "gpu").mkdir(parents=True)

    declared = load(
        tmp_path,
        """
        [tool.stack-harness.suites.gpu]
        roots = ["tests/gpu"]
        default_setup = "ollama"

        [tool.stack-harness.setups.ollama]
        env = { OLLAMA_URL = "http://gpu-box:11434" }
        text_model = "ollama/llama3.3:70b"
        embedding_dimension = 768
        keys = ["SOME_KEY"]
        """,
    )

    assert declared.suites == {"gpu": project.Suite("gpu", ("tests/gpu",), "ollama")}
    ollama = declared.setups["ollama"]
    assert (ollama.text_model, ollama.embedding_dimension, ollama.keys) == (
        "ollama/llama3.3:70b",
        768,
        ("SOME_KEY",),
    )
    assert dict(ollama.env) == {"OLLAMA_URL": "http://gpu-box:11434"}
    assert ollama.description.endswith("[tool.stack-harness.setups.ollama]")
    assert declared.setups["vllm"] is SETUPS["vllm"]


def test_no_pyproject_gives_the_builtin_setups_and_no_suite(tmp_path):
    declared = project.load(tmp_path)

    assert (declared.suites, declared.setups) == ({}, dict(SETUPS))


def test_a_typod_setup_key_names_file_table_key_and_the_closest_one(tmp_path):
    message = error(tmp_path, '[tool.stack-harness.setups.gpu]\ntext_modle = "ollama/x"\n')

    assert message == (
        f"{tmp_path / 'pyproject.toml'} [tool.stack-harness.setups.gpu]: unknown key "
        "'text_modle'; did you mean 'text_model'?"
    )


def test_an_unknown_suite_key_with_no_close_match_lists_the_valid_ones(tmp_path):
    (tmp_path / "t").mkdir()

    message = error(tmp_path, '[tool.stack-harness.suites.s]\nroots = ["t"]\ncolour = "red"\n')

    assert "[tool.stack-harness.suites.s]: unknown key 'colour'" in message
    assert message.endswith("valid keys: roots, default_setup")


def test_a_typod_section_name_is_an_unknown_key_too(tmp_path):
    message = error(tmp_path, '[tool.stack-harness.suite.s]\nroots = ["t"]\n')

    assert "[tool.stack-harness]: unknown key 'suite'; did you mean 'suites'?" in message


@pytest.mark.parametrize(
    ("root", "problem"),
    [
        ("tests/visoin", "'tests/visoin' does not exist under the project root"),
        ("../elsewhere", "'../elsewhere' lies outside the project root"),
        ("/", "'/' lies outside the project root"),
    ],
)
def test_a_suite_root_missing_or_outside_the_project_names_suite_and_root(tmp_path, root, problem):
    (tmp_path.parent / "elsewhere").mkdir(exist_ok=True)

    message = error(tmp_path, f'[tool.stack-harness.suites.vision]\nroots = ["{root}"]\n')

    assert message.startswith(
        f"{tmp_path / 'pyproject.toml'} [tool.stack-harness.suites.vision].roots: {problem}"
    )
    assert str(tmp_path.resolve()) in message


@pytest.mark.parametrize("dimension", ["0", "-384", "true", "'384'"])
def test_an_embedding_dimension_that_is_not_a_positive_whole_number_is_an_error(
    tmp_path, dimension
):
    message = error(tmp_path, f"[tool.stack-harness.setups.s]\nembedding_dimension = {dimension}\n")

    assert "[tool.stack-harness.setups.s].embedding_dimension: expected a whole number" in message


def test_every_problem_is_on_its_own_line(tmp_path):
    message = error(
        tmp_path,
        """
        [tool.stack-harness.setups.s]
        env = { A = 1 }
        keys = [""]
        """,
    )

    path = tmp_path / "pyproject.toml"
    assert message.splitlines() == [
        f"{path} [tool.stack-harness.setups.s].env.A: expected a string, got 1",
        f"{path} [tool.stack-harness.setups.s].keys[0]: expected a non-empty string, got ''",
    ]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[tool.stack-harness]\nsuites = [1]\n", "[tool.stack-harness.suites]: expected a table"),
        ("[tool.stack-harness.suites]\nx = 1\n", "[tool.stack-harness.suites.x]: expected a table"),
        ("[tool]\nstack-harness = 3\n", "[tool.stack-harness] must be a table"),
        ("[tool.stack-harness\n", "invalid TOML"),
    ],
)
def test_malformed_tables_name_the_file(tmp_path, toml, expected):
    message = error(tmp_path, toml)

    assert message.startswith(str(tmp_path / "pyproject.toml"))
    assert expected in message


def test_a_default_setup_that_is_not_declared_lists_the_known_ones(tmp_path):
    (tmp_path / "t").mkdir()

    message = error(
        tmp_path, '[tool.stack-harness.suites.s]\nroots = ["t"]\ndefault_setup = "gpu"\n'
    )

    assert "[tool.stack-harness.suites.s].default_setup: unknown setup 'gpu'; known: ollama" in (
        message
    )
