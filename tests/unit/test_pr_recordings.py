"""The read-only half of re-recording on pull requests, run for real with a fake `pytest`.

scripts/github/find-missing-recordings.sh, gather-misses.sh, record-missing-recordings.sh and
collect-recordings-artifact.sh run in the pull_request workflow (record-pr-recordings.yml). The
fake pytest logs its arguments and inference mode and writes the misses file it is told to;
collecting runs in a real git repository. The trusted half is in
test_commit_recordings_artifact.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.git import git

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts" / "github"
FIND = SCRIPTS / "find-missing-recordings.sh"
RECORD = SCRIPTS / "record-missing-recordings.sh"
COLLECT = SCRIPTS / "collect-recordings-artifact.sh"
GATHER = SCRIPTS / "gather-misses.sh"

FAKE_PYTEST = """\
import json, os, sys

args = sys.argv[1:]
state = json.load(open(os.environ["FAKE_PYTEST_STATE"]))
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({
        "args": args,
        "mode": os.environ.get("LLAMA_STACK_TEST_INFERENCE_MODE"),
        "ollama_url": os.environ.get("OLLAMA_URL"),
    }) + "\\n")
if "--misses-file" in args and state.get("write", True):
    with open(args[args.index("--misses-file") + 1], "w") as f:
        f.write("".join(line + "\\n" for line in state.get("misses", [])))
sys.exit(state.get("exit", 0))
"""

# Stands in for start-ollama.sh beside a copy of record-missing-recordings.sh.
FAKE_START_OLLAMA = """\
import json, os, sys

with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({"start-ollama": sys.argv[1:]}) + "\\n")
sys.exit(int(os.environ.get("FAKE_START_EXIT", "0")))
"""


def install(path: Path, source: str) -> None:
    path.write_text(f"#!{sys.executable} -IS\n{source}")
    path.chmod(0o755)


class Runner:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "calls.log"
        self.state_file = root / "pytest-state.json"
        self.output = root / "github_output"
        self.misses = root / "misses.txt"
        install(self.bin / "pytest", FAKE_PYTEST)
        # record-missing-recordings.sh calls the start-ollama.sh beside it: run a copy next to
        # a fake one.
        self.scripts = root / "scripts"
        self.scripts.mkdir()
        shutil.copy2(RECORD, self.scripts / RECORD.name)
        install(self.scripts / "start-ollama.sh", FAKE_START_OLLAMA)

    def run(self, script: Path, *args: str, state: dict | None = None, **env: str):
        self.state_file.write_text(json.dumps(state or {}))
        return subprocess.run(
            [str(script), *args],
            cwd=self.root,
            env={
                **os.environ,
                "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
                "FAKE_LOG": str(self.log),
                "FAKE_PYTEST_STATE": str(self.state_file),
                "GITHUB_OUTPUT": str(self.output),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )

    def record(self, *args: str, **env: str):
        return self.run(self.scripts / RECORD.name, *args, **env)

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


MISSED = [
    "tests/integration/inference/test_chat_completions.py::test_chat[streaming]",
    "tests/integration/prompts/test_prompt_to_chat.py::test_prompt_with spaces[a b]",
]


# ---------------------------------------------------------------- find-missing-recordings.sh


def test_find_replays_the_integration_tests_with_a_misses_file(runner: Runner) -> None:
    done = runner.run(FIND, str(runner.misses), state={"exit": 0, "misses": []})

    assert done.returncode == 0, done.stdout + done.stderr
    (call,) = runner.calls()
    assert call["mode"] == "replay"
    assert call["args"] == [
        "--stack-config=server:starter",
        "--misses-file",
        str(runner.misses),
        "tests/integration",
    ]
    assert runner.output.read_text() == "count=0\n"
    assert runner.misses.read_text() == ""
    assert "nothing to record" in done.stdout


def test_find_lists_each_missed_test_once(runner: Runner) -> None:
    state = {"exit": 1, "misses": [MISSED[0], "", MISSED[1], MISSED[0]]}

    done = runner.run(FIND, str(runner.misses), state=state)

    assert done.returncode == 0, done.stdout + done.stderr
    assert runner.output.read_text() == "count=2\n"
    assert runner.misses.read_text().splitlines() == MISSED
    assert "2 test(s) missed a recording" in done.stdout


def test_find_passes_extra_arguments_to_pytest(runner: Runner) -> None:
    done = runner.run(FIND, str(runner.misses), "-p", "no:cacheprovider", state={"exit": 0})

    assert done.returncode == 0, done.stdout + done.stderr
    assert runner.calls()[0]["args"][-3:] == ["-p", "no:cacheprovider", "tests/integration"]


def test_find_failures_without_misses_record_nothing(runner: Runner) -> None:
    done = runner.run(FIND, str(runner.misses), state={"exit": 1, "misses": []})

    assert done.returncode == 0, done.stdout + done.stderr
    assert runner.output.read_text() == "count=0\n"
    assert "none for a missing recording" in done.stdout


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"exit": 2}, "could not run the tests (exit status 2)"),
        ({"exit": 4}, "could not run the tests (exit status 4)"),
        ({"exit": 5}, "collected no test under tests/integration"),
        ({"exit": 1, "write": False}, "did not write"),
        ({"exit": 1, "misses": ["--deselect=tests"]}, "not a node id under tests/"),
    ],
)
def test_find_fails_when_the_list_cannot_be_trusted(
    runner: Runner, state: dict, message: str
) -> None:
    runner.misses.write_text("stale\n")

    done = runner.run(FIND, str(runner.misses), state=state)

    assert done.returncode == 1
    assert "::error::" in done.stdout
    assert message in done.stdout
    assert not runner.output.exists()


def test_find_writes_the_list_into_a_folder_it_makes(runner: Runner) -> None:
    """Each replay shard writes its list under a folder of its own, uploaded as an artifact."""
    shard = runner.root / "misses" / "vision.txt"

    done = runner.run(FIND, str(shard), "--suite", "vision", state={"exit": 1, "misses": MISSED})

    assert done.returncode == 0, done.stdout + done.stderr
    assert shard.read_text().splitlines() == MISSED
    assert runner.calls()[0]["args"][-3:] == ["--suite", "vision", "tests/integration"]


def test_find_without_a_file_is_a_usage_error(runner: Runner) -> None:
    done = runner.run(FIND)

    assert done.returncode == 2
    assert "Usage:" in done.stderr
    assert runner.calls() == []


# ---------------------------------------------------------------- gather-misses.sh

VISION_MISS = "tests/integration/vision/test_vision.py::test_image_as_a_data_url[vis=x]"


def shards(runner: Runner, **lists: list[str]) -> Path:
    """A folder as download-artifact leaves it: one <shard>.txt per replay shard."""
    folder = runner.root / "shards"
    folder.mkdir(exist_ok=True)
    for name, ids in lists.items():
        (folder / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return folder


def test_gather_lists_the_misses_of_every_shard_each_once(runner: Runner) -> None:
    folder = shards(runner, vision=[VISION_MISS, MISSED[0]], base=[*MISSED, ""])

    done = runner.run(GATHER, str(folder), str(runner.misses))

    assert done.returncode == 0, done.stdout + done.stderr
    assert runner.misses.read_text().splitlines() == [*MISSED, VISION_MISS]
    assert runner.output.read_text() == "count=3\n"
    assert "3 test(s) missed a recording in 2 shard(s)" in done.stdout


def test_gather_with_no_miss_in_any_shard_writes_an_empty_list(runner: Runner) -> None:
    folder = shards(runner, base=[], vision=[])

    done = runner.run(GATHER, str(folder), str(runner.misses))

    assert done.returncode == 0, done.stdout + done.stderr
    assert runner.misses.read_text() == ""
    assert runner.output.read_text() == "count=0\n"


@pytest.mark.parametrize(
    ("lists", "message"),
    [
        ({}, "holds no shard's misses file"),
        ({"base": [MISSED[0], "--pdb"]}, "base.txt holds '--pdb', which is not a node id"),
    ],
)
def test_gather_fails_when_the_list_cannot_be_trusted(
    runner: Runner, lists: dict[str, list[str]], message: str
) -> None:
    folder = shards(runner, **lists)

    done = runner.run(GATHER, str(folder), str(runner.misses))

    assert done.returncode == 1
    assert "::error::gather-misses: " in done.stdout
    assert message in done.stdout
    assert not runner.output.exists()


def test_gather_without_the_shards_folder_fails(runner: Runner) -> None:
    done = runner.run(GATHER, str(runner.root / "nowhere"), str(runner.misses))

    assert done.returncode == 1
    assert "did the replay shards upload their misses?" in done.stdout


# ---------------------------------------------------------------- record-missing-recordings.sh


def test_record_records_only_the_missed_tests_with_the_ollama_setup(runner: Runner) -> None:
    runner.misses.write_text("\n".join(MISSED) + "\n")

    done = runner.record(str(runner.misses))

    assert done.returncode == 0, done.stdout + done.stderr
    start, record = runner.calls()
    assert start == {"start-ollama": []}
    assert record["mode"] == "record-if-missing"
    assert record["args"] == [*MISSED, "--setup", "ollama", "--stack-config=server:starter"]
    assert record["ollama_url"] == "http://localhost:11434"


def test_record_starts_ollama_from_the_image_with_vision_when_needed(runner: Runner) -> None:
    runner.misses.write_text(f"{MISSED[0]}\ntests/integration/vision/test_images.py::test_cat\n")

    done = runner.record("--ollama-image", "ollama/ollama:0.13.5", str(runner.misses))

    assert done.returncode == 0, done.stdout + done.stderr
    assert runner.calls()[0] == {"start-ollama": ["--image", "ollama/ollama:0.13.5", "--vision"]}


def test_record_with_nothing_missed_starts_nothing(runner: Runner) -> None:
    runner.misses.write_text("")

    done = runner.record(str(runner.misses))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing to record" in done.stdout
    assert runner.calls() == []


def test_record_refuses_a_line_that_is_not_a_node_id(runner: Runner) -> None:
    runner.misses.write_text(f"{MISSED[0]}\n-p evil_plugin\n")

    done = runner.record(str(runner.misses))

    assert done.returncode == 1
    assert "'-p evil_plugin', which is not a node id under tests/" in done.stdout
    assert runner.calls() == []


def test_record_fails_when_recording_fails(runner: Runner) -> None:
    runner.misses.write_text(MISSED[0] + "\n")

    failed_tests = runner.record(str(runner.misses), state={"exit": 1})
    no_ollama = runner.record(str(runner.misses), FAKE_START_EXIT="1")

    assert failed_tests.returncode == 1
    assert no_ollama.returncode == 1
    assert len([c for c in runner.calls() if "args" in c]) == 1


# ---------------------------------------------------------------- collect-recordings-artifact.sh


class Clone:
    """A pull request's head checked out, as the read-only workflow leaves it."""

    def __init__(self, root: Path) -> None:
        self.work = root / "head"
        self.env = {
            "HOME": str(root),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Tester",
            "GIT_AUTHOR_EMAIL": "tester@example.com",
            "GIT_COMMITTER_NAME": "Tester",
            "GIT_COMMITTER_EMAIL": "tester@example.com",
        }
        self.git("init", "-q", "-b", "feature", str(self.work), cwd=root)
        self.write("recordings/tests/m/old.json", '{"old": true}\n')
        self.write("recordings/README.md", "about recordings\n")
        self.write(".gitignore", "recordings/.last-run.json\n")
        self.git("add", ".")
        self.git("commit", "-q", "-m", "head")
        self.sha = self.git("rev-parse", "HEAD")

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return git(*args, cwd=cwd or self.work, env=self.env)

    def write(self, path: str, text: str) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def collect(self, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(COLLECT), *map(str, args)],
            cwd=self.work / "recordings",  # any folder of the checkout will do
            env={
                **os.environ,
                **self.env,
                "PR_NUMBER": "42",
                "PR_HEAD_REPO": "alice/stack-harness",
                "PR_HEAD_BRANCH": "feature",
                "PR_HEAD_SHA": self.sha,
                **env,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_collect_copies_new_and_changed_recordings_with_a_manifest(tmp_path: Path) -> None:
    clone = Clone(tmp_path)
    clone.write("recordings/tests/m/new.json", '{"new": true}\n')
    clone.write("recordings/tests/m/old.json", '{"old": false}\n')
    clone.write("recordings/.last-run.json", "{}\n")  # ignored by git: not carried
    clone.write("recordings/notes.txt", "not a recording\n")
    clone.write("harness/evil.json", "{}\n")  # outside recordings/: not carried
    out = tmp_path / "artifact"

    done = clone.collect(out)

    assert done.returncode == 0, done.stdout + done.stderr
    expected = ["recordings/tests/m/new.json", "recordings/tests/m/old.json"]
    assert files_under(out) == ["manifest.json", *expected]
    assert (out / "recordings/tests/m/old.json").read_text() == '{"old": false}\n'
    assert json.loads((out / "manifest.json").read_text()) == {
        "pr": 42,
        "head_repo": "alice/stack-harness",
        "head_branch": "feature",
        "head_sha": clone.sha,
        "files": expected,
    }
    assert "leaving out recordings/notes.txt" in done.stdout


def test_collect_with_nothing_new_writes_the_manifest_alone(tmp_path: Path) -> None:
    clone = Clone(tmp_path)
    out = tmp_path / "artifact"

    done = clone.collect(out)

    assert done.returncode == 0, done.stdout + done.stderr
    assert files_under(out) == ["manifest.json"]
    assert json.loads((out / "manifest.json").read_text())["files"] == []


def test_collect_carries_the_misses_list_beside_the_recordings(tmp_path: Path) -> None:
    clone = Clone(tmp_path)
    clone.write("recordings/tests/m/new.json", '{"new": true}\n')
    misses = tmp_path / "misses.txt"
    misses.write_text("\n".join(MISSED) + "\n")
    out = tmp_path / "artifact"

    done = clone.collect("--misses", misses, out)

    assert done.returncode == 0, done.stdout + done.stderr
    assert files_under(out) == ["manifest.json", "misses.txt", "recordings/tests/m/new.json"]
    assert (out / "misses.txt").read_text() == misses.read_text()


def test_collect_for_a_dispatched_re_record_names_no_pull_request(tmp_path: Path) -> None:
    clone = Clone(tmp_path)
    clone.write("recordings/tests/m/old.json", '{"old": false}\n')
    out = tmp_path / "artifact"

    done = clone.collect(out, PR_NUMBER="")

    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((out / "manifest.json").read_text()) == {
        "head_repo": "alice/stack-harness",
        "head_branch": "feature",
        "head_sha": clone.sha,
        "files": ["recordings/tests/m/old.json"],
    }


def test_collect_takes_the_output_folder_relative_to_where_it_runs(tmp_path: Path) -> None:
    clone = Clone(tmp_path)
    clone.write("recordings/tests/m/new.json", "{}\n")

    done = clone.collect("../../artifact")  # from head/recordings: tmp_path/artifact

    assert done.returncode == 0, done.stdout + done.stderr
    assert files_under(tmp_path / "artifact") == ["manifest.json", "recordings/tests/m/new.json"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PR_HEAD_SHA": "0" * 40}, "not at the recorded branch's head"),
        ({"PR_NUMBER": "42; rm"}, "not a pull request number"),
        ({"PR_HEAD_BRANCH": ""}, "PR_HEAD_BRANCH is not set"),
    ],
)
def test_collect_refuses_a_checkout_or_environment_that_does_not_match(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    clone = Clone(tmp_path)
    clone.write("recordings/tests/m/new.json", "{}\n")

    done = clone.collect(tmp_path / "artifact", **env)

    assert done.returncode == 1
    assert message in done.stdout
    assert not (tmp_path / "artifact" / "manifest.json").exists()


@pytest.mark.parametrize("script", [FIND, GATHER, RECORD, COLLECT], ids=lambda p: p.name)
def test_scripts_are_executable_and_strict(script: Path) -> None:
    assert os.access(script, os.X_OK)
    assert "set -euo pipefail" in script.read_text()
