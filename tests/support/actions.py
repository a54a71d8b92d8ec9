"""Run a GitHub Actions workflow's jobs on this machine, the way the runner would.

Only as much of the runner as the project's workflows use, but that much for real: jobs run in
`needs` order (a matrix expanded, a job skipped when one it needs failed), each in a fresh
workspace and RUNNER_TEMP; `run:` steps run with the runner's bash command line; `env:` of the
workflow, job and step and `${{ }}` expressions (contexts, string comparison, `&&`, `||`, `!`,
`always()`, `success()`, `failure()`) are evaluated; $GITHUB_OUTPUT, $GITHUB_ENV and
$GITHUB_PATH are read after each step and applied to the later steps of the same job only, as
the runner does; job outputs reach the jobs that need them.

The actions a step `uses:` are stand-ins with the same inputs: actions/checkout clones the bare
repository a test maps to the `repository` input at `ref` (it insists on persist-credentials:
false), actions/setup-python does nothing (the test's python3 is on PATH), and upload-artifact
and download-artifact copy folders through an artifact store kept per workflow run.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.git import git

# How the runner executes a `run:` step with `shell: bash` (the default on Linux).
RUNNER_BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]
EXPRESSION = re.compile(r"\$\{\{((?:(?!\}\}).)*)\}\}", re.DOTALL)


# ---------------------------------------------------------------- expressions


TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||!|\(|\)|,)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_*][A-Za-z0-9_-]*)*))"
)


def tokens(text: str) -> list[tuple[str, str]]:
    found, at = [], 0
    while at < len(text):
        if not text[at:].strip():
            break
        match = TOKEN.match(text, at)
        if match is None:
            raise ValueError(f"cannot read the expression {text!r} at {text[at:]!r}")
        kind = match.lastgroup
        assert kind is not None
        found.append((kind, match.group(kind)))
        at = match.end()
    return found


def text_of(value: Any) -> str:
    """A value as an expression puts it into a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def number(value: Any) -> float:
    """A value as GitHub coerces it to compare it with a value of another type."""
    if value is None:
        return 0.0
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        if not value.strip():
            return 0.0
        try:
            return float(value)
        except ValueError:
            return float("nan")
    return float("nan")


def equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()  # GitHub compares strings ignoring case
    if type(a) is type(b) and not isinstance(a, dict | list):
        return a == b
    return number(a) == number(b)  # null == '' (a secret that is not set), '0' == 0


class Evaluator:
    """Evaluates one expression against contexts; `status` answers success() and friends."""

    def __init__(self, contexts: Mapping[str, Any], status: str = "success") -> None:
        self.contexts = contexts
        self.status = status

    def __call__(self, expression: str) -> Any:
        self.items = tokens(expression)
        self.at = 0
        value = self.either()
        if self.at != len(self.items):
            raise ValueError(f"unexpected {self.items[self.at]} in {expression!r}")
        return value

    def peek(self) -> str | None:
        return self.items[self.at][1] if self.at < len(self.items) else None

    def take(self) -> tuple[str, str]:
        item = self.items[self.at]
        self.at += 1
        return item

    def either(self) -> Any:
        value = self.both()
        while self.peek() == "||":
            self.take()
            other = self.both()
            value = value or other
        return value

    def both(self) -> Any:
        value = self.comparison()
        while self.peek() == "&&":
            self.take()
            other = self.comparison()
            value = value and other
        return value

    def comparison(self) -> Any:
        value = self.unary()
        while self.peek() in ("==", "!="):
            op = self.take()[1]
            other = self.unary()
            value = equal(value, other) if op == "==" else not equal(value, other)
        return value

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not self.unary()
        return self.atom()

    def atom(self) -> Any:
        kind, text = self.take()
        if text == "(":
            value = self.either()
            assert self.take()[1] == ")"
            return value
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "number":
            return float(text) if "." in text else int(text)
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if self.peek() == "(":
            self.take()
            args = []
            while self.peek() != ")":
                args.append(self.either())
                if self.peek() == ",":
                    self.take()
            self.take()
            return self.function(text, args)
        value: Any = self.contexts
        for part in text.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        return value

    def function(self, name: str, args: list[Any]) -> Any:
        if name == "always":
            return True
        if name == "success":
            return self.status == "success"
        if name == "failure":
            return self.status == "failure"
        if name == "cancelled":
            return False
        if name == "fromJSON":
            return json.loads(args[0])
        if name == "toJSON":
            return json.dumps(args[0])
        if name == "format":
            return re.sub(r"\{(\d+)\}", lambda m: text_of(args[int(m[1]) + 1]), args[0])
        raise ValueError(f"the function {name}() is not known here")


def interpolate(value: Any, evaluate: Callable[[str], Any]) -> Any:
    """`value` with every `${{ }}` in its strings evaluated (a whole-string one keeps its type)."""
    if isinstance(value, str):
        whole = EXPRESSION.fullmatch(value.strip())
        if whole:
            return evaluate(whole.group(1))
        return EXPRESSION.sub(lambda m: text_of(evaluate(m.group(1))), value)
    if isinstance(value, dict):
        return {k: interpolate(v, evaluate) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, evaluate) for v in value]
    return value


def condition(expression: Any, evaluate: Callable[[str], Any]) -> bool:
    if expression is None:
        return bool(evaluate("success()"))
    if isinstance(expression, bool):
        return expression
    text = str(expression).strip()
    whole = EXPRESSION.fullmatch(text)
    value = evaluate(whole.group(1) if whole else text)
    # A condition that names no status function is ANDed with success(), as on GitHub.
    if not re.search(r"\b(always|success|failure|cancelled)\(", text):
        value = value and evaluate("success()")
    return bool(value)


# ---------------------------------------------------------------- files the runner reads back


def read_command_file(path: Path) -> dict[str, str]:
    """NAME=value lines and NAME<<DELIMITER blocks, as in $GITHUB_OUTPUT and $GITHUB_ENV."""
    found: dict[str, str] = {}
    if not path.exists():
        return found
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            block = []
            while index < len(lines) and lines[index] != delimiter:
                block.append(lines[index])
                index += 1
            index += 1
            found[name] = "\n".join(block)
        elif "=" in line:
            name, value = line.split("=", 1)
            found[name] = value
    return found


# ---------------------------------------------------------------- results


@dataclass
class StepResult:
    name: str
    conclusion: str  # success, failure or skipped
    stdout: str = ""
    stderr: str = ""


@dataclass
class JobResult:
    name: str
    conclusion: str
    steps: list[StepResult] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return "\n".join(f"--- {s.name} ({s.conclusion})\n{s.stdout}{s.stderr}" for s in self.steps)

    def step(self, name: str) -> StepResult:
        (found,) = [s for s in self.steps if s.name == name]
        return found


@dataclass
class Run:
    id: int
    jobs: dict[str, JobResult]
    artifacts: dict[str, Path]

    def conclusion(self) -> str:
        failed = any(job.conclusion == "failure" for job in self.jobs.values())
        return "failure" if failed else "success"

    def log(self) -> str:
        return "\n".join(f"=== {name}\n{job.log()}" for name, job in self.jobs.items())


# ---------------------------------------------------------------- the runner


class Runner:
    """Runs workflows against bare repositories that stand for GitHub's."""

    def __init__(
        self,
        root: Path,
        *,
        repositories: Mapping[str, Path],
        env: Mapping[str, str],
        github: Mapping[str, Any],
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.repositories = {name.lower(): path for name, path in repositories.items()}
        self.env = dict(env)  # the machine's environment: PATH, HOME, git's configuration
        self.github = dict(github)
        self.secrets = dict(secrets or {})
        self.runs: dict[int, Run] = {}
        self.counter = itertools.count(101)

    # -------------------------------------------------------------- workflows and jobs

    def run(
        self,
        workflow: dict,
        *,
        inputs: Mapping[str, str] | None = None,
        event: Mapping[str, Any] | None = None,
        replace: Mapping[str, dict | None] | None = None,
    ) -> Run:
        """Run every job of `workflow`; `replace` swaps a job for another, or drops it (None)."""
        run_id = next(self.counter)
        run = Run(run_id, {}, {})
        self.runs[run_id] = run
        jobs = {
            name: job
            for name, job in {**workflow["jobs"], **(replace or {})}.items()
            if job is not None
        }
        github = {**self.github, "run_id": str(run_id), "event": dict(event or {})}
        inputs = dict(inputs or {})
        done: set[str] = set()
        while len(done) < len(jobs):
            ready = [
                name
                for name, job in jobs.items()
                if name not in done and set(needs_of(job)) <= done
            ]
            assert ready, f"the jobs' needs form a cycle: {set(jobs) - done}"
            for name in ready:
                job = jobs[name]
                needs = {
                    need: {
                        "result": run.jobs[need].conclusion,
                        "outputs": run.jobs[need].outputs,
                    }
                    for need in needs_of(job)
                }
                contexts = {
                    "github": github,
                    "inputs": inputs,
                    "secrets": self.secrets,
                    "needs": needs,
                    "vars": {},
                }
                run.jobs[name] = self.job(run, name, job, workflow, contexts)
                done.add(name)
        return run

    def job(self, run: Run, name: str, job: dict, workflow: dict, contexts: dict) -> JobResult:
        failed_need = any(n["result"] != "success" for n in contexts["needs"].values())
        status = "failure" if failed_need else "success"
        if not condition(job.get("if"), Evaluator(contexts, status)):
            return JobResult(name, "skipped")
        legs = matrix_legs(job, Evaluator(contexts))
        result = JobResult(name, "success")
        for leg in legs:
            leg_result = self.job_leg(run, name, job, workflow, {**contexts, "matrix": leg})
            result.steps.extend(leg_result.steps)
            result.outputs.update(leg_result.outputs)
            if leg_result.conclusion == "failure":
                result.conclusion = "failure"
        return result

    def job_leg(self, run: Run, name: str, job: dict, workflow: dict, contexts: dict) -> JobResult:
        leg = next(self.counter)
        base = self.root / f"job-{leg}-{name}"
        workspace, temp = base / "workspace", base / "temp"
        workspace.mkdir(parents=True)
        temp.mkdir()
        github_env, github_path = base / "github_env", base / "github_path"
        github_env.touch()
        github_path.touch()
        github = {**contexts["github"], "workspace": str(workspace)}
        contexts = {
            **contexts,
            "github": github,
            "runner": {"temp": str(temp), "os": "Linux"},
            "steps": {},
            "job": {},
        }
        result = JobResult(name, "success")
        workflow_env = interpolate(workflow.get("env") or {}, Evaluator(contexts))
        job_env = interpolate(job.get("env") or {}, Evaluator({**contexts, "env": workflow_env}))
        for index, step in enumerate(job.get("steps", [])):
            step_name = step.get("name") or step.get("uses") or f"step {index}"
            added_env = read_command_file(github_env)
            env_context = {**workflow_env, **job_env, **added_env}
            evaluate = Evaluator({**contexts, "env": env_context}, result.conclusion)
            if not condition(step.get("if"), evaluate):
                result.steps.append(StepResult(step_name, "skipped"))
                continue
            step_env = interpolate(step.get("env") or {}, evaluate)
            inputs = interpolate(step.get("with") or {}, evaluate)
            output = base / f"output-{index}"
            output.touch()
            runner_env = {
                **self.env,
                **added_env,
                **{k: text_of(v) for k, v in {**workflow_env, **job_env, **step_env}.items()},
                "CI": "true",
                "GITHUB_ACTIONS": "true",
                "GITHUB_WORKSPACE": str(workspace),
                "GITHUB_REPOSITORY": github.get("repository", ""),
                "GITHUB_SHA": github.get("sha", ""),
                "GITHUB_REF_NAME": github.get("ref_name", ""),
                "GITHUB_RUN_ID": str(run.id),
                "GITHUB_OUTPUT": str(output),
                "GITHUB_ENV": str(github_env),
                "GITHUB_PATH": str(github_path),
                "GITHUB_STEP_SUMMARY": str(base / "summary.md"),
                "RUNNER_TEMP": str(temp),
            }
            # $GITHUB_PATH: each line goes in front of PATH, the last one written first.
            added_path = [line for line in github_path.read_text().splitlines() if line]
            runner_env["PATH"] = os.pathsep.join([*reversed(added_path), self.env["PATH"]])
            if "run" in step:
                cwd = workspace / step.get("working-directory", ".")
                done = subprocess.run(
                    [*RUNNER_BASH, "-c", interpolate(step["run"], evaluate)],
                    cwd=cwd,
                    env=runner_env,
                    capture_output=True,
                    text=True,
                    timeout=180,
                )
                ok, stdout, stderr = done.returncode == 0, done.stdout, done.stderr
            else:
                ok, stdout, stderr = self.action(run, step["uses"], inputs, workspace, contexts)
            result.steps.append(
                StepResult(step_name, "success" if ok else "failure", stdout, stderr)
            )
            if "id" in step:
                contexts["steps"][step["id"]] = {
                    "outputs": read_command_file(output),
                    "conclusion": "success" if ok else "failure",
                }
            if not ok:
                result.conclusion = "failure"
        evaluate = Evaluator(contexts, result.conclusion)
        result.outputs = {
            key: text_of(interpolate(value, evaluate))
            for key, value in (job.get("outputs") or {}).items()
        }
        return result

    # -------------------------------------------------------------- the actions' stand-ins

    def action(
        self, run: Run, uses: str, inputs: dict, workspace: Path, contexts: dict
    ) -> tuple[bool, str, str]:
        action = uses.split("@", 1)[0]
        try:
            if action == "actions/checkout":
                return True, self.checkout(inputs, workspace, contexts), ""
            if action == "actions/setup-python":
                return True, "", ""
            if action == "actions/upload-artifact":
                return True, self.upload(run, inputs, workspace), ""
            if action == "actions/download-artifact":
                return True, self.download(run, inputs, workspace), ""
        except ActionFailed as exc:
            return False, "", f"::error::{exc}\n"
        raise AssertionError(f"no stand-in for the action {uses}")

    def checkout(self, inputs: dict, workspace: Path, contexts: dict) -> str:
        if inputs.get("persist-credentials") is not False:
            raise ActionFailed("this checkout would leave the token in .git/config")
        repository = text_of(inputs.get("repository")) or contexts["github"]["repository"]
        ref = text_of(inputs.get("ref")) or contexts["github"]["sha"]
        bare = self.repositories.get(repository.lower())
        if bare is None:
            raise ActionFailed(f"repository {repository} not found")
        target = workspace / text_of(inputs.get("path") or ".")
        if target.exists() and any(target.iterdir()):
            raise ActionFailed(f"{target} is not empty")
        git("clone", "-q", "--no-checkout", str(bare), str(target), cwd=workspace, env=self.env)
        found = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", f"{ref}^{{commit}}"],
            cwd=target,
            env=self.env,
            capture_output=True,
            text=True,
        )
        commit = found.stdout.strip() or f"origin/{ref}"  # a branch name, as a remote branch
        git("checkout", "-q", "--detach", commit, cwd=target, env=self.env)
        return f"checked out {repository}@{ref}\n"

    def upload(self, run: Run, inputs: dict, workspace: Path) -> str:
        name = text_of(inputs.get("name")) or "artifact"
        source = workspace / text_of(inputs["path"])
        if name in run.artifacts:
            raise ActionFailed(f"an artifact named {name} exists already")
        if not source.exists() or (source.is_dir() and not any(source.rglob("*"))):
            if inputs.get("if-no-files-found", "warn") == "error":
                raise ActionFailed(f"no files found at {source}")
            return f"no files for {name}\n"
        stored = self.root / f"artifact-{run.id}-{name}"
        if source.is_dir():
            shutil.copytree(source, stored, symlinks=True)
        else:
            stored.mkdir()
            shutil.copy2(source, stored / source.name)
        run.artifacts[name] = stored
        return f"uploaded {name}\n"

    def download(self, run: Run, inputs: dict, workspace: Path) -> str:
        source_run = self.runs[int(inputs["run-id"])] if inputs.get("run-id") else run
        target = workspace / text_of(inputs.get("path") or ".")
        if inputs.get("name"):
            names = [text_of(inputs["name"])]
            if names[0] not in source_run.artifacts:
                raise ActionFailed(f"Artifact not found for name: {names[0]}")
            merge = True
        else:
            pattern = text_of(inputs.get("pattern") or "*")
            names = sorted(n for n in source_run.artifacts if fnmatch.fnmatchcase(n, pattern))
            merge = inputs.get("merge-multiple") is True
        for name in names:
            shutil.copytree(
                source_run.artifacts[name],
                target if merge else target / name,
                symlinks=True,
                dirs_exist_ok=True,
            )
        return f"downloaded {', '.join(names) or 'nothing'}\n"


class ActionFailed(Exception):
    pass


def needs_of(job: dict) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def matrix_legs(job: dict, evaluate: Evaluator) -> list[dict]:
    matrix = interpolate((job.get("strategy") or {}).get("matrix"), evaluate)
    if not matrix:
        return [{}]
    include = matrix.pop("include", [])
    keys = list(matrix)
    products = itertools.product(*(matrix[key] for key in keys))
    legs = [dict(zip(keys, values, strict=True)) for values in products] if keys else []
    return legs + list(include)
