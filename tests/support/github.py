"""A stand-in for GitHub, for the tests of the scripts and workflows that talk to it.

Repositories are bare git repositories in the test's folder. `git_config` writes a global git
configuration whose `url.<path>.insteadOf` sends `https://x-access-token:<token>@github.com/...`
to them, for the tokens given only, and every other https URL nowhere, so a push with the wrong
token fails as GitHub would refuse it. `FAKE_GH` is a `gh` whose `gh api` answers about pull
requests from a state file, and about repositories and branches from the bare repositories
themselves (the tip a branch really has; which branch is the default or protected comes from the
state); it logs every call with the token it was given.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

FAKE_GH = """\
import json, os, subprocess, sys, urllib.parse

args = sys.argv[1:]
with open(os.environ["FAKE_GH_LOG"], "a") as log:
    log.write(json.dumps({"args": args, "token": os.environ.get("GH_TOKEN")}) + "\\n")
state = json.load(open(os.environ["FAKE_GH_STATE"]))
path = args[1] if args[0] == "api" and len(args) == 2 else ""
parts = path.split("/")
repos = {name.lower(): (name, repo) for name, repo in state["repos"].items()}
if path in state["pulls"]:
    print(json.dumps(state["pulls"][path]))
    sys.exit(0)
if parts[0] == "repos" and "/".join(parts[1:3]).lower() in repos:
    name, repo = repos["/".join(parts[1:3]).lower()]
    if len(parts) == 3:
        print(json.dumps({"full_name": name, "default_branch": repo["default_branch"]}))
        sys.exit(0)
    branch = urllib.parse.unquote("/".join(parts[4:]))
    tip = subprocess.run(
        ["git", "--git-dir", repo["path"], "rev-parse", "--verify", "-q", "refs/heads/" + branch],
        capture_output=True, text=True,
    ).stdout.strip()
    if parts[3] == "branches" and tip:
        protected = branch in repo["protected"]
        print(json.dumps({"name": branch, "commit": {"sha": tip}, "protected": protected}))
        sys.exit(0)
print("gh: Not Found (HTTP 404)", file=sys.stderr)
sys.exit(1)
"""

# `harness` of this checkout, whatever the PATH of the test's subprocess holds.
HARNESS = """\
import sys
from harness.cli import main
sys.exit(main())
"""


def install(path: Path, source: str) -> None:
    """An executable Python script at `path`, run by this test run's interpreter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(0o755)


def repo_state(
    path: Path, *, default_branch: str = "main", protected: Iterable[str] = ()
) -> dict[str, object]:
    """What FAKE_GH knows of one repository."""
    return {"path": str(path), "default_branch": default_branch, "protected": list(protected)}


def write_state(path: Path, repos: Mapping[str, object], pulls: Mapping[str, object]) -> None:
    path.write_text(json.dumps({"repos": repos, "pulls": pulls}))


def git_config(
    home: Path, repositories: Mapping[str, Path], tokens: Iterable[str], nowhere: Path
) -> None:
    """A ~/.gitconfig routing token URLs of `repositories` to their bare repositories."""
    rewrites = {"https://": f"{nowhere}/"}
    for repo, bare in repositories.items():
        for token in tokens:
            rewrites[f"https://x-access-token:{token}@github.com/{repo}.git"] = str(bare)
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text(
        "".join(f'[url "{to}"]\n\tinsteadOf = {url}\n' for url, to in rewrites.items())
    )
