"""scripts/github/schedule-record-workflow.sh run for real against a fake `gh` and `jq`.

The script's job is to turn "my branch" into the right `gh workflow run` call, so every test
reads the arguments the fake `gh` logged. Git is real: each test builds a clone whose GitHub
remote URLs are rewritten (`url.<path>.insteadOf`) to bare repositories in tmp_path, so the
"is the branch pushed" checks talk to an actual remote. PATH holds only bash, cat, git, sleep
and the fakes, which makes "gh is not installed" reproducible on machines that have gh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.git import git

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "github" / "schedule-record-workflow.sh"
UPSTREAM = "acme/stack-harness"
FORK = "alice/stack-harness"
WORKFLOW = "record-integration-tests.yml"
OLD_RUN = {"databaseId": 1001, "url": f"https://github.com/{UPSTREAM}/actions/runs/1001"}
NEW_RUN = {"databaseId": 2002, "url": f"https://github.com/{UPSTREAM}/actions/runs/2002"}

FAKE_GH = """\
import json, os, sys

args = sys.argv[1:]
log_path = os.environ["FAKE_GH_LOG"]
with open(log_path, "a") as log:
    log.write(json.dumps(args) + "\\n")
with open(os.environ["FAKE_GH_STATE"]) as f:
    state = json.load(f)

if args[:2] == ["auth", "status"]:
    if state["authenticated"]:
        print("github.com\\n  Logged in to github.com account tester")
        sys.exit(0)
    print("You are not logged into any GitHub hosts. Run gh auth login", file=sys.stderr)
    sys.exit(1)
if args[:2] == ["pr", "view"]:
    if state["pr"] is None:
        print(f'no pull requests found for branch "{args[2]}"', file=sys.stderr)
        sys.exit(1)
    print(json.dumps(state["pr"]))
    sys.exit(0)
if args[:2] == ["repo", "view"]:
    print(json.dumps({"defaultBranchRef": {"name": state["default_branch"]}}))
    sys.exit(0)
if args[:2] == ["workflow", "run"]:
    print("Created workflow_dispatch event for " + args[2], file=sys.stderr)
    sys.exit(0)
if args[:2] == ["run", "list"]:
    with open(log_path) as log:
        dispatched = any(json.loads(line)[:2] == ["workflow", "run"] for line in log)
    print(json.dumps(state["runs_after" if dispatched else "runs_before"]))
    sys.exit(0)
print(f"fake gh: unexpected command {args}", file=sys.stderr)
sys.exit(64)
"""

# Logs its arguments, then runs the real jq when this machine has one; otherwise it evaluates
# the only filter shapes the script uses (`-r` with a path like `.a.b` or `.[0].url`).
FAKE_JQ = """\
import json, os, re, sys

args = sys.argv[1:]
with open(os.environ["FAKE_JQ_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
real = os.environ.get("REAL_JQ")
if real:
    os.execv(real, ["jq", *args])
if len(args) != 2 or args[0] != "-r":
    print(f"fake jq: unsupported arguments {args}", file=sys.stderr)
    sys.exit(3)
value = json.load(sys.stdin)
for key, index in re.findall(r"\\.([A-Za-z_][A-Za-z0-9_]*)|\\.?\\[(\\d+)\\]", args[1]):
    if key:
        value = value.get(key) if isinstance(value, dict) else None
    else:
        i = int(index)
        value = value[i] if isinstance(value, list) and i < len(value) else None
if value is None:
    print("null")
elif isinstance(value, bool):
    print("true" if value else "false")
elif isinstance(value, str):
    print(value)
else:
    print(json.dumps(value))
"""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    gh_calls: list[list[str]]
    jq_calls: list[list[str]]

    def dispatches(self) -> list[list[str]]:
        return [call for call in self.gh_calls if call[:2] == ["workflow", "run"]]

    def dispatch(self) -> list[str]:
        calls = self.dispatches()
        assert len(calls) == 1, (calls, self.stderr)
        return calls[0]

    def inputs(self) -> dict[str, str]:
        call = self.dispatch()
        return dict(call[i + 1].split("=", 1) for i, arg in enumerate(call) if arg == "-f")

    def option(self, name: str) -> str:
        call = self.dispatch()
        return call[call.index(name) + 1]


class Sandbox:
    """A clone with GitHub-looking remotes backed by bare repositories, plus a fake-tool PATH."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.bin = root / "bin"
        self.state_file = root / "gh-state.json"
        self.gh_log = root / "gh.log"
        self.jq_log = root / "jq.log"
        self.env = {
            "HOME": str(root / "home"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Tester",
            "GIT_AUTHOR_EMAIL": "tester@example.com",
            "GIT_COMMITTER_NAME": "Tester",
            "GIT_COMMITTER_EMAIL": "tester@example.com",
            "LANG": "C.UTF-8",
        }
        self.state: dict = {
            "authenticated": True,
            "pr": None,
            "default_branch": "main",
            "runs_before": [OLD_RUN],
            "runs_after": [NEW_RUN, OLD_RUN],
        }
        (root / "home").mkdir()
        self.bin.mkdir()
        for tool in ("bash", "cat", "git", "sleep"):
            found = shutil.which(tool)
            assert found, f"{tool} is needed to run these tests"
            (self.bin / tool).symlink_to(found)
        self.install_fake("gh", FAKE_GH)
        self.install_fake("jq", FAKE_JQ)

        self.git("init", "--bare", "-q", "-b", "main", str(root / "upstream.git"), cwd=root)
        self.git("init", "--bare", "-q", "-b", "main", str(root / "fork.git"), cwd=root)
        self.git("init", "-q", "-b", "main", str(self.work), cwd=root)
        for repo, bare in ((UPSTREAM, "upstream.git"), (FORK, "fork.git")):
            self.git("config", f"url.{root / bare}.insteadOf", f"https://github.com/{repo}.git")
        (self.work / "README.md").write_text("hello\n")
        self.git("add", "README.md")
        self.git("commit", "-q", "-m", "initial")

    def install_fake(self, name: str, source: str) -> None:
        path = self.bin / name
        path.write_text(f"#!{sys.executable} -IS\n{source}")
        path.chmod(0o755)

    def remove_tool(self, name: str) -> None:
        (self.bin / name).unlink()

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return git(*args, cwd=cwd or self.work, env={**self.env, "PATH": os.environ["PATH"]})

    def add_remote(self, name: str, repo: str) -> None:
        self.git("remote", "add", name, f"https://github.com/{repo}.git")

    def commit(self, message: str) -> None:
        with (self.work / "README.md").open("a") as f:
            f.write(message + "\n")
        self.git("commit", "-q", "-am", message)

    def run(self, *args: str, **env: str) -> Result:
        self.state_file.write_text(json.dumps(self.state))
        real_jq = shutil.which("jq") or ""
        full_env = {
            **self.env,
            "PATH": str(self.bin),
            "FAKE_GH_LOG": str(self.gh_log),
            "FAKE_GH_STATE": str(self.state_file),
            "FAKE_JQ_LOG": str(self.jq_log),
            "REAL_JQ": real_jq,
            "SCHEDULE_RECORD_POLL_INTERVAL": "0",
            **env,
        }
        done = subprocess.run(
            [str(SCRIPT), *args],
            cwd=self.work,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return Result(
            done.returncode, done.stdout, done.stderr, read_log(self.gh_log), read_log(self.jq_log)
        )


def read_log(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def pr_json(*, owner: str, cross: bool, number: int = 42) -> dict:
    return {
        "number": number,
        "url": f"https://github.com/{UPSTREAM}/pull/{number}",
        "isCrossRepository": cross,
        "headRepository": {"id": "R_1", "name": "stack-harness"},
        "headRepositoryOwner": {"id": "U_1", "login": owner},
    }


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    """A clone of acme/stack-harness on a pushed branch `feature`."""
    box = Sandbox(tmp_path)
    box.add_remote("origin", UPSTREAM)
    box.git("push", "-q", "-u", "origin", "main")
    box.git("checkout", "-q", "-b", "feature")
    box.commit("feature work")
    box.git("push", "-q", "-u", "origin", "feature")
    return box


@pytest.fixture
def fork_sandbox(tmp_path: Path) -> Sandbox:
    """A clone of alice's fork (origin) with acme's repository as `upstream`."""
    box = Sandbox(tmp_path)
    box.add_remote("origin", FORK)
    box.add_remote("upstream", UPSTREAM)
    box.git("push", "-q", "upstream", "main")
    box.git("checkout", "-q", "-b", "feature")
    box.commit("fork work")
    box.git("push", "-q", "-u", "origin", "feature")
    return box


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--test-subdirs", "agents,inference"],
            {"test-subdirs": "agents,inference", "test-suite": "", "test-provider": "ollama"},
        ),
        (
            ["--test-suite", "vision"],
            {"test-subdirs": "", "test-suite": "vision", "test-provider": "ollama"},
        ),
        (
            ["--test-subdirs", "agents", "--test-provider", "vllm"],
            {"test-subdirs": "agents", "test-suite": "", "test-provider": "vllm"},
        ),
        (
            ["--test-subdirs=prompts", "--test-suite=base", "--test-provider=ollama"],
            {"test-subdirs": "prompts", "test-suite": "base", "test-provider": "ollama"},
        ),
    ],
)
def test_each_flag_becomes_a_workflow_input(
    sandbox: Sandbox, args: list[str], expected: dict[str, str]
) -> None:
    result = sandbox.run(*args)

    assert result.returncode == 0, result.stderr
    assert result.dispatch()[:3] == ["workflow", "run", WORKFLOW]
    assert result.option("--repo") == UPSTREAM
    assert result.option("--ref") == "feature"
    assert result.inputs() == {**expected, "pr-head-repo": "", "branch": "feature"}


def test_prints_the_url_of_the_run_it_started(sandbox: Sandbox) -> None:
    result = sandbox.run("--test-subdirs", "inference")

    assert result.returncode == 0, result.stderr
    assert NEW_RUN["url"] in result.stdout
    assert OLD_RUN["url"] not in result.stdout
    run_lists = [call for call in result.gh_calls if call[:2] == ["run", "list"]]
    assert f"--workflow={WORKFLOW}" in run_lists[-1]


def test_checks_prerequisites_in_order_before_dispatching(sandbox: Sandbox) -> None:
    result = sandbox.run()

    commands = [call[:2] for call in result.gh_calls]
    assert commands[0] == ["auth", "status"]
    assert commands.index(["pr", "view"]) < commands.index(["workflow", "run"])


def test_fork_pr_is_parsed_without_a_real_jq_too(fork_sandbox: Sandbox) -> None:
    """CI machines without jq still run these tests: the fake evaluates the script's filters."""
    fork_sandbox.state["pr"] = pr_json(owner="alice", cross=True)

    result = fork_sandbox.run(REAL_JQ="")

    assert result.returncode == 0, result.stderr
    assert result.inputs()["pr-head-repo"] == FORK
    assert NEW_RUN["url"] in result.stdout


def test_same_repository_pr_is_found_and_parsed_with_jq(sandbox: Sandbox) -> None:
    sandbox.state["pr"] = pr_json(owner="acme", cross=False, number=7)

    result = sandbox.run("--test-suite", "vision")

    assert result.returncode == 0, result.stderr
    pr_view = next(call for call in result.gh_calls if call[:2] == ["pr", "view"])
    assert pr_view[2] == "feature"
    assert pr_view[pr_view.index("--repo") + 1] == UPSTREAM
    fields = set(pr_view[pr_view.index("--json") + 1].split(","))
    assert fields == {
        "number",
        "headRepository",
        "headRepositoryOwner",
        "isCrossRepository",
        "url",
    }
    assert f"https://github.com/{UPSTREAM}/pull/7" in result.stdout
    assert ["-r", ".isCrossRepository"] in result.jq_calls
    assert result.inputs()["pr-head-repo"] == ""
    assert result.option("--ref") == "feature"


def test_fork_pr_dispatches_on_the_default_branch_with_the_head_repo(
    fork_sandbox: Sandbox,
) -> None:
    fork_sandbox.state["pr"] = pr_json(owner="alice", cross=True)
    fork_sandbox.state["default_branch"] = "trunk"

    result = fork_sandbox.run("--test-subdirs", "inference")

    assert result.returncode == 0, result.stderr
    pr_view = next(call for call in result.gh_calls if call[:2] == ["pr", "view"])
    assert pr_view[2] == "alice:feature"
    assert result.option("--repo") == UPSTREAM
    assert result.option("--ref") == "trunk"
    assert result.inputs()["pr-head-repo"] == FORK
    assert result.inputs()["branch"] == "feature"


def test_fork_without_pr_is_detected_from_the_remotes(fork_sandbox: Sandbox) -> None:
    result = fork_sandbox.run()

    assert result.returncode == 0, result.stderr
    assert "Pull request: none" in result.stdout
    assert result.option("--repo") == UPSTREAM
    assert result.option("--ref") == "main"
    assert result.inputs()["pr-head-repo"] == FORK


def test_branch_without_pr_runs_on_the_branch(sandbox: Sandbox) -> None:
    result = sandbox.run("--test-provider", "vllm")

    assert result.returncode == 0, result.stderr
    assert "Pull request: none" in result.stdout
    assert result.option("--ref") == "feature"
    assert result.inputs()["pr-head-repo"] == ""
    assert not any(call[:2] == ["repo", "view"] for call in result.gh_calls)


def test_branch_flag_records_another_pushed_branch(sandbox: Sandbox) -> None:
    sandbox.git("checkout", "-q", "main")

    result = sandbox.run("--branch", "feature")

    assert result.returncode == 0, result.stderr
    assert result.option("--ref") == "feature"
    assert result.inputs()["branch"] == "feature"


def test_branch_flag_accepts_a_branch_only_on_the_remote(sandbox: Sandbox) -> None:
    sandbox.git("push", "-q", "origin", "feature:remote-only")

    result = sandbox.run("--branch", "remote-only")

    assert result.returncode == 0, result.stderr
    assert result.option("--ref") == "remote-only"


def test_branch_flag_naming_an_unknown_branch_is_rejected(sandbox: Sandbox) -> None:
    result = sandbox.run("--branch", "nowhere")

    assert result.returncode == 1
    assert "'nowhere' is not on remote 'origin'" in result.stderr
    assert result.dispatches() == []


def test_unpushed_branch_is_rejected_with_the_push_command(sandbox: Sandbox) -> None:
    sandbox.git("checkout", "-q", "-b", "local-only")

    result = sandbox.run("--test-subdirs", "inference")

    assert result.returncode == 1
    assert "git push -u origin local-only" in result.stderr
    assert result.dispatches() == []


def test_branch_with_unpushed_commits_is_rejected(sandbox: Sandbox) -> None:
    sandbox.commit("not pushed yet")

    result = sandbox.run()

    assert result.returncode == 1
    assert "differs from origin/feature" in result.stderr
    assert "git push origin feature" in result.stderr
    assert result.dispatches() == []


def test_branch_deleted_from_the_remote_is_rejected(sandbox: Sandbox) -> None:
    sandbox.git("push", "-q", "origin", "--delete", "feature")

    result = sandbox.run()

    assert result.returncode == 1
    assert "'feature' is not on remote 'origin'" in result.stderr
    assert "git push -u origin feature" in result.stderr
    assert result.dispatches() == []


def test_detached_head_is_rejected(sandbox: Sandbox) -> None:
    sandbox.git("checkout", "-q", "--detach")

    result = sandbox.run()

    assert result.returncode == 1
    assert "detached" in result.stderr
    assert "--branch" in result.stderr


def test_missing_gh_is_reported_with_how_to_install(sandbox: Sandbox) -> None:
    sandbox.remove_tool("gh")

    result = sandbox.run("--test-subdirs", "inference")

    assert result.returncode == 1
    assert "'gh' is not installed" in result.stderr
    assert "https://cli.github.com" in result.stderr


def test_missing_jq_is_reported_before_anything_else_runs(sandbox: Sandbox) -> None:
    sandbox.remove_tool("jq")

    result = sandbox.run()

    assert result.returncode == 1
    assert "'jq' is not installed" in result.stderr
    assert result.gh_calls == []


def test_failing_gh_auth_status_stops_before_dispatch(sandbox: Sandbox) -> None:
    sandbox.state["authenticated"] = False

    result = sandbox.run()

    assert result.returncode == 1
    assert "gh auth login" in result.stderr
    assert result.gh_calls == [["auth", "status"]]


def test_unknown_flag_exits_2_naming_the_flag(sandbox: Sandbox) -> None:
    result = sandbox.run("--test-subdirs", "inference", "--frobnicate")

    assert result.returncode == 2
    assert "unknown option '--frobnicate'" in result.stderr
    assert "Usage:" in result.stderr
    assert result.gh_calls == []


def test_flag_without_value_exits_2(sandbox: Sandbox) -> None:
    result = sandbox.run("--branch")

    assert result.returncode == 2
    assert "--branch needs a value" in result.stderr
    assert result.gh_calls == []


SUITES_PYPROJECT = """\
[project]
name = "stack-harness"

[tool.stack-harness.suites]
base = { roots = ["tests/integration"], exclude = ["tests/integration/vision"] }
"vision" = [
    "tests/integration/vision",
]

[tool.stack-harness.suites.gpu]  # a sub-table declares a suite too
roots = ["tests/integration/gpu"]

[tool.ruff]
line-length = 100
"""


@pytest.mark.parametrize("suite", ["base", "vision", "gpu"])
def test_suite_declared_in_pyproject_is_dispatched(sandbox: Sandbox, suite: str) -> None:
    (sandbox.work / "pyproject.toml").write_text(SUITES_PYPROJECT)

    result = sandbox.run("--test-suite", suite)

    assert result.returncode == 0, result.stderr
    assert result.inputs()["test-suite"] == suite


def test_suite_missing_from_pyproject_lists_the_declared_ones(sandbox: Sandbox) -> None:
    (sandbox.work / "pyproject.toml").write_text(SUITES_PYPROJECT)

    result = sandbox.run("--test-suite", "line-length")

    assert result.returncode == 2
    assert "'line-length' is not a suite of this project" in result.stderr
    assert "declares: base, vision, gpu" in result.stderr
    assert result.dispatches() == []


def test_suite_is_not_checked_when_pyproject_declares_none(sandbox: Sandbox) -> None:
    (sandbox.work / "pyproject.toml").write_text('[project]\nname = "x"\n')

    result = sandbox.run("--test-suite", "vision")

    assert result.returncode == 0, result.stderr
    assert result.inputs()["test-suite"] == "vision"


@pytest.mark.parametrize("suite", ["vision and not slow", "-m", "../vision"])
def test_marker_expression_is_not_a_suite(sandbox: Sandbox, suite: str) -> None:
    result = sandbox.run(f"--test-suite={suite}")

    assert result.returncode == 2
    assert f"--test-suite '{suite}' is not a suite name" in result.stderr
    assert "[tool.stack-harness.suites]" in result.stderr
    assert result.gh_calls == []


def test_unknown_provider_lists_the_valid_ones(sandbox: Sandbox) -> None:
    result = sandbox.run("--test-provider", "openai")

    assert result.returncode == 2
    assert "'openai' is not supported" in result.stderr
    assert "ollama, vllm" in result.stderr
    assert result.gh_calls == []


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_shows_the_readme_examples(sandbox: Sandbox, flag: str) -> None:
    result = sandbox.run(flag)

    assert result.returncode == 0
    script = "./scripts/github/schedule-record-workflow.sh"
    assert f'{script} --test-subdirs "agents,inference"' in result.stdout
    assert f"{script} --test-suite vision" in result.stdout
    assert f'{script} --test-subdirs "agents" --test-provider vllm' in result.stdout
    for option in ("--test-subdirs", "--test-suite", "--test-provider", "--branch"):
        assert option in result.stdout
    assert result.gh_calls == []


def test_run_that_never_shows_up_points_to_the_actions_page(sandbox: Sandbox) -> None:
    sandbox.state["runs_after"] = [OLD_RUN]

    result = sandbox.run(SCHEDULE_RECORD_POLL_ATTEMPTS="2")

    assert result.returncode == 0, result.stderr
    assert f"https://github.com/{UPSTREAM}/actions/workflows/{WORKFLOW}" in result.stdout
    assert OLD_RUN["url"] not in result.stdout
    assert len(result.dispatches()) == 1


def test_script_is_executable_and_strict() -> None:
    assert os.access(SCRIPT, os.X_OK)
    assert "set -euo pipefail" in SCRIPT.read_text()
