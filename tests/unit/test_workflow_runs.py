"""The re-record workflows run end to end: every job, step and artifact, up to the push.

tests/support/actions.py plays the runner (jobs in `needs` order, $GITHUB_ENV and $GITHUB_PATH
applied to the later steps of the same job only, job outputs, artifacts), and
tests/support/github.py plays GitHub: bare repositories for acme/stack-harness and alice's fork,
a fake `gh`, and git URL rewrites that let only the right tokens push. The default branch holds
this checkout's scripts, so the jobs that may push run the real
scripts/github/commit-recordings-artifact.py, and `harness recordings verify` is the real one.

The branch's code is a fake `pytest` that runs the branch's own tests/integration/conftest.py,
as pytest would, then "records": it copies a committed recording into place, as a provider's
answer would be written, for the tests it was asked to run. A hostile branch's conftest.py does
what the issue reproduced: it puts a `git` of its own in front of the job's PATH through
$GITHUB_PATH, and a script of its own into every later bash step through $GITHUB_ENV (BASH_ENV);
both write what they see to a file standing for the attacker's server.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.support.actions import Run, Runner
from tests.support.git import git
from tests.support.github import FAKE_GH, HARNESS, git_config, install, repo_state, write_state

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
UPSTREAM = "acme/stack-harness"
FORK = "alice/stack-harness"
WORKFLOW_TOKEN = "ghs_0workflow0token0of0this0run0"
PUSH_TOKEN = "ghp_0maintainer0push0token0secret"
TOKENS = (WORKFLOW_TOKEN, PUSH_TOKEN)

COMMITTED = sorted(
    p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "recordings").rglob("*.json")
)
# What the provider "answers": recordings the default branch lacks, one of the base suite, one
# of the vision suite.
INFERENCE = next(p for p in COMMITTED if "/inference/" in p)
VISION = next(p for p in COMMITTED if "/vision/" in p)


def node_id(name: str) -> str:
    return json.loads((REPO_ROOT / name).read_text())["test_id"]


FAKE_PYTEST = """\
import json, os, shutil, sys
from pathlib import Path

args = sys.argv[1:]
# The branch's conftest.py runs inside pytest, as pytest would run it.
conftest = Path("tests/integration/conftest.py")
if conftest.exists():
    exec(compile(conftest.read_text(), str(conftest), "exec"), {"__name__": "conftest"})
state = json.loads(Path(os.environ["FAKE_PYTEST_STATE"]).read_text())
mode = os.environ.get("LLAMA_STACK_TEST_INFERENCE_MODE", "replay")
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({"args": args, "mode": mode}) + "\\n")
if "--misses-file" in args:
    suite = args[args.index("--suite") + 1] if "--suite" in args else None
    missed = [i for s, ids in state["misses"].items() if suite in (None, s) for i in ids]
    Path(args[args.index("--misses-file") + 1]).write_text("".join(i + "\\n" for i in missed))
    sys.exit(1 if missed else 0)
node_ids = [a for a in args if "::" in a]
paths = [a.rstrip("/") + "/" for a in args if not a.startswith("-") and "::" not in a]
for answer in state["answers"]:
    test = answer["test_id"]
    if test in node_ids or (not node_ids and any(test.startswith(p) for p in paths)):
        target = Path(answer["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(answer["source"], target)
"""

# Logs the command, succeeds: pip (installing), curl (Ollama answering), docker.
FAKE_TOOL = """\
import json, os, sys

with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({"tool": os.path.basename(sys.argv[0]), "args": sys.argv[1:]}) + "\\n")
"""

HOSTILE_CONFTEST = """\
# What code of a branch can do in the job that runs it (tests/integration/conftest.py).
import os, shutil
from pathlib import Path

evil = Path(os.environ["RUNNER_TEMP"]) / "evil"
evil.mkdir(exist_ok=True)
real_git = shutil.which("git")
(evil / "git").write_text(
    '#!/bin/bash\\n{ echo "git $*"; env; } >> "$LOOT"\\nexec ' + real_git + ' "$@"\\n'
)
(evil / "git").chmod(0o755)
(evil / "bash_env").write_text('{ echo "a bash step:"; env; } >> "$LOOT"\\n')
with open(os.environ["GITHUB_PATH"], "a") as f:
    f.write(f"{evil}\\n")
with open(os.environ["GITHUB_ENV"], "a") as f:
    f.write(f"BASH_ENV={evil / 'bash_env'}\\n")
"""


def load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads `on` as True
    return workflow


class GitHub:
    """acme/stack-harness, whose main holds this checkout's scripts, and alice's fork of it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.upstream = root / "upstream.git"
        self.fork = root / "fork.git"
        self.loot = root / "loot"  # where a hostile branch sends what it finds
        self.log = root / "calls.log"
        bin_dir = root / "bin"
        self.env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(root / "home"),
            "LANG": "C.UTF-8",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Alice",
            "GIT_AUTHOR_EMAIL": "alice@example.com",
            "GIT_COMMITTER_NAME": "Alice",
            "GIT_COMMITTER_EMAIL": "alice@example.com",
            "FAKE_GH_LOG": str(root / "gh.log"),
            "FAKE_GH_STATE": str(root / "gh-state.json"),
            "FAKE_PYTEST_STATE": str(root / "pytest-state.json"),
            "FAKE_LOG": str(self.log),
            "LOOT": str(self.loot),
        }
        install(bin_dir / "gh", FAKE_GH)
        install(bin_dir / "harness", HARNESS)
        install(bin_dir / "pytest", FAKE_PYTEST)
        for tool in ("pip", "curl", "docker"):
            install(bin_dir / tool, FAKE_TOOL)
        git_config(
            root / "home", {UPSTREAM: self.upstream, FORK: self.fork}, TOKENS, root / "nowhere"
        )
        self.repos = {UPSTREAM: repo_state(self.upstream), FORK: repo_state(self.fork)}
        self.pulls: dict[str, dict] = {}
        self.misses: dict[str, list[str]] = {}
        self.answers = [
            {"test_id": node_id(name), "path": name, "source": str(REPO_ROOT / name)}
            for name in (INFERENCE, VISION)
        ]

        self.work = root / "work"
        for bare in (self.upstream, self.fork):
            self.git("init", "-q", "--bare", "-b", "main", str(bare), cwd=root)
        self.git("init", "-q", "-b", "main", str(self.work), cwd=root)
        shutil.copytree(REPO_ROOT / "scripts", self.work / "scripts")
        shutil.copy2(REPO_ROOT / "pyproject.toml", self.work / "pyproject.toml")
        for folder in ("inference", "prompts", "vision"):
            self.write(f"tests/integration/{folder}/__init__.py", "")
        for name in COMMITTED:
            if name not in (INFERENCE, VISION):
                self.write(name, (REPO_ROOT / name).read_text())
        self.git("add", ".")
        self.git("commit", "-q", "-m", "The default branch")
        self.main = self.git("rev-parse", "HEAD")
        for bare in (self.upstream, self.fork):
            self.git("push", "-q", str(bare), "main")

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return git(*args, cwd=cwd or self.work, env=self.env)

    def write(self, path: str, text: str) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def branch(self, name: str, *, repo: Path | None = None, hostile: bool = False) -> str:
        """A branch on top of main (with the hostile conftest.py when asked); its commit."""
        self.git("checkout", "-q", "-B", name, "main")
        self.write("feature.py", "print('the branch's code')\n")
        if hostile:
            self.write("tests/integration/conftest.py", HOSTILE_CONFTEST)
        self.git("add", ".")
        self.git("commit", "-q", "-m", f"Work on {name}")
        self.git("push", "-q", "-f", str(repo or self.upstream), name)
        sha = self.git("rev-parse", "HEAD")
        self.git("checkout", "-q", "main")
        return sha

    def tip(self, branch: str, repo: Path | None = None) -> str:
        return self.git("rev-parse", branch, cwd=repo or self.upstream)

    def files(self, ref: str, repo: Path | None = None) -> list[str]:
        listed = self.git("ls-tree", "-r", "--name-only", ref, cwd=repo or self.upstream)
        return listed.splitlines()

    def runner(self, *, ref_name: str = "main", secrets: dict[str, str] | None = None) -> Runner:
        write_state(Path(self.env["FAKE_GH_STATE"]), self.repos, self.pulls)
        Path(self.env["FAKE_PYTEST_STATE"]).write_text(
            json.dumps({"misses": self.misses, "answers": self.answers})
        )
        return Runner(
            self.root / "runner",
            repositories={UPSTREAM: self.upstream, FORK: self.fork},
            env=self.env,
            github={
                "repository": UPSTREAM,
                "sha": self.tip(ref_name),
                "ref_name": ref_name,
                "token": WORKFLOW_TOKEN,
                "server_url": "https://github.com",
            },
            secrets=secrets if secrets is not None else {"RECORDINGS_PUSH_TOKEN": PUSH_TOKEN},
        )

    def pytest_calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [call for call in calls if "mode" in call]

    def stolen(self) -> str:
        return self.loot.read_text() if self.loot.exists() else ""


@pytest.fixture
def github(tmp_path: Path) -> GitHub:
    return GitHub(tmp_path)


def inputs(**given: str) -> dict[str, str]:
    """The workflow_dispatch inputs, as scripts/github/schedule-record-workflow.sh passes them."""
    return {
        "test-subdirs": "",
        "test-suite": "",
        "test-provider": "ollama",
        "pr-head-repo": "",
        "branch": "",
        **given,
    }


def conclusions(run: Run) -> dict[str, str]:
    return {name: job.conclusion for name, job in run.jobs.items()}


# ---------------------------------------------------------------- record-integration-tests.yml


def test_dispatch_records_in_one_job_and_pushes_from_another(github: GitHub) -> None:
    recorded = github.branch("feature")

    run = github.runner(ref_name="feature").run(
        load("record-integration-tests.yml"), inputs=inputs(branch="feature")
    )

    assert conclusions(run) == {"target": "success", "record": "success", "push": "success"}, (
        run.log()
    )
    assert github.git("rev-parse", "feature^", cwd=github.upstream) == recorded
    assert {INFERENCE, VISION} <= set(github.files("feature"))
    message = github.git("log", "-1", "--format=%B", "feature", cwd=github.upstream)
    assert message.splitlines()[0] == (
        "Re-record integration tests with ollama (subdirs: all, suite: all)"
    )
    assert run.jobs["target"].outputs["sha"] == recorded
    (record,) = [c for c in github.pytest_calls() if c["mode"] == "record"]
    assert record["args"] == [
        "--stack-config=server:starter",
        "--setup",
        "ollama",
        "tests/integration",
    ]


def test_a_branch_that_plants_git_and_bash_env_reaches_no_token(github: GitHub) -> None:
    """The issue's reproduction, against the workflow as it is now: the push runs elsewhere."""
    recorded = github.branch("feature", hostile=True)

    run = github.runner(ref_name="feature").run(
        load("record-integration-tests.yml"), inputs=inputs(branch="feature")
    )

    assert conclusions(run)["push"] == "success", run.log()
    assert github.git("rev-parse", "feature^", cwd=github.upstream) == recorded
    stolen = github.stolen()
    assert "git ls-files" in stolen, "the planted git never ran: the test proves nothing"
    assert "a bash step:" in stolen, "the planted BASH_ENV never ran: the test proves nothing"
    for token in TOKENS:
        assert token not in stolen


def test_in_one_job_the_planted_git_is_handed_the_push_token(github: GitHub) -> None:
    """Control: the record job followed by the push step it used to end with, in one job."""
    github.branch("feature", hostile=True)
    workflow = load("record-integration-tests.yml")
    old_push = {
        "name": "Commit the recordings to the branch",
        "env": {
            "PUSH_TOKEN": "${{ secrets.RECORDINGS_PUSH_TOKEN || github.token }}",
            "REPOSITORY": "${{ needs.target.outputs.repository }}",
            "BRANCH": "${{ needs.target.outputs.branch }}",
        },
        "run": (
            "git add -A -- recordings\n"
            "git -c core.hooksPath=/dev/null commit -q -m Re-record\n"
            "git -c core.hooksPath=/dev/null push "
            '"https://x-access-token:${PUSH_TOKEN}@github.com/${REPOSITORY}.git" '
            '"HEAD:refs/heads/${BRANCH}"\n'
        ),
    }
    one_job = {
        **workflow["jobs"]["record"],
        "steps": [*workflow["jobs"]["record"]["steps"], old_push],
    }

    run = github.runner(ref_name="feature").run(
        workflow, inputs=inputs(branch="feature"), replace={"record": one_job, "push": None}
    )

    assert conclusions(run)["record"] == "success", run.log()
    assert f"x-access-token:{PUSH_TOKEN}@github.com" in github.stolen()


def test_dispatch_for_a_fork_pushes_to_its_branch_with_the_push_token(github: GitHub) -> None:
    recorded = github.branch("fix", repo=github.fork)

    run = github.runner().run(
        load("record-integration-tests.yml"),
        inputs=inputs(**{"pr-head-repo": FORK, "branch": "fix", "test-subdirs": "inference"}),
    )

    assert conclusions(run)["push"] == "success", run.log()
    assert github.git("rev-parse", "fix^", cwd=github.fork) == recorded
    assert INFERENCE in github.files("fix", github.fork)
    assert VISION not in github.files("fix", github.fork)  # not among the subdirs asked for
    assert github.git("branch", "--list", "fix", cwd=github.upstream) == ""


@pytest.mark.parametrize(
    ("setup", "given", "message"),
    [
        ("fork without token", {"pr-head-repo": FORK, "branch": "fix"}, "RECORDINGS_PUSH_TOKEN"),
        ("protected branch", {"branch": "fix"}, f"{UPSTREAM}@fix is a protected branch"),
        ("default branch", {"branch": "main"}, f"{UPSTREAM}@main is the default branch"),
    ],
)
def test_dispatch_that_may_not_push_stops_before_anything_is_recorded(
    github: GitHub, setup: str, given: dict[str, str], message: str
) -> None:
    github.branch("fix", repo=github.fork if "pr-head-repo" in given else None)
    github.branch("release")
    github.repos[UPSTREAM]["protected"] = ["fix"]  # type: ignore[index]
    secrets = {} if setup == "fork without token" else None
    before = {name: github.tip(name) for name in ("main", "release")}

    # Dispatched on release: neither main nor fix is the branch the maintainer ran it on.
    run = github.runner(ref_name="release", secrets=secrets).run(
        load("record-integration-tests.yml"), inputs=inputs(**given)
    )

    assert conclusions(run) == {"target": "failure", "record": "skipped", "push": "skipped"}
    assert message in run.jobs["target"].log()
    assert github.pytest_calls() == []
    assert {name: github.tip(name) for name in ("main", "release")} == before


def test_dispatch_on_the_default_branch_re_records_it(github: GitHub) -> None:
    before = github.tip("main")

    run = github.runner(ref_name="main").run(
        load("record-integration-tests.yml"), inputs=inputs(**{"test-subdirs": "vision"})
    )

    assert conclusions(run)["push"] == "success", run.log()
    assert github.git("rev-parse", "main^", cwd=github.upstream) == before
    assert VISION in github.files("main")


# ---------------------------------------------------------------- the pull request pair


def pull_request(github: GitHub, sha: str) -> dict:
    head = {"sha": sha, "ref": "feature", "repo": {"full_name": UPSTREAM}}
    github.pulls[f"repos/{UPSTREAM}/pulls/42"] = {
        "state": "open",
        "maintainer_can_modify": False,
        "head": head,
    }
    return {"pull_request": {"number": 42, "head": head}}


def completed(run: Run, sha: str) -> dict:
    """The workflow_run event that starts commit-pr-recordings.yml once `run` completed."""
    return {
        "workflow_run": {
            "id": run.id,
            "event": "pull_request",
            "conclusion": run.conclusion(),
            "head_sha": sha,
            "head_branch": "feature",
            "head_repository": {"full_name": UPSTREAM},
            "html_url": f"https://github.com/{UPSTREAM}/actions/runs/{run.id}",
        }
    }


@pytest.mark.parametrize("hostile", [False, True], ids=["branch", "hostile-branch"])
def test_pr_misses_of_every_shard_are_recorded_and_committed(github: GitHub, hostile: bool) -> None:
    sha = github.branch("feature", hostile=hostile)
    github.misses = {"base": [node_id(INFERENCE)], "vision": [node_id(VISION)]}
    event = pull_request(github, sha)
    runner = github.runner()

    record = runner.run(load("record-pr-recordings.yml"), event=event)
    commit = runner.run(load("commit-pr-recordings.yml"), event=completed(record, sha))

    assert conclusions(record) == {"replay": "success", "record-missing": "success"}, record.log()
    assert conclusions(commit) == {"commit": "success"}, commit.log()
    assert github.git("rev-parse", "feature^", cwd=github.upstream) == sha
    assert {INFERENCE, VISION} <= set(github.files("feature"))
    replays = [c for c in github.pytest_calls() if c["mode"] == "replay"]
    assert sorted(c["args"][c["args"].index("--suite") + 1] for c in replays) == ["base", "vision"]
    (recorded,) = [c for c in github.pytest_calls() if c["mode"] == "record-if-missing"]
    assert {node_id(INFERENCE), node_id(VISION)} <= set(recorded["args"])
    for token in TOKENS:
        assert token not in github.stolen()
