#!/usr/bin/env python3
"""Validate a recordings artifact and commit it to the branch it was recorded on.

Usage:
  commit-recordings-artifact.py ARTIFACT_DIR              a pull request's recordings
  commit-recordings-artifact.py --dispatch ARTIFACT_DIR   a dispatched re-record's recordings
  commit-recordings-artifact.py --check-target            before a dispatched re-record records

Runs in the jobs that may push, from this repository's own code: the trusted workflow
.github/workflows/commit-pr-recordings.yml (on workflow_run, from the default branch) for a pull
request, and the `target` and `push` jobs of .github/workflows/record-integration-tests.yml for a
dispatched re-record. The artifact was made by a job that ran the recorded branch's code, which
may be a fork's and may have changed that job too, so every byte of it is untrusted. Before
anything is pushed:

- the artifact holds manifest.json (and, for a pull request, misses.txt) and regular .json files
  under recordings/ only: no other file, no symlink, no hidden or oddly named path, within count
  and size limits; each file is strict JSON (UTF-8, no NaN or Infinity, at most MAX_DEPTH levels
  deep) holding an object; the manifest lists exactly those files, with safe relative paths;
- the manifest's repository, branch and commit are those the trusted side knows: for a pull
  request, those of the workflow run that made the artifact (from the event, which the pull
  request cannot forge) and those the GitHub API reports for the pull request, which must be
  open; for a dispatch, those the `target` job resolved from the maintainer's inputs;
- the branch is neither its repository's default branch nor a protected one (see BRANCH RULE);
- a fork must be pushed to with the RECORDINGS_PUSH_TOKEN secret, and a fork's pull request must
  allow edits by maintainers;
- `harness recordings verify` of this checkout (this repository's code) passes on the files;
- for a pull request (recorded with record-if-missing): no recording the branch already has is
  changed, and each new recording belongs to a test that misses.txt lists, the node ids of the
  tests that missed in replay (`pytest --misses-file`, every shard's, one per line);
- for a dispatch (recorded with record): changed recordings are expected and named as changed in
  the commit; each recording belongs to a test under the dispatched test-subdirs.

BRANCH RULE. A pull request's recordings are never pushed to the default branch or a protected
branch of the head repository: the pull request's author chose that branch, not a maintainer. A
dispatched re-record is pushed there only when the maintainer dispatched the workflow on that
very branch of this repository (recording `main` by running the workflow on `main`); never to a
fork's default or protected branch, and never to a branch other than the one dispatched on.

The recorded branch's code is never checked out nor run: the branch is fetched into a fresh bare
repository and the commit is built with git plumbing (read-tree, hash-object, update-index,
write-tree, commit-tree), so no file of the branch reaches the disk and no hook runs. The push is
a fast-forward of the commit that was recorded; if the branch moved on since, nothing is pushed.

Environment, both flows:
  BASE_REPO              owner/repo the workflow runs in (github.repository)
  BASE_SHA               the commit of this checkout, named in the commit message (optional)
  RECORD_RUN_URL         html_url of the run that recorded, named in the commit (optional)
  GH_TOKEN               token for `gh api` and for pushing to a branch of BASE_REPO
  RECORDINGS_PUSH_TOKEN  token that may push to forks; when set it is used for every push
  RECORDINGS_MAX_FILES, RECORDINGS_MAX_FILE_BYTES, RECORDINGS_MAX_TOTAL_BYTES  limits
A pull request's (from the workflow_run event):
  RUN_HEAD_SHA, RUN_HEAD_REPO, RUN_HEAD_BRANCH   head_sha, head_repository.full_name and
                                                 head_branch of the run that made the artifact
A dispatch's (from the `target` job and the workflow's inputs):
  TARGET_REPO, TARGET_BRANCH   the repository and branch recorded on
  TARGET_SHA                   the commit recorded (not needed by --check-target, which finds it)
  DISPATCH_REF                 the branch the workflow was dispatched on (github.ref_name)
  TEST_PROVIDER, TEST_SUBDIRS, TEST_SUITE   the inputs, for the commit message and the subdirs
--check-target writes `sha=<the branch's commit>` to $GITHUB_OUTPUT.

Exit status: 0 when the recordings were pushed or there was nothing to do (a notice says why),
1 when the artifact, the pull request or the branch was refused (an error says why), 2 on a
usage error.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST = "manifest.json"
MISSES = "misses.txt"
ROOT = "recordings"
PR_MANIFEST_KEYS = {"pr", "head_repo", "head_branch", "head_sha", "files"}
DISPATCH_MANIFEST_KEYS = {"head_repo", "head_branch", "head_sha", "files"}
MAX_MANIFEST_BYTES = 1024 * 1024
# Recordings nest about ten levels (a tool call's arguments in a message in a choice); a deeper
# document is no recording, and would exhaust the recursion of whatever reads it next.
MAX_DEPTH = 64
MAX_NODE_ID = 1000
DEFAULT_LIMITS = {
    "RECORDINGS_MAX_FILES": 1000,
    "RECORDINGS_MAX_FILE_BYTES": 5 * 1024 * 1024,
    "RECORDINGS_MAX_TOTAL_BYTES": 50 * 1024 * 1024,
}
# A path component: no leading dot (so no "..", "." or hidden file), no separator, no space.
SAFE_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
REPO = re.compile(r"[A-Za-z0-9-]{1,39}/[A-Za-z0-9_.-]{1,100}")
SHA = re.compile(r"[0-9a-f]{40}")
TESTS_ROOT = "tests/integration"
# Marks the commits this script makes for pull requests; see refuse_a_loop(). A dispatched
# re-record's commits carry another, so that a pull request may still record on top of one.
TRAILER = "Recordings-from-run"
DISPATCH_TRAILER = "Re-recorded-in-run"
BOT_NAME = "github-actions[bot]"
BOT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"


class Refused(Exception):
    """The artifact, the pull request or the branch is refused; the message says why."""


class NothingToDo(Exception):
    """Nothing to push, for a reason that is no fault (the message says which)."""


class MovedOn(Exception):
    """The branch is no longer at the commit that was recorded (the message says where it is)."""


@dataclass(frozen=True)
class Manifest:
    pr: int | None
    head_repo: str
    head_branch: str
    head_sha: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class Recording:
    data: bytes
    test_id: object  # a node id (str) or None, as the file says; checked where it matters


def env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise Refused(f"{name} is not set; the workflow must pass it")
    return value


def limits() -> dict[str, int]:
    found = {}
    for name, default in DEFAULT_LIMITS.items():
        raw = os.environ.get(name, "")
        found[name] = int(raw) if raw.isdigit() else default
    return found


# ---------------------------------------------------------------- strict JSON


class NotFinite(Exception):
    """A NaN or an infinity in a JSON document (Python's json reads them; JSON has none)."""


def reject_constant(name: str) -> float:
    raise NotFinite(name)


def finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise NotFinite(f"{text[:40]} (too large for a number, so read as infinity)")
    return value


def depth_of(value: Any) -> int:
    """How deeply `value` nests, measured without recursion."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
    return deepest


def parse_json(data: bytes, where: str) -> Any:
    """`data` read as strict JSON, else Refused naming `where` and what is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(f"{where} is not UTF-8 text ({exc})") from None
    too_deep = Refused(f"{where} nests more than {MAX_DEPTH} levels deep, so it is no recording")
    try:
        value = json.loads(text, parse_constant=reject_constant, parse_float=finite_float)
    except RecursionError:
        raise too_deep from None
    except NotFinite as exc:
        raise Refused(f"{where} holds {exc}, which JSON does not allow") from None
    except ValueError as exc:
        raise Refused(f"{where} is not valid JSON ({exc})") from None
    if depth_of(value) > MAX_DEPTH:
        raise too_deep
    return value


# ---------------------------------------------------------------- the artifact's files


def check_recording_path(path: str, where: str) -> str:
    """`path` if it is a plain relative path of a .json file under recordings/, else Refused."""
    parts = path.split("/")
    if (
        "\\" in path
        or "\0" in path
        or str(PurePosixPath(path)) != path
        or len(parts) < 2
        or parts[0] != ROOT
        or not all(SAFE_PART.fullmatch(part) for part in parts)
    ):
        if ".." in parts or path.startswith("/"):
            raise Refused(f"{where}: {path!r} points outside recordings/ (path traversal)")
        if not path.startswith(f"{ROOT}/"):
            raise Refused(f"{where}: {path!r} is outside recordings/")
        raise Refused(f"{where}: {path!r} is not a plain path of a recording file")
    if not path.endswith(".json"):
        raise Refused(f"{where}: {path!r} is not a .json recording file")
    return path


def entries(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as found:
        return sorted(found, key=lambda entry: entry.name)


def artifact_files(
    artifact: Path, limit: dict[str, int], top_files: set[str]
) -> dict[str, Recording]:
    """The recording files of the artifact by relative path, each checked; else Refused."""
    top = {entry.name: entry for entry in entries(artifact)}
    for name, entry in top.items():
        if name in top_files and entry.is_file(follow_symlinks=False):
            continue
        if name == ROOT and entry.is_dir(follow_symlinks=False) and not entry.is_symlink():
            continue
        raise Refused(f"the artifact holds {name!r}, which is outside recordings/")

    files: dict[str, Recording] = {}
    total = 0
    pending = [artifact / ROOT] if ROOT in top else []
    while pending:
        folder = pending.pop()
        for entry in entries(folder):
            relative = Path(entry.path).relative_to(artifact).as_posix()
            if entry.is_symlink():
                raise Refused(f"the artifact holds {relative!r}, a symlink")
            if entry.is_dir(follow_symlinks=False):
                if not SAFE_PART.fullmatch(entry.name):
                    raise Refused(f"the artifact holds {relative!r}, not a plain folder name")
                pending.append(Path(entry.path))
                continue
            if not entry.is_file(follow_symlinks=False):
                raise Refused(f"the artifact holds {relative!r}, which is not a regular file")
            check_recording_path(relative, "the artifact")
            size = entry.stat(follow_symlinks=False).st_size
            if size > limit["RECORDINGS_MAX_FILE_BYTES"]:
                raise Refused(
                    f"{relative} is {size} bytes, over the limit of "
                    f"{limit['RECORDINGS_MAX_FILE_BYTES']} for one recording"
                )
            total += size
            if total > limit["RECORDINGS_MAX_TOTAL_BYTES"]:
                most = limit["RECORDINGS_MAX_TOTAL_BYTES"]
                raise Refused(f"the recordings add up to more than {most} bytes")
            if len(files) >= limit["RECORDINGS_MAX_FILES"]:
                raise Refused(f"the artifact holds more than {limit['RECORDINGS_MAX_FILES']} files")
            data = Path(entry.path).read_bytes()
            parsed = parse_json(data, relative)
            if not isinstance(parsed, dict):
                raise Refused(f"{relative} is not a JSON object, so it is no recording")
            files[relative] = Recording(data, parsed.get("test_id"))
    return files


def read_small(path: Path, name: str) -> bytes:
    if not path.is_file() or path.is_symlink():
        raise Refused(f"the artifact has no {name}")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise Refused(f"{name} is over {MAX_MANIFEST_BYTES} bytes")
    return path.read_bytes()


def load_manifest(artifact: Path, keys: set[str]) -> Manifest:
    raw = parse_json(read_small(artifact / MANIFEST, MANIFEST), MANIFEST)
    if not isinstance(raw, dict) or set(raw) != keys:
        raise Refused(f"{MANIFEST} must be an object with exactly {sorted(keys)}")
    pr = raw.get("pr")
    repo, branch, sha = raw["head_repo"], raw["head_branch"], raw["head_sha"]
    files = raw["files"]
    if "pr" in keys and (type(pr) is not int or pr <= 0):
        raise Refused(f"{MANIFEST}: pr {pr!r} is not a pull request number")
    if not isinstance(repo, str) or not valid_repo(repo):
        raise Refused(f"{MANIFEST}: head_repo {repo!r} is not of the form owner/repo")
    if not isinstance(branch, str) or not valid_branch(branch):
        raise Refused(f"{MANIFEST}: head_branch {branch!r} is not a valid branch name")
    if not isinstance(sha, str) or not SHA.fullmatch(sha):
        raise Refused(f"{MANIFEST}: head_sha {sha!r} is not a full commit id")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise Refused(f"{MANIFEST}: files must be a list of paths")
    for name in files:
        check_recording_path(name, MANIFEST)
    if len(set(files)) != len(files):
        raise Refused(f"{MANIFEST} lists a file twice")
    return Manifest(pr, repo, branch, sha, tuple(files))


def load_misses(artifact: Path) -> frozenset[str]:
    """The node ids misses.txt lists: the tests whose replay missed a recording."""
    if not (artifact / MISSES).exists():
        raise Refused(
            f"the artifact has no {MISSES}, the list of the tests that missed in replay (was it "
            "made by an older record-pr-recordings.yml? Merge the default branch into the pull "
            "request's branch)"
        )
    data = read_small(artifact / MISSES, MISSES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(f"{MISSES} is not UTF-8 text ({exc})") from None
    ids = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        if (
            not line.startswith("tests/")
            or len(line) > MAX_NODE_ID
            or any(ord(c) < 32 or ord(c) == 127 for c in line)
        ):
            raise Refused(f"{MISSES}, line {number}: {line[:80]!r} is not a pytest node id")
        ids.append(line)
    if len(ids) > limits()["RECORDINGS_MAX_FILES"]:
        raise Refused(f"{MISSES} lists more than {limits()['RECORDINGS_MAX_FILES']} tests")
    return frozenset(ids)


def valid_repo(repo: str) -> bool:
    return bool(REPO.fullmatch(repo)) and repo.split("/")[1] not in {".", ".."}


def valid_branch(branch: str) -> bool:
    if branch.startswith("-") or len(branch) > 255 or any(ord(c) < 32 for c in branch):
        return False
    done = subprocess.run(
        ["git", "check-ref-format", "--branch", branch], capture_output=True, text=True
    )
    return done.returncode == 0


def match_files(manifest: Manifest, files: dict[str, Recording]) -> None:
    for name in manifest.files:
        if name not in files:
            raise Refused(f"{MANIFEST} lists {name}, which the artifact does not hold")
    for name in files:
        if name not in manifest.files:
            raise Refused(f"the artifact holds {name}, which {MANIFEST} does not list")


def check_said(manifest: Manifest, known: dict[str, str], source: str) -> None:
    """The manifest must name the repository, branch and commit the trusted side knows."""
    said = {
        "head_sha": manifest.head_sha,
        "head_repo": manifest.head_repo,
        "head_branch": manifest.head_branch,
    }
    for key, value in known.items():
        # GitHub matches repository names in any case; branch names and commits are exact.
        same = said[key].lower() == value.lower() if key == "head_repo" else said[key] == value
        if not same:
            raise Refused(f"{MANIFEST} says {key} {said[key]!r}, but {source} {value!r}")


# ---------------------------------------------------------------- GitHub


def gh_api(path: str, what: str) -> dict[str, Any]:
    done = subprocess.run(["gh", "api", path], capture_output=True, text=True)
    if done.returncode != 0:
        raise Refused(f"could not read {what}: {done.stderr.strip()}")
    try:
        answer = json.loads(done.stdout)
    except ValueError as exc:
        raise Refused(f"unexpected answer about {what}: {exc}") from None
    if not isinstance(answer, dict):
        raise Refused(f"unexpected answer about {what}: not an object")
    return answer


@dataclass(frozen=True)
class Branch:
    repo: str
    name: str
    tip: str
    default: bool
    protected: bool

    def why_not(self) -> str | None:
        """What makes this branch one recordings are not pushed to by rule, or None."""
        if self.default:
            return f"the default branch of {self.repo}"
        if self.protected:
            return "a protected branch"
        return None


def fetch_branch(repo: str, name: str) -> Branch:
    """What GitHub says about the branch: its commit, and whether it is default or protected."""
    what = f"the branch {repo}@{name}"
    facts = gh_api(f"repos/{repo}/branches/{urllib.parse.quote(name, safe='/')}", what)
    about = gh_api(f"repos/{repo}", f"the repository {repo}")
    try:
        tip = facts["commit"]["sha"]
        protected = facts["protected"]
        default = about["default_branch"]
    except (KeyError, TypeError) as exc:
        raise Refused(f"unexpected answer about {what}: missing {exc}") from None
    if not isinstance(tip, str) or not SHA.fullmatch(tip) or type(protected) is not bool:
        raise Refused(f"unexpected answer about {what}: {facts!r:.200}")
    return Branch(repo, name, tip, default == name, protected)


@dataclass(frozen=True)
class PullRequest:
    fork: bool
    maintainer_can_modify: bool


def fetch_pull_request(base_repo: str, manifest: Manifest) -> PullRequest:
    pr = gh_api(f"repos/{base_repo}/pulls/{manifest.pr}", f"pull request #{manifest.pr}")
    try:
        state = pr["state"]
        head = pr["head"]
        head_repo = (head.get("repo") or {}).get("full_name")
        head_sha, head_ref = head["sha"], head["ref"]
        can_modify = bool(pr.get("maintainer_can_modify"))
    except (KeyError, TypeError, AttributeError) as exc:
        raise Refused(f"unexpected answer about pull request #{manifest.pr}: {exc}") from None
    if state != "open":
        raise NothingToDo(f"pull request #{manifest.pr} is {state}; nothing is pushed to it")
    if head_repo is None:
        raise Refused(f"the head repository of pull request #{manifest.pr} no longer exists")
    if head_repo.lower() != manifest.head_repo.lower() or head_ref != manifest.head_branch:
        raise Refused(
            f"pull request #{manifest.pr} comes from {head_repo}@{head_ref}, not from "
            f"{manifest.head_repo}@{manifest.head_branch} as {MANIFEST} says"
        )
    if head_sha != manifest.head_sha:
        raise NothingToDo(
            f"pull request #{manifest.pr} has moved on from {manifest.head_sha[:12]} to "
            f"{head_sha[:12]}; the run for its new head records what that head misses"
        )
    return PullRequest(
        fork=head_repo.lower() != base_repo.lower(), maintainer_can_modify=can_modify
    )


def push_token(repo: str, fork: bool) -> str:
    special = os.environ.get("RECORDINGS_PUSH_TOKEN", "").strip()
    if fork and not special:
        raise Refused(
            f"{repo} is a fork; pushing there needs the repository secret RECORDINGS_PUSH_TOKEN "
            "(a maintainer's token that may push to forks), and it is not set"
        )
    return special or env("GH_TOKEN")


def pull_request_push_token(manifest: Manifest, pr: PullRequest) -> str:
    if pr.fork and not pr.maintainer_can_modify:
        raise Refused(
            f"pull request #{manifest.pr} comes from the fork {manifest.head_repo} and does "
            "not allow edits by maintainers, so its branch cannot be pushed to. Ask the "
            "author to tick 'Allow edits by maintainers' (the recordings are then committed "
            "on the next push), or to record locally and push the recordings themselves."
        )
    return push_token(manifest.head_repo, pr.fork)


# ---------------------------------------------------------------- what may be committed


def check_tests_missed(
    files: dict[str, Recording], names: list[str], misses: frozenset[str]
) -> None:
    """Every new recording must belong to a test that missed in replay."""
    for name in names:
        test_id = files[name].test_id
        if not isinstance(test_id, str) or not test_id:
            raise Refused(
                f"{name} is a new recording that belongs to no test (its test_id is {test_id!r}); "
                "a pull request's run only records for the tests that missed in replay"
            )
        if test_id not in misses:
            raise Refused(
                f"{name} is a new recording for {test_id}, which the replay run did not list "
                f"as a miss ({MISSES}); a pull request's run only records for the tests that "
                "missed"
            )


def dispatched_roots() -> list[str]:
    """The test folders a dispatch recorded, from its test-subdirs input (as the job reads it)."""
    roots = []
    for raw in os.environ.get("TEST_SUBDIRS", "").split(","):
        subdir = "".join(raw.split()).rstrip("/")
        if not subdir:
            continue
        if ".." in subdir.split("/") or subdir.startswith("/"):
            raise Refused(f"test-subdirs: {subdir!r} is not a folder under {TESTS_ROOT}")
        roots.append(f"{TESTS_ROOT}/{subdir}/")
    return roots or [f"{TESTS_ROOT}/"]


def check_tests_dispatched(files: dict[str, Recording]) -> None:
    """Every recording of a test must belong to a test the dispatch asked to record."""
    roots = dispatched_roots()
    for name, recording in sorted(files.items()):
        test_id = recording.test_id
        if test_id in (None, ""):
            continue  # the stack's own requests (recordings/_shared/), re-recorded at its start
        if not isinstance(test_id, str) or not test_id.startswith(tuple(roots)):
            raise Refused(
                f"{name} is a recording for {test_id!r}, outside the tests this re-record was "
                f"dispatched for ({', '.join(roots)})"
            )


# ---------------------------------------------------------------- verify, then commit


def verify(artifact: Path) -> None:
    """`harness recordings verify` of this checkout's harness, on the artifact's recordings."""
    done = subprocess.run(
        ["harness", "recordings", "verify", "--dir", str(artifact / ROOT)],
        capture_output=True,
        text=True,
    )
    output = (done.stdout + done.stderr).strip()
    if output:
        print(output)
    if done.returncode != 0:
        raise Refused("harness recordings verify found problems in the recordings (see above)")


class Git:
    """git on a fresh bare repository, with hooks and credential helpers off."""

    def __init__(self, root: Path, token: str) -> None:
        self.token = token
        self.env = {
            **os.environ,
            "GIT_DIR": str(root / "repo.git"),
            "GIT_INDEX_FILE": str(root / "index"),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": BOT_NAME,
            "GIT_AUTHOR_EMAIL": BOT_EMAIL,
            "GIT_COMMITTER_NAME": BOT_NAME,
            "GIT_COMMITTER_EMAIL": BOT_EMAIL,
        }
        self("init", "--quiet", "--bare", str(root / "repo.git"))

    def __call__(self, *args: str, input: bytes | None = None, check: bool = True) -> str:
        done = subprocess.run(
            ["git", "-c", "core.hooksPath=/dev/null", "-c", "credential.helper=", *args],
            env=self.env,
            input=input,
            capture_output=True,
        )
        if check and done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").replace(self.token, "***")
            raise Refused(f"git {args[0]} failed: {message.strip()}")
        return done.stdout.decode("utf-8", "replace").strip() if done.returncode == 0 else ""

    def url(self, repo: str) -> str:
        return f"https://x-access-token:{self.token}@github.com/{repo}.git"


def refuse_a_loop(git: Git, manifest: Manifest, count: int) -> None:
    """Recording again on top of our own commit means replay keeps missing: do not loop."""
    message = git("log", "-1", "--format=%B", manifest.head_sha)
    if any(line.startswith(f"{TRAILER}:") for line in message.splitlines()):
        raise Refused(
            f"the head commit {manifest.head_sha[:12]} of #{manifest.pr} already is a commit of "
            f"recorded recordings, yet its replay missed {count} more; recording "
            "again would loop. The requests of these tests are probably not deterministic: "
            "record them locally and compare the misses' diffs."
        )


@dataclass(frozen=True)
class Staged:
    new: list[str]
    changed: list[str]


def fetch_and_stage(git: Git, manifest: Manifest, files: dict[str, Recording]) -> Staged:
    """Fetch the branch, check it is still at the recorded commit, stage what differs."""
    url = git.url(manifest.head_repo)
    git("fetch", "--quiet", "--no-tags", "--depth=1", url, f"refs/heads/{manifest.head_branch}")
    tip = git("rev-parse", "FETCH_HEAD^{commit}")
    if tip != manifest.head_sha:
        raise MovedOn(f"{manifest.head_repo}@{manifest.head_branch} has moved on to {tip[:12]}")
    git("read-tree", manifest.head_sha)
    staged = Staged([], [])
    for name in sorted(files):
        blob = git("hash-object", "-w", "--no-filters", "--stdin", input=files[name].data)
        old = git("rev-parse", "--quiet", "--verify", f"{manifest.head_sha}:{name}", check=False)
        if old == blob:
            continue
        git("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}")
        (staged.changed if old else staged.new).append(name)
    if not staged.new and not staged.changed:
        raise NothingToDo(
            f"{manifest.head_repo}@{manifest.head_branch} already has these recordings"
        )
    return staged


def push(git: Git, manifest: Manifest, message: str) -> str:
    tree = git("write-tree")
    commit = git("commit-tree", tree, "-p", manifest.head_sha, "-F", "-", input=message.encode())
    ref = f"refs/heads/{manifest.head_branch}"
    try:
        git("push", "--quiet", git.url(manifest.head_repo), f"{commit}:{ref}")
    except Refused as exc:
        raise Refused(
            f"pushing to {manifest.head_repo}@{manifest.head_branch} was refused (if the branch "
            f"moved on meanwhile, its new head has to be recorded again). {exc}"
        ) from None
    return commit


def checked_by(base_repo: str) -> str:
    base_sha = os.environ.get("BASE_SHA", "").strip()
    checked_with = f"{base_repo}@{base_sha[:12]}" if base_sha else base_repo
    return (
        f"Their paths and JSON were checked, and `harness recordings verify` of {checked_with}\n"
        "passed on them, before this commit."
    )


def pull_request_message(
    manifest: Manifest, base_repo: str, staged: Staged, files: dict[str, Recording]
) -> str:
    run_url = os.environ.get("RECORD_RUN_URL", "").strip()
    source = f"the pull request's recording run {run_url}" if run_url else "the pull request's run"
    tests = sorted({str(files[name].test_id) for name in staged.new})
    lines = [
        f"Record the {len(staged.new)} recording(s) that #{manifest.pr} missed in replay",
        "",
        f"Replaying the integration tests at {manifest.head_sha[:12]} missed these recordings;",
        f"{source} recorded them with the ollama setup (record-if-missing).",
        checked_by(base_repo),
        "",
        *(f"new:     {name}" for name in staged.new),
        "",
        "for the tests that missed:",
        *(f"  {test}" for test in tests),
        "",
        f"{TRAILER}: {run_url or os.environ.get('RUN_HEAD_SHA', '')}",
    ]
    return "\n".join(lines) + "\n"


def dispatch_message(manifest: Manifest, base_repo: str, staged: Staged) -> str:
    run_url = os.environ.get("RECORD_RUN_URL", "").strip()
    provider = os.environ.get("TEST_PROVIDER", "").strip() or "the provider"
    subdirs = os.environ.get("TEST_SUBDIRS", "").strip() or "all"
    suite = os.environ.get("TEST_SUITE", "").strip() or "all"
    source = f"The run {run_url}" if run_url else "The record workflow"
    lines = [
        f"Re-record integration tests with {provider} (subdirs: {subdirs}, suite: {suite})",
        "",
        f"{source} ran the tests of {manifest.head_repo}@{manifest.head_sha[:12]} against",
        f"{provider} (record mode) and made these recordings.",
        checked_by(base_repo),
        "",
        *(f"new:     {name}" for name in staged.new),
        *(f"changed: {name}" for name in staged.changed),
        "",
        f"{DISPATCH_TRAILER}: {run_url or manifest.head_sha}",
    ]
    return "\n".join(lines) + "\n"


def summary(text: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")


def report(commit: str, manifest: Manifest, staged: Staged, what: str) -> None:
    where = f"{manifest.head_repo}@{manifest.head_branch}"
    count = len(staged.new) + len(staged.changed)
    print(
        f"Pushed {commit[:12]} to {where}: {len(staged.new)} new, "
        f"{len(staged.changed)} changed recording(s)"
    )
    for name in staged.new:
        print(f"  new:     {name}")
    for name in staged.changed:
        print(f"  changed: {name}")
    summary(f"Committed {count} recording(s) to {what} ({where}).")


# ---------------------------------------------------------------- the two flows


def run_pull_request(artifact: Path) -> None:
    base_repo = env("BASE_REPO")
    files = artifact_files(artifact, limits(), {MANIFEST, MISSES})
    manifest = load_manifest(artifact, PR_MANIFEST_KEYS)
    match_files(manifest, files)
    run = {
        "head_sha": env("RUN_HEAD_SHA"),
        "head_repo": env("RUN_HEAD_REPO"),
        "head_branch": env("RUN_HEAD_BRANCH"),
    }
    check_said(manifest, run, "the run that made the artifact ran on")
    if not files:
        raise NothingToDo(f"no test of #{manifest.pr} missed a recording; nothing to commit")
    misses = load_misses(artifact)
    pr = fetch_pull_request(base_repo, manifest)
    branch = fetch_branch(manifest.head_repo, manifest.head_branch)
    why_not = branch.why_not()
    if why_not:
        raise Refused(
            f"the head of pull request #{manifest.pr} is {branch.repo}@{branch.name}, {why_not}; "
            "a pull request's recordings "
            "are never pushed to a default or protected branch. Open the pull request from a "
            "topic branch, or record locally and push the recordings yourself."
        )
    token = pull_request_push_token(manifest, pr)
    verify(artifact)
    with tempfile.TemporaryDirectory(prefix="pr-recordings-") as tmp:
        git = Git(Path(tmp), token)
        try:
            staged = fetch_and_stage(git, manifest, files)
        except MovedOn as exc:
            raise NothingToDo(f"{exc}; the run for that commit records what it misses") from None
        if staged.changed:
            raise Refused(
                f"{staged.changed[0]} changes a recording that {manifest.head_repo}@"
                f"{manifest.head_sha[:12]} already has ({len(staged.changed)} changed in all); "
                "a record-if-missing run only adds recordings, so this is not what it "
                "recorded. Re-record changed tests with the record workflow "
                "(scripts/github/schedule-record-workflow.sh) or locally."
            )
        check_tests_missed(files, staged.new, misses)
        refuse_a_loop(git, manifest, len(staged.new))
        message = pull_request_message(manifest, base_repo, staged, files)
        commit = push(git, manifest, message)
    report(commit, manifest, staged, f"#{manifest.pr}")


def dispatch_target() -> tuple[str, str, Branch]:
    """The branch a dispatch records on, once the branch rule allows pushing to it."""
    base_repo = env("BASE_REPO")
    repo, name, dispatched = env("TARGET_REPO"), env("TARGET_BRANCH"), env("DISPATCH_REF")
    if not valid_repo(repo):
        raise Refused(f"TARGET_REPO {repo!r} is not of the form owner/repo")
    if not valid_branch(name):
        raise Refused(f"TARGET_BRANCH {name!r} is not a valid branch name")
    branch = fetch_branch(repo, name)
    why_not = branch.why_not()
    if why_not and not (repo.lower() == base_repo.lower() and name == dispatched):
        raise Refused(
            f"{repo}@{name} is {why_not}; a re-record is pushed to a default or protected "
            "branch only when the "
            f"workflow is dispatched on that branch of {base_repo} (it runs on {dispatched}). "
            "Dispatch it on that branch, or record on a topic branch."
        )
    return base_repo, dispatched, branch


def run_check_target() -> None:
    _, _, branch = dispatch_target()
    output = os.environ.get("GITHUB_OUTPUT")
    if output:
        with open(output, "a", encoding="utf-8") as f:
            f.write(f"sha={branch.tip}\n")
    print(f"Recording on {branch.repo}@{branch.name} at {branch.tip}")


def run_dispatch(artifact: Path) -> None:
    base_repo, _, branch = dispatch_target()
    files = artifact_files(artifact, limits(), {MANIFEST})
    manifest = load_manifest(artifact, DISPATCH_MANIFEST_KEYS)
    match_files(manifest, files)
    target = {"head_sha": env("TARGET_SHA"), "head_repo": branch.repo, "head_branch": branch.name}
    check_said(manifest, target, "the workflow recorded on")
    if not files:
        raise NothingToDo("the recordings did not change; nothing to commit")
    check_tests_dispatched(files)
    token = push_token(branch.repo, branch.repo.lower() != base_repo.lower())
    verify(artifact)
    with tempfile.TemporaryDirectory(prefix="dispatch-recordings-") as tmp:
        git = Git(Path(tmp), token)
        try:
            staged = fetch_and_stage(git, manifest, files)
        except MovedOn as exc:
            # No run follows by itself, as one does for a pull request's new head.
            raise Refused(f"{exc}; dispatch the workflow again to record it") from None
        commit = push(git, manifest, dispatch_message(manifest, base_repo, staged))
    report(commit, manifest, staged, f"{branch.repo}@{branch.name}")


def main(argv: list[str]) -> int:
    if argv == ["--check-target"]:
        mode, folder = "check-target", None
    elif len(argv) == 2 and argv[0] == "--dispatch" and not argv[1].startswith("-"):
        mode, folder = "dispatch", argv[1]
    elif len(argv) == 1 and not argv[0].startswith("-"):
        mode, folder = "pull-request", argv[0]
    else:
        print(__doc__.split("\n\n", 2)[1], file=sys.stderr)
        return 2
    artifact = Path(folder) if folder is not None else None
    if artifact is not None and not artifact.is_dir():
        print(f"::error::{artifact} is not a directory (was the artifact downloaded?)")
        return 1
    try:
        if artifact is None:
            run_check_target()
        elif mode == "dispatch":
            run_dispatch(artifact)
        else:
            run_pull_request(artifact)
    except NothingToDo as exc:
        print(f"::notice::{exc}")
        summary(str(exc))
        return 0
    except Refused as exc:
        print(f"::error::{exc}")
        summary(f"Refused: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
