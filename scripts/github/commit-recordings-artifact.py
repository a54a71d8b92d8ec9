#!/usr/bin/env python3
"""Validate a pull request's recordings artifact and commit it to the pull request's branch.

Usage: commit-recordings-artifact.py ARTIFACT_DIR

Runs in the trusted workflow (.github/workflows/commit-pr-recordings.yml, on workflow_run, with
contents: write) from the base repository's default branch. The artifact was made by a
pull_request workflow that ran the pull request's code, which may have changed that workflow
too, so every byte of the artifact is untrusted. Before anything is pushed:

- the artifact holds manifest.json and regular .json files under recordings/ only: no other
  file, no symlink, no hidden or oddly named path, within count and size limits, each file a
  JSON object; the manifest lists exactly those files, with safe relative paths;
- the manifest's pull request, head repository, branch and commit are those of the workflow run
  that made the artifact (from the event, which the pull request cannot forge) and those the
  GitHub API reports for that pull request, which must be open;
- a fork's pull request must allow edits by maintainers, and a token that may push to the fork
  (the RECORDINGS_PUSH_TOKEN secret) must be there;
- `harness recordings verify` of this checkout (the base repository's code) passes on the files.

The pull request's code is never checked out nor run: its branch is fetched into a fresh bare
repository and the commit is built with git plumbing (read-tree, hash-object, update-index,
write-tree, commit-tree), so no file of the branch reaches the disk and no hook runs. The push is
a fast-forward of the commit the run recorded on; if the branch moved on since, nothing is pushed.

Environment:
  BASE_REPO              owner/repo the workflow runs in (github.repository)
  BASE_SHA               the commit of this checkout, named in the commit message (optional)
  RUN_HEAD_SHA           head_sha of the workflow run that made the artifact
  RUN_HEAD_REPO          head_repository.full_name of that run
  RUN_HEAD_BRANCH        head_branch of that run
  RECORD_RUN_URL         html_url of that run, named in the commit message (optional)
  GH_TOKEN               token for `gh api` and for pushing to a branch of BASE_REPO
  RECORDINGS_PUSH_TOKEN  token that may push to forks; when set it is used for every push
  RECORDINGS_MAX_FILES, RECORDINGS_MAX_FILE_BYTES, RECORDINGS_MAX_TOTAL_BYTES  limits

Exit status: 0 when the recordings were pushed or there was nothing to do (a notice says why),
1 when the artifact or the pull request was refused (an error says why), 2 on a usage error.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MANIFEST = "manifest.json"
ROOT = "recordings"
MANIFEST_KEYS = {"pr", "head_repo", "head_branch", "head_sha", "files"}
MAX_MANIFEST_BYTES = 1024 * 1024
DEFAULT_LIMITS = {
    "RECORDINGS_MAX_FILES": 1000,
    "RECORDINGS_MAX_FILE_BYTES": 5 * 1024 * 1024,
    "RECORDINGS_MAX_TOTAL_BYTES": 50 * 1024 * 1024,
}
# A path component: no leading dot (so no "..", "." or hidden file), no separator, no space.
SAFE_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
REPO = re.compile(r"[A-Za-z0-9-]{1,39}/[A-Za-z0-9_.-]{1,100}")
SHA = re.compile(r"[0-9a-f]{40}")
# Marks the commits this script makes; see refuse_a_loop().
TRAILER = "Recordings-from-run"
BOT_NAME = "github-actions[bot]"
BOT_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"


class Refused(Exception):
    """The artifact or the pull request cannot be committed to; the message says why."""


class NothingToDo(Exception):
    """Nothing to push, for a reason that is no fault (the message says which)."""


@dataclass(frozen=True)
class Manifest:
    pr: int
    head_repo: str
    head_branch: str
    head_sha: str
    files: tuple[str, ...]


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


def artifact_files(artifact: Path, limit: dict[str, int]) -> dict[str, bytes]:
    """The recording files of the artifact by relative path, each checked; else Refused."""
    top = {entry.name: entry for entry in entries(artifact)}
    for name, entry in top.items():
        if name == MANIFEST and entry.is_file(follow_symlinks=False):
            continue
        if name == ROOT and entry.is_dir(follow_symlinks=False) and not entry.is_symlink():
            continue
        raise Refused(f"the artifact holds {name!r}, which is outside recordings/")

    files: dict[str, bytes] = {}
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
            try:
                parsed = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise Refused(f"{relative} is not valid JSON ({exc})") from None
            if not isinstance(parsed, dict):
                raise Refused(f"{relative} is not a JSON object, so it is no recording")
            files[relative] = data
    return files


def load_manifest(artifact: Path) -> Manifest:
    path = artifact / MANIFEST
    if not path.is_file() or path.is_symlink():
        raise Refused(f"the artifact has no {MANIFEST}")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise Refused(f"{MANIFEST} is over {MAX_MANIFEST_BYTES} bytes")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(f"{MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or set(raw) != MANIFEST_KEYS:
        raise Refused(f"{MANIFEST} must be an object with exactly {sorted(MANIFEST_KEYS)}")
    pr, repo, branch, sha = raw["pr"], raw["head_repo"], raw["head_branch"], raw["head_sha"]
    files = raw["files"]
    if type(pr) is not int or pr <= 0:
        raise Refused(f"{MANIFEST}: pr {pr!r} is not a pull request number")
    if not isinstance(repo, str) or not REPO.fullmatch(repo) or repo.split("/")[1] in {".", ".."}:
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


def valid_branch(branch: str) -> bool:
    if branch.startswith("-") or len(branch) > 255 or any(ord(c) < 32 for c in branch):
        return False
    done = subprocess.run(
        ["git", "check-ref-format", "--branch", branch], capture_output=True, text=True
    )
    return done.returncode == 0


def match_files(manifest: Manifest, files: dict[str, bytes]) -> None:
    for name in manifest.files:
        if name not in files:
            raise Refused(f"{MANIFEST} lists {name}, which the artifact does not hold")
    for name in files:
        if name not in manifest.files:
            raise Refused(f"the artifact holds {name}, which {MANIFEST} does not list")


# ---------------------------------------------------------------- the pull request


@dataclass(frozen=True)
class PullRequest:
    fork: bool
    maintainer_can_modify: bool


def check_run(manifest: Manifest) -> None:
    """The manifest must name the commit, repository and branch the run really ran on."""
    run = {
        "head_sha": env("RUN_HEAD_SHA"),
        "head_repo": env("RUN_HEAD_REPO"),
        "head_branch": env("RUN_HEAD_BRANCH"),
    }
    said = {
        "head_sha": manifest.head_sha,
        "head_repo": manifest.head_repo,
        "head_branch": manifest.head_branch,
    }
    for key, value in run.items():
        # GitHub matches repository names in any case; branch names and commits are exact.
        same = said[key].lower() == value.lower() if key == "head_repo" else said[key] == value
        if not same:
            raise Refused(
                f"{MANIFEST} says {key} {said[key]!r}, but the run that made the artifact ran on "
                f"{value!r}"
            )


def fetch_pull_request(base_repo: str, manifest: Manifest) -> PullRequest:
    done = subprocess.run(
        ["gh", "api", f"repos/{base_repo}/pulls/{manifest.pr}"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise Refused(
            f"could not read pull request #{manifest.pr} of {base_repo}: {done.stderr.strip()}"
        )
    try:
        pr = json.loads(done.stdout)
        state = pr["state"]
        head = pr["head"]
        head_repo = (head.get("repo") or {}).get("full_name")
        head_sha, head_ref = head["sha"], head["ref"]
        can_modify = bool(pr.get("maintainer_can_modify"))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
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


def push_token(manifest: Manifest, pr: PullRequest) -> str:
    special = os.environ.get("RECORDINGS_PUSH_TOKEN", "").strip()
    if pr.fork:
        if not pr.maintainer_can_modify:
            raise Refused(
                f"pull request #{manifest.pr} comes from the fork {manifest.head_repo} and does "
                "not allow edits by maintainers, so its branch cannot be pushed to. Ask the "
                "author to tick 'Allow edits by maintainers' (the recordings are then committed "
                "on the next push), or to record locally and push the recordings themselves."
            )
        if not special:
            raise Refused(
                f"pull request #{manifest.pr} comes from the fork {manifest.head_repo}; pushing "
                "there needs the repository secret RECORDINGS_PUSH_TOKEN (a maintainer's token "
                "that may push to forks), and it is not set"
            )
        return special
    return special or env("GH_TOKEN")


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


def commit_message(manifest: Manifest, base_repo: str, new: list[str], changed: list[str]) -> str:
    count = len(new) + len(changed)
    run_url = os.environ.get("RECORD_RUN_URL", "").strip()
    base_sha = os.environ.get("BASE_SHA", "").strip()
    source = f"the pull request's recording run {run_url}" if run_url else "the pull request's run"
    checked_with = f"{base_repo}@{base_sha[:12]}" if base_sha else base_repo
    lines = [
        f"Record the {count} recording(s) that #{manifest.pr} missed in replay",
        "",
        f"Replaying the integration tests at {manifest.head_sha[:12]} missed these recordings;",
        f"{source} recorded them with the ollama setup (record-if-missing). Their",
        f"paths and JSON were checked, and `harness recordings verify` of {checked_with}",
        "passed on them, before this commit.",
        "",
        *(f"new:     {name}" for name in new),
        *(f"changed: {name}" for name in changed),
        "",
        f"{TRAILER}: {run_url or os.environ.get('RUN_HEAD_SHA', '')}",
    ]
    return "\n".join(lines) + "\n"


def commit_and_push(
    git: Git, manifest: Manifest, files: dict[str, bytes], base_repo: str
) -> tuple[str, list[str], list[str]]:
    url = git.url(manifest.head_repo)
    git("fetch", "--quiet", "--no-tags", "--depth=1", url, f"refs/heads/{manifest.head_branch}")
    tip = git("rev-parse", "FETCH_HEAD^{commit}")
    if tip != manifest.head_sha:
        raise NothingToDo(
            f"{manifest.head_repo}@{manifest.head_branch} has moved on to {tip[:12]}; the run for "
            "that commit records what it misses"
        )
    git("read-tree", manifest.head_sha)
    new: list[str] = []
    changed: list[str] = []
    for name in sorted(files):
        blob = git("hash-object", "-w", "--no-filters", "--stdin", input=files[name])
        old = git("rev-parse", "--quiet", "--verify", f"{manifest.head_sha}:{name}", check=False)
        if old == blob:
            continue
        git("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}")
        (changed if old else new).append(name)
    if not new and not changed:
        raise NothingToDo(
            f"{manifest.head_repo}@{manifest.head_branch} already has these recordings"
        )
    refuse_a_loop(git, manifest, len(new) + len(changed))
    tree = git("write-tree")
    message = commit_message(manifest, base_repo, new, changed)
    commit = git("commit-tree", tree, "-p", manifest.head_sha, "-F", "-", input=message.encode())
    try:
        git("push", "--quiet", url, f"{commit}:refs/heads/{manifest.head_branch}")
    except Refused as exc:
        raise Refused(
            f"pushing to {manifest.head_repo}@{manifest.head_branch} was refused (if the branch "
            f"moved on, the run for its new head records what it misses). {exc}"
        ) from None
    return commit, new, changed


def summary(text: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")


def run(artifact: Path) -> None:
    base_repo = env("BASE_REPO")
    files = artifact_files(artifact, limits())
    manifest = load_manifest(artifact)
    match_files(manifest, files)
    check_run(manifest)
    if not files:
        raise NothingToDo(f"no test of #{manifest.pr} missed a recording; nothing to commit")
    pr = fetch_pull_request(base_repo, manifest)
    token = push_token(manifest, pr)
    verify(artifact)
    with tempfile.TemporaryDirectory(prefix="pr-recordings-") as tmp:
        git = Git(Path(tmp), token)
        commit, new, changed = commit_and_push(git, manifest, files, base_repo)
    where = f"{manifest.head_repo}@{manifest.head_branch}"
    print(f"Pushed {commit[:12]} to {where}: {len(new)} new, {len(changed)} changed recording(s)")
    for name in new:
        print(f"  new:     {name}")
    for name in changed:
        print(f"  changed: {name}")
    summary(f"Committed {len(new) + len(changed)} recording(s) to #{manifest.pr} ({where}).")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print(__doc__.split("\n\n", 2)[1], file=sys.stderr)
        return 2
    artifact = Path(argv[0])
    if not artifact.is_dir():
        print(f"::error::{artifact} is not a directory (was the artifact downloaded?)")
        return 1
    try:
        run(artifact)
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
