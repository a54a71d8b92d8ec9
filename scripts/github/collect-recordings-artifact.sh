#!/usr/bin/env bash
# Copy the recordings a run added or changed (new or modified .json files under recordings/,
# as git sees them) into OUT_DIR, beside a manifest.json naming the pull request they belong to:
#
#   {"files": ["recordings/..."], "head_branch": "...", "head_repo": "owner/repo",
#    "head_sha": "<40 hex>", "pr": 42}
#
# OUT_DIR is uploaded as an artifact; commit-recordings-artifact.py validates it in a trusted
# workflow and commits the files to the pull request's branch. The manifest is written even
# when nothing changed, so that workflow always finds an artifact to read.
#
# Environment: PR_NUMBER, PR_HEAD_REPO, PR_HEAD_BRANCH, PR_HEAD_SHA (the pull request's head,
# which must be the commit checked out here).
set -euo pipefail

readonly PROG="collect-recordings-artifact"

fail() {
    echo "::error::$PROG: $*"
    exit 1
}

usage() {
    echo "Usage: scripts/github/collect-recordings-artifact.sh OUT_DIR"
    echo "(with PR_NUMBER, PR_HEAD_REPO, PR_HEAD_BRANCH and PR_HEAD_SHA in the environment)"
}

case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
    "" | -*)
        usage >&2
        exit 2
        ;;
esac
out="$1"

for name in PR_NUMBER PR_HEAD_REPO PR_HEAD_BRANCH PR_HEAD_SHA; do
    [[ -n "${!name:-}" ]] || fail "$name is not set"
done
[[ "$PR_NUMBER" =~ ^[1-9][0-9]*$ ]] || fail "PR_NUMBER '$PR_NUMBER' is not a pull request number"

top="$(git rev-parse --show-toplevel)" || fail "not inside a git repository"
cd "$top"
head="$(git rev-parse HEAD)"
[[ "$head" == "$PR_HEAD_SHA" ]] ||
    fail "the checkout is at $head, not at the pull request's head $PR_HEAD_SHA; the recordings would not match that branch"

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

python3 -I - "$out/manifest.json" "${files[@]}" <<'EOF'
import json
import os
import sys

manifest, *files = sys.argv[1:]
record = {
    "pr": int(os.environ["PR_NUMBER"]),
    "head_repo": os.environ["PR_HEAD_REPO"],
    "head_branch": os.environ["PR_HEAD_BRANCH"],
    "head_sha": os.environ["PR_HEAD_SHA"],
    "files": files,
}
with open(manifest, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=2, sort_keys=True)
    f.write("\n")
EOF

if [[ ${#files[@]} -eq 0 ]]; then
    echo "No recording was added or changed; the artifact holds only the manifest."
else
    echo "Collected ${#files[@]} recording(s) for #$PR_NUMBER ($PR_HEAD_REPO@$PR_HEAD_BRANCH):"
    printf '  %s\n' "${files[@]}"
fi
