#!/usr/bin/env bash
# Copy the recordings a run added or changed (new or modified .json files under recordings/,
# as git sees them) into OUT_DIR, beside a manifest.json naming the branch they belong to:
#
#   {"files": ["recordings/..."], "head_branch": "...", "head_repo": "owner/repo",
#    "head_sha": "<40 hex>", "pr": 42}
#
# "pr" is there for a pull request's run and left out for a dispatched re-record (PR_NUMBER
# empty). With --misses FILE, FILE (the node ids of the tests that missed in replay, one per
# line, as `pytest --misses-file` writes them) is carried too, as OUT_DIR/misses.txt.
#
# OUT_DIR is uploaded as an artifact; commit-recordings-artifact.py validates it in a job that
# may push and commits the files to the branch. The manifest is written even when nothing
# changed, so that job always finds an artifact to read.
#
# Environment: PR_HEAD_REPO, PR_HEAD_BRANCH, PR_HEAD_SHA (the branch recorded on and its commit,
# which must be the commit checked out here) and PR_NUMBER (a pull request's; empty otherwise).
set -euo pipefail

readonly PROG="collect-recordings-artifact"

fail() {
    echo "::error::$PROG: $*"
    exit 1
}

usage() {
    echo "Usage: scripts/github/collect-recordings-artifact.sh [--misses FILE] OUT_DIR"
    echo "(with PR_HEAD_REPO, PR_HEAD_BRANCH, PR_HEAD_SHA and, for a pull request, PR_NUMBER in"
    echo "the environment)"
}

misses=""
out=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --misses)
            [[ $# -ge 2 && -n "$2" ]] || fail "--misses needs a file"
            misses="$2"
            shift
            ;;
        -*)
            usage >&2
            exit 2
            ;;
        *)
            [[ -z "$out" ]] || fail "only one OUT_DIR, please"
            out="$1"
            ;;
    esac
    shift
done
if [[ -z "$out" ]]; then
    usage >&2
    exit 2
fi
if [[ -n "$misses" ]]; then
    [[ -f "$misses" ]] || fail "the misses file $misses does not exist"
    misses="$(cd "$(dirname -- "$misses")" && pwd)/$(basename -- "$misses")"
fi
mkdir -p -- "$(dirname -- "$out")"
out="$(cd "$(dirname -- "$out")" && pwd)/$(basename -- "$out")"

for name in PR_HEAD_REPO PR_HEAD_BRANCH PR_HEAD_SHA; do
    [[ -n "${!name:-}" ]] || fail "$name is not set"
done
if [[ -n "${PR_NUMBER:-}" && ! "$PR_NUMBER" =~ ^[1-9][0-9]*$ ]]; then
    fail "PR_NUMBER '$PR_NUMBER' is not a pull request number"
fi

top="$(git rev-parse --show-toplevel)" || fail "not inside a git repository"
cd "$top"
head="$(git rev-parse HEAD)"
[[ "$head" == "$PR_HEAD_SHA" ]] ||
    fail "the checkout is at $head, not at the recorded branch's head $PR_HEAD_SHA; the recordings would not match that branch"

if [[ -e "$out" ]] && [[ -n "$(ls -A -- "$out")" ]]; then
    fail "$out exists and is not empty"
fi
mkdir -p -- "$out"

# Untracked (but not ignored) and modified files; a deleted file is not ours to delete.
files=()
while IFS= read -r -d '' path; do
    if [[ "$path" == *.json && -f "$path" && ! -L "$path" ]]; then
        files+=("$path")
    else
        echo "::warning::$PROG: leaving out $path (only .json recording files are carried)"
    fi
done < <(git ls-files -z --others --modified --exclude-standard -- recordings | sort -zu)

for path in "${files[@]}"; do
    mkdir -p -- "$out/$(dirname -- "$path")"
    cp -- "$path" "$out/$path"
done
if [[ -n "$misses" ]]; then
    cp -- "$misses" "$out/misses.txt"
fi

python3 -I - "$out/manifest.json" "${files[@]}" <<'EOF'
import json
import os
import sys

manifest, *files = sys.argv[1:]
record = {
    "head_repo": os.environ["PR_HEAD_REPO"],
    "head_branch": os.environ["PR_HEAD_BRANCH"],
    "head_sha": os.environ["PR_HEAD_SHA"],
    "files": files,
}
if os.environ.get("PR_NUMBER"):
    record["pr"] = int(os.environ["PR_NUMBER"])
with open(manifest, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=2, sort_keys=True)
    f.write("\n")
EOF

if [[ ${#files[@]} -eq 0 ]]; then
    echo "No recording was added or changed; the artifact holds no recording."
else
    echo "Collected ${#files[@]} recording(s) for $PR_HEAD_REPO@$PR_HEAD_BRANCH${PR_NUMBER:+ (#$PR_NUMBER)}:"
    printf '  %s\n' "${files[@]}"
fi
