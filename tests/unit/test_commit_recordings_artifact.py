"""scripts/github/commit-recordings-artifact.py run for real: fake `gh`, real git and harness.

The trusted half of re-recording, on pull requests and for dispatched re-records. Each test
builds "GitHub" out of bare repositories in tmp_path (acme/stack-harness, and alice's fork), a
pull request whose head is the branch `feature`, and an artifact as the recording job would
upload it; git's `url.<path>.insteadOf` sends the https URLs the script pushes to (token
included) to those bare repositories, and a catch-all sends any other URL, such as one with the
wrong token, nowhere. The fake `gh api` answers about pull requests from the test's state and
about repositories and branches from the bare repositories themselves (the tip a branch really
has; which branch is the default or protected is the test's state). `harness recordings verify`
is the real one, from this checkout, on copies of the committed recordings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.git import git
from tests.support.github import FAKE_GH, HARNESS, git_config, install, repo_state, write_state

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "github" / "commit-recordings-artifact.py"
UPSTREAM = "acme/stack-harness"
FORK = "alice/stack-harness"
GH_TOKEN = "ghs-workflow-token"
PUSH_TOKEN = "ghp-maintainer-token"
RUN_URL = f"https://github.com/{UPSTREAM}/actions/runs/77"
# Two committed recordings; `harness recordings verify` accepts them as they are.
REAL = sorted(
    p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "recordings").rglob("*.json")
)
REAL = [p for p in REAL if p.startswith("recordings/tests/")][:2]
# A committed recording of the stack's own start-up requests: it belongs to no test.
SHARED = sorted(
    p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "recordings/_shared").glob("*.json")
)[0]


def real(name: str) -> bytes:
    return (REPO_ROOT / name).read_bytes()


def node_id_of(name: str) -> str:
    return json.loads(real(name))["test_id"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    gh_calls: list[dict]


class World:
    """Bare 'GitHub' repositories, a pull request on `feature`, and its artifact."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.upstream = root / "upstream.git"
        self.fork = root / "fork.git"
        self.bin = root / "bin"
        self.bin.mkdir()
        self.artifact = root / "artifact"
        self.gh_log = root / "gh.log"
        self.summary = root / "summary.md"
        self.env = {
            "HOME": str(root / "home"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Alice",
            "GIT_AUTHOR_EMAIL": "alice@example.com",
            "GIT_COMMITTER_NAME": "Alice",
            "GIT_COMMITTER_EMAIL": "alice@example.com",
        }
        git_config(
            root / "home",
            {UPSTREAM: self.upstream, FORK: self.fork},
            (GH_TOKEN, PUSH_TOKEN),
            root / "nowhere",
        )
        install(self.bin / "gh", FAKE_GH)
        install(self.bin / "harness", HARNESS)

        # The base repository's default branch, and the pull request's branch on top of it.
        self.git("init", "-q", "--bare", "-b", "main", str(self.upstream), cwd=root)
        self.git("init", "-q", "--bare", "-b", "main", str(self.fork), cwd=root)
        self.base = root / "base"  # the trusted workflow's checkout of the default branch
        self.git("init", "-q", "-b", "main", str(self.base), cwd=root)
        self.write_in(self.base, "README.md", "stack-harness\n")
        self.write_in(self.base, "recordings/tests/m/old.json", '{"old": true}\n')
        self.git("add", ".", cwd=self.base)
        self.git("commit", "-q", "-m", "initial", cwd=self.base)
        self.git("push", "-q", str(self.upstream), "main", cwd=self.base)
        self.git("push", "-q", str(self.fork), "main", cwd=self.base)
        self.head = root / "head"  # only to build the branch; the script never sees it
        self.git("clone", "-q", str(self.upstream), str(self.head), cwd=root)
        self.git("checkout", "-q", "-b", "feature", cwd=self.head)
        self.write_in(self.head, "feature.py", "print('the pull request's code')\n")
        self.git("add", ".", cwd=self.head)
        self.git("commit", "-q", "-m", "Add a feature", cwd=self.head)
        self.head_sha = self.git("rev-parse", "HEAD", cwd=self.head)
        self.head_repo = UPSTREAM
        self.push_head()

        self.pull = {
            "state": "open",
            "maintainer_can_modify": False,
            "head": {"sha": self.head_sha, "ref": "feature", "repo": {"full_name": UPSTREAM}},
            "base": {"ref": "main", "repo": {"full_name": UPSTREAM}},
        }
        self.pulls = {f"repos/{UPSTREAM}/pulls/42": self.pull}
        self.repos = {UPSTREAM: repo_state(self.upstream), FORK: repo_state(self.fork)}
        self.manifest: dict = {}
        self.make_artifact({name: (REPO_ROOT / name).read_bytes() for name in REAL})

    # -------------------------------------------------------------- helpers

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return git(*args, cwd=cwd or self.root, env=self.env)

    @staticmethod
    def write_in(folder: Path, path: str, text: str) -> None:
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def bare(self) -> Path:
        return self.fork if self.head_repo == FORK else self.upstream

    def push_head(self) -> None:
        self.git("push", "-q", "-f", str(self.bare()), "feature", cwd=self.head)

    def make_fork_pull_request(self, *, maintainer_can_modify: bool) -> None:
        self.head_repo = FORK
        self.push_head()
        self.git("push", "-q", str(self.upstream), "--delete", "feature", cwd=self.head)
        self.pull["head"]["repo"] = {"full_name": FORK}
        self.pull["maintainer_can_modify"] = maintainer_can_modify
        self.manifest["head_repo"] = FORK
        self.write_manifest()

    def make_artifact(self, files: dict[str, bytes], misses: list[str] | None = None) -> None:
        """The artifact of a run in which the tests of `files` missed (or those of `misses`)."""
        if self.artifact.exists():
            shutil.rmtree(self.artifact)
        self.artifact.mkdir()
        for name, data in files.items():
            target = self.artifact / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        self.manifest = {
            "pr": 42,
            "head_repo": self.head_repo,
            "head_branch": "feature",
            "head_sha": self.head_sha,
            "files": sorted(files),
        }
        self.write_manifest()
        if misses is None:
            misses = sorted({json.loads(data)["test_id"] for data in files.values()})
        self.write_misses(misses)

    def write_manifest(self) -> None:
        (self.artifact / "manifest.json").write_text(json.dumps(self.manifest))

    def write_misses(self, misses: list[str]) -> None:
        (self.artifact / "misses.txt").write_text("".join(f"{test}\n" for test in misses))

    def move_head(self, message: str = "More work", **files: str) -> None:
        """A new commit on the pull request's branch, which the run then recorded on."""
        for name, text in files.items():
            self.write_in(self.head, name, text)
        self.git("add", ".", cwd=self.head)
        self.git("commit", "-q", "--allow-empty", "-m", message, cwd=self.head)
        self.head_sha = self.git("rev-parse", "HEAD", cwd=self.head)
        self.push_head()
        self.pull["head"]["sha"] = self.head_sha
        self.manifest["head_sha"] = self.head_sha
        self.write_manifest()

    def tip(self, repo: Path | None = None, branch: str = "feature") -> str:
        return self.git("rev-parse", branch, cwd=repo or self.bare())

    def run(self, *args: str, **env: str) -> Result:
        state = self.root / "gh-state.json"
        write_state(state, self.repos, self.pulls)
        full_env = {
            **os.environ,
            **self.env,
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "FAKE_GH_LOG": str(self.gh_log),
            "FAKE_GH_STATE": str(state),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "BASE_REPO": UPSTREAM,
            "BASE_SHA": self.tip(self.upstream, "main"),
            "RUN_HEAD_SHA": self.head_sha,
            "RUN_HEAD_REPO": self.head_repo,
            "RUN_HEAD_BRANCH": "feature",
            "RECORD_RUN_URL": RUN_URL,
            "GH_TOKEN": GH_TOKEN,
            "RECORDINGS_PUSH_TOKEN": "",
            **env,
        }
        done = subprocess.run(
            [sys.executable, "-I", str(SCRIPT), *(args or [str(self.artifact)])],
            cwd=self.base,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        calls = []
        if self.gh_log.exists():
            calls = [json.loads(line) for line in self.gh_log.read_text().splitlines()]
        return Result(done.returncode, done.stdout, done.stderr, calls)


@pytest.fixture
def world(tmp_path: Path) -> World:
    assert len(REAL) == 2, "these tests need two committed recordings under recordings/tests/"
    return World(tmp_path)


def files_on(world: World, ref: str, repo: Path | None = None) -> list[str]:
    return world.git("ls-tree", "-r", "--name-only", ref, cwd=repo or world.bare()).splitlines()


def assert_untouched(world: World, before: str, result: Result) -> None:
    assert world.tip() == before, result.stdout + result.stderr


# ---------------------------------------------------------------- a good artifact


def test_good_artifact_is_committed_on_the_head_branch(world: World) -> None:
    before = world.tip()

    result = world.run()

    assert result.returncode == 0, result.stdout + result.stderr
    after = world.tip()
    assert world.git("rev-parse", f"{after}^", cwd=world.upstream) == before
    assert sorted(files_on(world, after)) == sorted(
        ["README.md", "feature.py", "recordings/tests/m/old.json", *REAL]
    )
    for name in REAL:
        committed = world.git("show", f"{after}:{name}", cwd=world.upstream)
        assert committed == (REPO_ROOT / name).read_text().strip()
    assert f"Pushed {after[:12]} to {UPSTREAM}@feature: 2 new, 0 changed" in result.stdout
    assert "recording(s) OK" in result.stdout  # harness recordings verify ran
    # Only reads: the pull request, then whether its branch is a default or protected one.
    assert [call["args"] for call in result.gh_calls] == [
        ["api", f"repos/{UPSTREAM}/pulls/42"],
        ["api", f"repos/{UPSTREAM}/branches/feature"],
        ["api", f"repos/{UPSTREAM}"],
    ]
    assert "Committed 2 recording(s) to #42" in world.summary.read_text()


def test_commit_message_says_what_was_recorded_where_and_how_it_was_checked(
    world: World,
) -> None:
    result = world.run()

    assert result.returncode == 0, result.stdout + result.stderr
    message = world.git("log", "-1", "--format=%B", "feature", cwd=world.upstream)
    base_sha = world.tip(world.upstream, "main")
    assert message.splitlines()[0] == "Record the 2 recording(s) that #42 missed in replay"
    assert f"at {world.head_sha[:12]} missed these recordings" in message
    assert RUN_URL in message
    assert "with the ollama setup (record-if-missing)" in message
    assert f"`harness recordings verify` of {UPSTREAM}@{base_sha[:12]}" in message
    for name in REAL:
        assert f"new:     {name}" in message
        assert f"  {node_id_of(name)}" in message.split("for the tests that missed:")[1]
    assert "changed:" not in message
    assert message.splitlines()[-1] == f"Recordings-from-run: {RUN_URL}"
    author = world.git("log", "-1", "--format=%an <%ae>", "feature", cwd=world.upstream)
    assert author.startswith("github-actions[bot] <")


def test_a_recording_the_branch_already_has_is_left_out(world: World) -> None:
    world.move_head("Add one recording", **{REAL[0]: real(REAL[0]).decode()})

    result = world.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 new, 0 changed" in result.stdout
    message = world.git("log", "-1", "--format=%B", "feature", cwd=world.upstream)
    assert message.splitlines()[0] == "Record the 1 recording(s) that #42 missed in replay"
    assert f"new:     {REAL[1]}" in message
    assert REAL[0] not in message


def test_recordings_the_branch_already_has_are_not_committed_again(world: World) -> None:
    assert world.run().returncode == 0
    world.head_sha = world.tip()
    world.pull["head"]["sha"] = world.head_sha
    world.manifest["head_sha"] = world.head_sha
    world.write_manifest()
    before = world.tip()

    result = world.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "::notice::" in result.stdout
    assert "already has these recordings" in result.stdout
    assert_untouched(world, before, result)


def test_pull_request_code_is_never_checked_out_or_written_to_disk(world: World) -> None:
    base_head = world.git("rev-parse", "HEAD", cwd=world.base)
    shutil.rmtree(world.head)  # so any feature.py found on disk would be the script's doing

    result = world.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert world.git("rev-parse", "HEAD", cwd=world.base) == base_head
    assert world.git("status", "--porcelain", "--ignored", cwd=world.base) == ""
    assert list(world.root.rglob("feature.py")) == []


def test_empty_artifact_means_nothing_to_commit(world: World) -> None:
    world.make_artifact({})
    before = world.tip()

    result = world.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "::notice::no test of #42 missed a recording; nothing to commit" in result.stdout
    assert result.gh_calls == []
    assert_untouched(world, before, result)


# ---------------------------------------------------------------- the artifact is refused


def add_file(world: World, name: str, data: bytes, *, listed: bool = True) -> None:
    target = world.artifact / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    if listed:
        world.manifest["files"].append(name)
        world.write_manifest()


def refused(world: World, message: str, **env: str) -> Result:
    before = world.tip()
    result = world.run(**env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "::error::" in result.stdout
    assert message in result.stdout, result.stdout
    assert_untouched(world, before, result)
    return result


@pytest.mark.parametrize(
    "path",
    [
        "recordings/../.github/workflows/evil.json",
        "recordings/tests/../../scripts/github/evil.json",
        "/etc/evil.json",
    ],
)
def test_manifest_path_traversal_is_refused(world: World, path: str) -> None:
    world.manifest["files"].append(path)
    world.write_manifest()

    result = refused(world, f"{path!r} points outside recordings/ (path traversal)")

    assert result.gh_calls == []


def test_symlink_out_of_the_artifact_is_refused(world: World) -> None:
    secret = world.root / "secret.json"
    secret.write_text('{"token": "x"}')
    link = world.artifact / "recordings" / "tests" / "stolen.json"
    link.symlink_to(secret)
    world.manifest["files"].append("recordings/tests/stolen.json")
    world.write_manifest()

    refused(world, "'recordings/tests/stolen.json', a symlink")


def test_symlinked_recordings_folder_is_refused(world: World) -> None:
    shutil.rmtree(world.artifact / "recordings")
    (world.artifact / "recordings").symlink_to(world.base / "recordings")

    refused(world, "'recordings', which is outside recordings/")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("recordings/tests/m/notes.txt", "is not a .json recording file"),
        ("recordings/tests/m/run.sh", "is not a .json recording file"),
        ("recordings/README.md", "is not a .json recording file"),
    ],
)
def test_non_json_file_is_refused(world: World, name: str, message: str) -> None:
    add_file(world, name, b"#!/bin/sh\necho hi\n")

    refused(world, f"{name!r} {message}")


def test_json_file_that_does_not_parse_is_refused(world: World) -> None:
    add_file(world, "recordings/tests/m/broken.json", b'{"cut": ')

    refused(world, "recordings/tests/m/broken.json is not valid JSON")


@pytest.mark.parametrize(
    "name",
    [".github/workflows/evil.json", "scripts/github/commit-recordings-artifact.py", "x.json"],
)
def test_file_outside_recordings_is_refused(world: World, name: str) -> None:
    add_file(world, name, b"{}", listed=False)

    refused(world, "which is outside recordings/")


def test_manifest_entry_outside_recordings_is_refused(world: World) -> None:
    world.manifest["files"].append("harness/plugin.json")
    world.write_manifest()

    refused(world, "'harness/plugin.json' is outside recordings/")


@pytest.mark.parametrize(
    "name", ["recordings/.hidden.json", "recordings/tests/m/a b.json", "recordings/-x.json"]
)
def test_odd_recording_names_are_refused(world: World, name: str) -> None:
    add_file(world, name, b"{}")

    refused(world, "not a plain")


def test_file_the_manifest_does_not_list_is_refused(world: World) -> None:
    add_file(world, "recordings/tests/m/extra.json", b"{}", listed=False)

    refused(world, "holds recordings/tests/m/extra.json, which manifest.json does not list")


def test_listed_file_the_artifact_lacks_is_refused(world: World) -> None:
    world.manifest["files"].append("recordings/tests/m/gone.json")
    world.write_manifest()

    refused(world, "lists recordings/tests/m/gone.json, which the artifact does not hold")


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ({"RECORDINGS_MAX_FILE_BYTES": "100"}, "over the limit of 100 for one recording"),
        ({"RECORDINGS_MAX_TOTAL_BYTES": "1500"}, "add up to more than 1500 bytes"),
        ({"RECORDINGS_MAX_FILES": "1"}, "holds more than 1 files"),
    ],
)
def test_size_and_count_limits(world: World, limit: dict[str, str], message: str) -> None:
    refused(world, message, **limit)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("pr", "42", "pr '42' is not a pull request number"),
        ("pr", True, "pr True is not a pull request number"),
        ("head_repo", "alice/x; rm -rf /", "is not of the form owner/repo"),
        ("head_branch", "feature..x", "is not a valid branch name"),
        ("head_branch", "--upload-pack=evil", "is not a valid branch name"),
        ("head_sha", "abc123", "is not a full commit id"),
        ("extra", 1, "must be an object with exactly"),
    ],
)
def test_insane_manifest_is_refused(world: World, key: str, value: object, message: str) -> None:
    world.manifest[key] = value
    world.write_manifest()

    refused(world, message)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RUN_HEAD_SHA": "f" * 40}, "says head_sha"),
        ({"RUN_HEAD_BRANCH": "main"}, "says head_branch 'feature', but the run"),
        ({"RUN_HEAD_BRANCH": "Feature"}, "says head_branch 'feature', but the run"),
        ({"RUN_HEAD_REPO": "mallory/stack-harness"}, "says head_repo"),
    ],
)
def test_manifest_that_does_not_match_the_run_is_refused(
    world: World, env: dict[str, str], message: str
) -> None:
    result = refused(world, message, **env)

    assert result.gh_calls == []


def test_artifact_claiming_another_pull_request_is_refused(world: World) -> None:
    """A run on alice's branch cannot name bob's pull request to push to bob's branch."""
    world.pulls[f"repos/{UPSTREAM}/pulls/7"] = {
        "state": "open",
        "maintainer_can_modify": True,
        "head": {"sha": "b" * 40, "ref": "bobs-work", "repo": {"full_name": "bob/stack-harness"}},
    }
    world.manifest["pr"] = 7
    world.write_manifest()

    refused(world, "pull request #7 comes from bob/stack-harness@bobs-work, not from")


def test_recordings_that_fail_harness_verify_are_refused(world: World) -> None:
    record = json.loads((REPO_ROOT / REAL[0]).read_text())
    record["test_id"] = "tests/integration/elsewhere.py::test_other"
    (world.artifact / REAL[0]).write_text(json.dumps(record, indent=2, sort_keys=True))

    result = refused(world, "harness recordings verify found problems")

    assert "BAD " in result.stdout  # verify's own report is shown


# ------------------------------------------------------------- what record-if-missing never makes


def fabricated(name: str) -> bytes:
    """The committed recording at `name`, its answer rewritten: same request, same fingerprint."""
    record = json.loads(real(name))
    record["response"]["body"]["choices"][0]["message"]["content"] = "Wire the money to 4711."
    return (json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def test_a_changed_recording_is_refused(world: World) -> None:
    """record-if-missing replays what exists: a rewritten recording is not what it recorded."""
    world.move_head("Add a recording", **{REAL[1]: real(REAL[1]).decode()})
    world.make_artifact({REAL[0]: real(REAL[0]), REAL[1]: fabricated(REAL[1])})

    result = refused(
        world, f"{REAL[1]} changes a recording that {UPSTREAM}@{world.head_sha[:12]} already has"
    )

    assert "recording(s) OK" in result.stdout  # the fingerprint still matches: verify passed it
    assert "schedule-record-workflow.sh" in result.stdout


def test_a_new_recording_for_a_test_that_did_not_miss_is_refused(world: World) -> None:
    world.make_artifact({name: real(name) for name in REAL}, misses=[node_id_of(REAL[0])])

    refused(
        world,
        f"{REAL[1]} is a new recording for {node_id_of(REAL[1])}, which the replay run did not "
        "list as a miss (misses.txt)",
    )


def test_a_new_recording_that_belongs_to_no_test_is_refused(world: World) -> None:
    world.make_artifact({REAL[0]: real(REAL[0]), SHARED: real(SHARED)})

    refused(world, f"{SHARED} is a new recording that belongs to no test")


def test_an_artifact_without_the_misses_list_is_refused(world: World) -> None:
    (world.artifact / "misses.txt").unlink()

    refused(world, "the artifact has no misses.txt")


@pytest.mark.parametrize("line", ["-p evil_plugin", "tests/x.py::t\x1b[2J", "x" * 10])
def test_a_misses_list_with_a_line_that_is_no_node_id_is_refused(world: World, line: str) -> None:
    world.write_misses([*(node_id_of(name) for name in REAL), line])

    refused(world, "misses.txt, line 3:")


def test_head_on_the_default_branch_is_refused(world: World) -> None:
    """A pull request from this repository's main (into a release branch, say)."""
    world.git(
        "push", "-q", str(world.upstream), f"{world.head_sha}:refs/heads/main", cwd=world.head
    )
    world.pull["head"]["ref"] = "main"
    world.manifest["head_branch"] = "main"
    world.write_manifest()
    before = world.tip(branch="main")

    result = world.run(RUN_HEAD_BRANCH="main", RECORDINGS_PUSH_TOKEN=PUSH_TOKEN)

    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"::error::the head of pull request #42 is {UPSTREAM}@main, the default branch of "
        f"{UPSTREAM}; a pull request's recordings are never pushed to a default or protected "
        "branch" in result.stdout
    )
    assert world.tip(branch="main") == before


def test_head_on_a_protected_branch_is_refused(world: World) -> None:
    world.repos[UPSTREAM]["protected"] = ["feature"]

    refused(world, f"is {UPSTREAM}@feature, a protected branch", RECORDINGS_PUSH_TOKEN=PUSH_TOKEN)


def test_head_on_a_forks_default_branch_is_refused(world: World) -> None:
    world.make_fork_pull_request(maintainer_can_modify=True)
    world.git("push", "-q", str(world.fork), f"{world.head_sha}:refs/heads/main", cwd=world.head)
    world.pull["head"]["ref"] = "main"
    world.manifest["head_branch"] = "main"
    world.write_manifest()
    before = world.tip(world.fork, "main")

    result = world.run(RUN_HEAD_BRANCH="main", RECORDINGS_PUSH_TOKEN=PUSH_TOKEN)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"::error::the head of pull request #42 is {FORK}@main, the default branch" in (
        result.stdout
    )
    assert world.tip(world.fork, "main") == before


def with_number(name: str, value: str) -> bytes:
    """The committed recording at `name` with one number of its answer written as `value`."""
    text = real(name).decode()
    changed = re.sub(r'"completion_tokens": \d+', f'"completion_tokens": {value}', text, count=1)
    assert changed != text
    return changed.encode()


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_recording_with_nan_or_infinity_is_refused(world: World, value: str) -> None:
    (world.artifact / REAL[0]).write_bytes(with_number(REAL[0], value))

    refused(world, f"{REAL[0]} holds {value}")


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("levels", [200_000, 100])
def test_a_recording_nested_too_deeply_is_refused_without_a_traceback(
    world: World, levels: int
) -> None:
    text = real(REAL[0]).decode().replace('"logprobs": null', f'"logprobs": {nested(levels)}')
    (world.artifact / REAL[0]).write_text(text)

    result = refused(world, f"{REAL[0]} nests more than 64 levels deep, so it is no recording")

    assert "Traceback" not in result.stdout + result.stderr


def test_a_manifest_nested_too_deeply_is_refused_without_a_traceback(world: World) -> None:
    (world.artifact / "manifest.json").write_text(nested(200_000))

    result = refused(world, "manifest.json nests more than 64 levels deep")

    assert "Traceback" not in result.stdout + result.stderr


def test_a_recording_holding_a_json_escaped_credential_is_refused(world: World) -> None:
    """The gate runs `harness recordings verify`, which decodes escapes before it looks."""
    key = "sk\\u002dproj-" + "Ab3dEf6hIj9kLm2nOp5q"  # sk-proj-..., with "-" escaped
    text = real(REAL[0]).decode().replace("You said: Name one primary colour.", key)
    (world.artifact / REAL[0]).write_text(text)

    result = refused(world, "harness recordings verify found problems")

    assert "looks like it holds a secret: sk- API key" in result.stdout


def test_head_commit_made_by_this_script_is_not_recorded_on_again(world: World) -> None:
    world.write_in(world.head, "recordings/tests/m/x.json", "{}\n")
    world.git("add", ".", cwd=world.head)
    world.git("commit", "-q", "-m", "Record 1\n\nRecordings-from-run: " + RUN_URL, cwd=world.head)
    world.head_sha = world.git("rev-parse", "HEAD", cwd=world.head)
    world.push_head()
    world.pull["head"]["sha"] = world.head_sha
    world.manifest["head_sha"] = world.head_sha
    world.write_manifest()

    refused(world, "recording again would loop")


def test_push_failure_does_not_show_the_token(world: World) -> None:
    hook = world.upstream / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)

    result = refused(world, "pushing to acme/stack-harness@feature was refused")

    assert "protected branch" in result.stdout
    assert GH_TOKEN not in result.stdout + result.stderr


def test_push_token_when_set_is_used_for_a_branch_of_this_repository_too(world: World) -> None:
    """Then the pushed commit starts the pull request's workflows (GITHUB_TOKEN's would not)."""
    before = world.tip()

    # A workflow token that cannot reach the repository: only the push token can have pushed.
    result = world.run(GH_TOKEN="unusable", RECORDINGS_PUSH_TOKEN=PUSH_TOKEN)

    assert result.returncode == 0, result.stdout + result.stderr
    assert world.git("rev-parse", "feature^", cwd=world.upstream) == before


def test_git_failure_does_not_show_the_token(world: World) -> None:
    result = refused(world, "git fetch failed", GH_TOKEN="unusable-secret")

    assert "unusable-secret" not in result.stdout + result.stderr
    assert "***" in result.stdout


# ---------------------------------------------------------------- the pull request moved on


def test_pull_request_that_moved_on_is_left_to_its_next_run(world: World) -> None:
    world.pull["head"]["sha"] = "c" * 40
    before = world.tip()

    result = world.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"has moved on from {world.head_sha[:12]} to cccccccccccc" in result.stdout
    assert_untouched(world, before, result)


def test_branch_that_moved_after_the_api_answered_is_not_pushed(world: World) -> None:
    world.write_in(world.head, "more.py", "x = 1\n")
    world.git("add", ".", cwd=world.head)
    world.git("commit", "-q", "-m", "More work", cwd=world.head)
    world.push_head()
    before = world.tip()

    result = world.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{UPSTREAM}@feature has moved on to {before[:12]}" in result.stdout
    assert_untouched(world, before, result)


def test_closed_pull_request_is_left_alone(world: World) -> None:
    world.pull["state"] = "closed"
    before = world.tip()

    result = world.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "::notice::pull request #42 is closed" in result.stdout
    assert_untouched(world, before, result)


# ---------------------------------------------------------------- forks


def test_fork_that_allows_maintainer_edits_gets_the_commit_with_the_push_token(
    world: World,
) -> None:
    world.make_fork_pull_request(maintainer_can_modify=True)
    before = world.tip()

    result = world.run(RECORDINGS_PUSH_TOKEN=PUSH_TOKEN)

    assert result.returncode == 0, result.stdout + result.stderr
    assert world.git("rev-parse", "feature^", cwd=world.fork) == before
    assert set(REAL) <= set(files_on(world, "feature", world.fork))
    assert f"Pushed {world.tip()[:12]} to {FORK}@feature" in result.stdout
    # Nothing reached the base repository.
    assert world.git("branch", "--list", cwd=world.upstream) == "* main"


def test_fork_without_maintainer_edits_is_refused_with_what_to_do(world: World) -> None:
    world.make_fork_pull_request(maintainer_can_modify=False)

    result = refused(
        world,
        f"pull request #42 comes from the fork {FORK} and does not allow edits by maintainers",
        RECORDINGS_PUSH_TOKEN=PUSH_TOKEN,
    )

    assert "Allow edits by maintainers" in result.stdout
    assert "record locally" in result.stdout


def test_fork_without_the_push_token_is_refused_naming_the_secret(world: World) -> None:
    world.make_fork_pull_request(maintainer_can_modify=True)

    refused(world, "needs the repository secret RECORDINGS_PUSH_TOKEN")


# ---------------------------------------------------------------- dispatched re-records
# record-integration-tests.yml: the `target` job runs --check-target, the `push` job --dispatch.


def make_dispatch_artifact(world: World, files: dict[str, bytes]) -> None:
    """The artifact of the record job: the collector's manifest without "pr", no misses list."""
    world.make_artifact(files)
    (world.artifact / "misses.txt").unlink()
    del world.manifest["pr"]
    world.write_manifest()


def dispatch(world: World, *args: str, **env: str) -> Result:
    """The push job's step: recorded on acme@feature, dispatched on feature, for inference."""
    inputs = {
        "TARGET_REPO": UPSTREAM,
        "TARGET_BRANCH": "feature",
        "TARGET_SHA": world.head_sha,
        "DISPATCH_REF": "feature",
        "TEST_PROVIDER": "ollama",
        "TEST_SUBDIRS": "inference",
        "TEST_SUITE": "",
        **env,
    }
    return world.run(*(args or ("--dispatch", str(world.artifact))), **inputs)


def on_branch(world: World, repo: Path, branch: str) -> None:
    """The recorded commit is also the tip of `branch` in `repo`; the artifact says so."""
    world.git(
        "push", "-q", "-f", str(repo), f"{world.head_sha}:refs/heads/{branch}", cwd=world.head
    )
    world.manifest["head_branch"] = branch
    world.write_manifest()


def test_dispatch_commits_new_and_changed_recordings_naming_each(world: World) -> None:
    """A re-record in record mode rewrites what exists: changed recordings are its purpose."""
    world.move_head("Older recording", **{REAL[1]: '{"older": true}\n'})
    make_dispatch_artifact(world, {name: real(name) for name in REAL})
    before = world.tip()

    result = dispatch(world)

    assert result.returncode == 0, result.stdout + result.stderr
    assert world.git("rev-parse", "feature^", cwd=world.upstream) == before
    assert f"Pushed {world.tip()[:12]} to {UPSTREAM}@feature: 1 new, 1 changed" in result.stdout
    message = world.git("log", "-1", "--format=%B", "feature", cwd=world.upstream)
    lines = message.splitlines()
    assert lines[0] == "Re-record integration tests with ollama (subdirs: inference, suite: all)"
    assert f"ran the tests of {UPSTREAM}@{before[:12]} against" in message
    assert f"new:     {REAL[0]}" in lines
    assert f"changed: {REAL[1]}" in lines
    assert lines[-1] == f"Re-recorded-in-run: {RUN_URL}"
    assert (
        world.git("show", f"feature:{REAL[1]}", cwd=world.upstream)
        == real(REAL[1]).decode().strip()
    )


def test_dispatch_on_the_default_branch_pushes_there(world: World) -> None:
    """The maintainer ran the workflow on main to re-record main."""
    on_branch(world, world.upstream, "main")
    make_dispatch_artifact(world, {REAL[0]: real(REAL[0])})
    world.manifest["head_branch"] = "main"
    world.write_manifest()

    result = dispatch(world, TARGET_BRANCH="main", DISPATCH_REF="main")

    assert result.returncode == 0, result.stdout + result.stderr
    assert world.git("rev-parse", "main^", cwd=world.upstream) == world.head_sha
    assert REAL[0] in files_on(world, "main", world.upstream)


def test_dispatch_to_the_default_branch_from_another_branch_is_refused(world: World) -> None:
    on_branch(world, world.upstream, "main")
    make_dispatch_artifact(world, {REAL[0]: real(REAL[0])})
    world.manifest["head_branch"] = "main"
    world.write_manifest()
    before = world.tip(world.upstream, "main")

    result = dispatch(world, TARGET_BRANCH="main", DISPATCH_REF="feature")

    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"::error::{UPSTREAM}@main is the default branch of {UPSTREAM}; a re-record is pushed "
        "to a default or protected branch only when the workflow is dispatched on that branch"
    ) in result.stdout
    assert world.tip(world.upstream, "main") == before


@pytest.mark.parametrize(("dispatched", "pushed"), [("main", False), ("feature", True)])
def test_dispatch_to_a_protected_branch_needs_to_be_dispatched_on_it(
    world: World, dispatched: str, pushed: bool
) -> None:
    world.repos[UPSTREAM]["protected"] = ["feature"]
    make_dispatch_artifact(world, {REAL[0]: real(REAL[0])})
    before = world.tip()

    result = dispatch(world, DISPATCH_REF=dispatched)

    assert (result.returncode == 0) == pushed, result.stdout + result.stderr
    assert (world.tip() != before) == pushed
    if not pushed:
        assert f"::error::{UPSTREAM}@feature is a protected branch" in result.stdout


def test_dispatch_never_pushes_to_a_forks_default_branch(world: World) -> None:
    """Not even when the workflow ran on a branch of the same name: that was this repository's."""
    world.make_fork_pull_request(maintainer_can_modify=True)
    on_branch(world, world.fork, "main")
    make_dispatch_artifact(world, {REAL[0]: real(REAL[0])})
    world.manifest["head_branch"] = "main"
    world.write_manifest()
    before = world.tip(world.fork, "main")

    result = dispatch(
        world,
        TARGET_REPO=FORK,
        TARGET_BRANCH="main",
        DISPATCH_REF="main",
        RECORDINGS_PUSH_TOKEN=PUSH_TOKEN,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"::error::{FORK}@main is the default branch of {FORK}" in result.stdout
    assert world.tip(world.fork, "main") == before


def test_dispatch_to_a_fork_is_pushed_with_the_push_token_only(world: World) -> None:
    world.make_fork_pull_request(maintainer_can_modify=True)
    make_dispatch_artifact(world, {REAL[0]: real(REAL[0])})
    before = world.tip()

    without = dispatch(world, TARGET_REPO=FORK)
    assert without.returncode == 1
    assert "needs the repository secret RECORDINGS_PUSH_TOKEN" in without.stdout
    assert world.tip() == before

    result = dispatch(world, TARGET_REPO=FORK, RECORDINGS_PUSH_TOKEN=PUSH_TOKEN)

    assert result.returncode == 0, result.stdout + result.stderr
    assert world.git("rev-parse", "feature^", cwd=world.fork) == before


def test_dispatch_refuses_recordings_of_tests_it_was_not_dispatched_for(world: World) -> None:
    make_dispatch_artifact(world, {name: real(name) for name in REAL})
    before = world.tip()

    result = dispatch(world, TEST_SUBDIRS="prompts, vision/")

    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"::error::{REAL[0]} is a recording for '{node_id_of(REAL[0])}', outside the tests this "
        "re-record was dispatched for (tests/integration/prompts/, tests/integration/vision/)"
    ) in result.stdout
    assert world.tip() == before


def test_dispatch_commits_the_stacks_own_recordings_whatever_the_subdirs(world: World) -> None:
    """The stack's start-up requests belong to no test, and every record run makes them."""
    make_dispatch_artifact(world, {REAL[0]: real(REAL[0]), SHARED: real(SHARED)})

    result = dispatch(world, TEST_SUBDIRS="inference")

    assert result.returncode == 0, result.stdout + result.stderr
    assert {REAL[0], SHARED} <= set(files_on(world, "feature"))


def test_dispatch_refuses_an_artifact_naming_another_commit(world: World) -> None:
    make_dispatch_artifact(world, {REAL[0]: real(REAL[0])})
    before = world.tip()

    result = dispatch(world, TARGET_SHA="f" * 40)

    assert result.returncode == 1
    assert "::error::manifest.json says head_sha" in result.stdout
    assert world.tip() == before


def test_dispatch_to_a_branch_that_moved_on_is_an_error_saying_to_dispatch_again(
    world: World,
) -> None:
    make_dispatch_artifact(world, {REAL[0]: real(REAL[0])})
    recorded = world.head_sha
    world.git("commit", "-q", "--allow-empty", "-m", "Pushed while recording", cwd=world.head)
    world.push_head()
    moved = world.tip()

    result = dispatch(world, TARGET_SHA=recorded)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"has moved on to {moved[:12]}; dispatch the workflow again" in result.stdout
    assert world.tip() == moved


def test_dispatch_reads_the_artifact_as_strictly_as_a_pull_requests(world: World) -> None:
    make_dispatch_artifact(world, {REAL[0]: with_number(REAL[0], "NaN")})
    before = world.tip()

    result = dispatch(world)

    assert result.returncode == 1
    assert f"::error::{REAL[0]} holds NaN, which JSON does not allow" in result.stdout
    assert world.tip() == before


def test_check_target_pins_the_commit_to_record(world: World) -> None:
    output = world.root / "github_output"

    result = dispatch(world, "--check-target", GITHUB_OUTPUT=str(output))

    assert result.returncode == 0, result.stdout + result.stderr
    assert output.read_text() == f"sha={world.head_sha}\n"


def test_check_target_refuses_a_default_branch_before_anything_is_recorded(world: World) -> None:
    output = world.root / "github_output"

    result = dispatch(
        world,
        "--check-target",
        TARGET_BRANCH="main",
        DISPATCH_REF="feature",
        GITHUB_OUTPUT=str(output),
    )

    assert result.returncode == 1
    assert f"::error::{UPSTREAM}@main is the default branch of {UPSTREAM}" in result.stdout
    assert not output.exists()


# ---------------------------------------------------------------- usage


def test_missing_artifact_folder_is_an_error(world: World) -> None:
    shutil.rmtree(world.artifact)

    result = world.run()

    assert result.returncode == 1
    assert "is not a directory (was the artifact downloaded?)" in result.stdout


def test_missing_event_value_is_an_error(world: World) -> None:
    refused(world, "RUN_HEAD_SHA is not set", RUN_HEAD_SHA="")


def test_script_needs_only_the_standard_library() -> None:
    """The trusted workflow runs it with `python3 -I` before anything of the project matters."""
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(SCRIPT)], capture_output=True, text=True, timeout=30
    )

    assert done.returncode == 2
    assert "ARTIFACT_DIR" in done.stderr


# ---------------------------------------------------------------- both halves together


def test_what_collect_uploads_is_what_commit_pushes(world: World) -> None:
    """collect-recordings-artifact.sh in the pull request's checkout, then this script."""
    for name in REAL:
        world.write_in(world.head, name, (REPO_ROOT / name).read_text())
    shutil.rmtree(world.artifact)
    misses = world.root / "misses.txt"  # as find-missing-recordings.sh leaves it
    misses.write_text("".join(f"{node_id_of(name)}\n" for name in REAL))
    collect = subprocess.run(
        [
            str(REPO_ROOT / "scripts" / "github" / "collect-recordings-artifact.sh"),
            "--misses",
            str(misses),
            str(world.artifact),
        ],
        cwd=world.head,
        env={
            **os.environ,
            **world.env,
            "PR_NUMBER": "42",
            "PR_HEAD_REPO": UPSTREAM,
            "PR_HEAD_BRANCH": "feature",
            "PR_HEAD_SHA": world.head_sha,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert collect.returncode == 0, collect.stdout + collect.stderr

    result = world.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 new, 0 changed" in result.stdout
    assert set(REAL) <= set(files_on(world, "feature"))
