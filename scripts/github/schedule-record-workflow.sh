#!/usr/bin/env bash
# Schedule the "record integration tests" GitHub Actions workflow for the current branch.
#
# Re-recording needs a real provider (Ollama or vLLM) serving specific models. Running the
# recording in GitHub Actions means nobody has to reproduce that setup locally: this script
# works out which branch, pull request and (possibly forked) repository the recordings belong
# to, dispatches .github/workflows/record-integration-tests.yml with matching inputs, and prints
# the URL of the run. The workflow commits the new recordings back to the branch.
set -euo pipefail

readonly WORKFLOW="record-integration-tests.yml"
readonly VALID_PROVIDERS="ollama vllm"
readonly PROG="schedule-record-workflow"

usage() {
    cat <<'EOF'
Usage: scripts/github/schedule-record-workflow.sh [OPTIONS]

Dispatch the integration-test recording workflow on GitHub Actions for your branch; the
workflow records with a real provider and commits the recordings back to the branch.

Options:
  --test-subdirs DIRS     comma-separated subdirectories of tests/integration to record
                          (default: all of them)
  --test-suite SUITE      test suite to record, a name from [tool.stack-harness.suites] in
                          pyproject.toml such as base or vision (default: every suite)
  --test-provider NAME    provider to record against: ollama or vllm (default: ollama)
  --branch NAME           branch to record on (default: the current branch)
  -h, --help              show this help and exit

Examples:
  # Record tests for specific test subdirectories
  ./scripts/github/schedule-record-workflow.sh --test-subdirs "agents,inference"

  # Record with vision tests enabled
  ./scripts/github/schedule-record-workflow.sh --test-suite vision

  # Record with specific provider
  ./scripts/github/schedule-record-workflow.sh --test-subdirs "agents" --test-provider vllm

Prerequisites: the GitHub CLI (gh) installed and logged in (gh auth login), jq installed, and
the branch pushed to its remote.
EOF
}

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

usage_error() {
    echo "$PROG: error: $*" >&2
    echo >&2
    usage >&2
    exit 2
}

# "owner/repo" from a GitHub remote URL (https, ssh or scp-like form), or nothing.
repo_from_url() {
    local url="${1%/}"
    url="${url%.git}"
    if [[ "$url" =~ [:/]([^/:]+)/([^/:]+)$ ]]; then
        echo "${BASH_REMATCH[1]}/${BASH_REMATCH[2]}"
    fi
}

# "owner/repo" of a git remote; fails with a message naming the remote and its URL.
repo_of_remote() {
    local remote="$1" url repo
    url="$(git config --get "remote.$remote.url")" || die "git remote '$remote' does not exist"
    repo="$(repo_from_url "$url")"
    [[ -n "$repo" ]] || die "git remote '$remote' has URL '$url', which is not a GitHub repository URL"
    echo "$repo"
}

# Read one value from JSON on stdin; jq prints "null" for a missing key, turned into "".
json_get() {
    local value
    value="$(jq -r "$1")"
    [[ "$value" == "null" ]] && value=""
    echo "$value"
}

# The suites a pyproject.toml declares under [tool.stack-harness.suites] (the table's keys or its
# [tool.stack-harness.suites.NAME] sub-tables), one per line; nothing when it declares none.
# Bash only, so the check needs no TOML parser on the user's machine.
declared_suites() {
    local file="$1" line in_table=false
    # Regular expressions live in variables: quotes inside [[ =~ ]] would make them literal text.
    local table='^[[:space:]]*\[tool\."?stack-harness"?\.suites'
    local sub_table="$table"'\."?([A-Za-z0-9_-]+)"?\][[:space:]]*(#.*)?$'
    local key='^[[:space:]]*"?([A-Za-z0-9_-]+)"?[[:space:]]*='
    [[ -f "$file" ]] || return 0
    while IFS= read -r line || [[ -n "$line" ]]; do
        if [[ "$line" =~ $sub_table ]]; then
            echo "${BASH_REMATCH[1]}"
            in_table=false
        elif [[ "$line" =~ $table\][[:space:]]*(#.*)?$ ]]; then
            in_table=true
        elif [[ "$line" =~ ^[[:space:]]*\[ ]]; then
            in_table=false
        elif $in_table && [[ "$line" =~ $key ]]; then
            echo "${BASH_REMATCH[1]}"
        fi
    done <"$file"
}

# ---------------------------------------------------------------- arguments
test_subdirs=""
test_suite=""
test_provider="ollama"
branch=""

while [[ $# -gt 0 ]]; do
    flag="$1"
    value=""
    has_inline_value=false
    if [[ "$flag" == --*=* ]]; then
        value="${flag#*=}"
        flag="${flag%%=*}"
        has_inline_value=true
    fi
    case "$flag" in
        -h | --help)
            usage
            exit 0
            ;;
        --test-subdirs | --test-suite | --test-provider | --branch)
            if ! $has_inline_value; then
                [[ $# -ge 2 ]] || usage_error "$flag needs a value"
                value="$2"
                shift
            fi
            case "$flag" in
                --test-subdirs) test_subdirs="$value" ;;
                --test-suite) test_suite="$value" ;;
                --test-provider) test_provider="$value" ;;
                --branch) branch="$value" ;;
            esac
            ;;
        *)
            usage_error "unknown option '$1'"
            ;;
    esac
    shift
done

if [[ " $VALID_PROVIDERS " != *" $test_provider "* ]]; then
    usage_error "--test-provider '$test_provider' is not supported; use one of: ${VALID_PROVIDERS// /, }"
fi
if [[ -n "$test_suite" && ! "$test_suite" =~ ^[A-Za-z0-9][A-Za-z0-9_-]*$ ]]; then
    usage_error "--test-suite '$test_suite' is not a suite name; suites are declared in pyproject.toml under [tool.stack-harness.suites]"
fi
if [[ -n "$branch" ]] && ! git check-ref-format --branch "$branch" >/dev/null 2>&1; then
    usage_error "--branch '$branch' is not a valid branch name"
fi

# ---------------------------------------------------------------- prerequisites
command -v gh >/dev/null 2>&1 ||
    die "the GitHub CLI 'gh' is not installed; install it (https://cli.github.com, e.g. 'brew install gh') and run 'gh auth login'"
command -v jq >/dev/null 2>&1 ||
    die "'jq' is not installed; install it (https://jqlang.github.io/jq, e.g. 'brew install jq')"
if ! auth_output="$(gh auth status 2>&1)"; then
    echo "$auth_output" >&2
    die "the GitHub CLI is not logged in; run 'gh auth login'"
fi
git rev-parse --git-dir >/dev/null 2>&1 || die "not inside a git repository; run this from your clone"

# An unknown suite would only fail on the runner after Ollama has pulled its models: check it
# against the suites this checkout declares (when it declares any).
if [[ -n "$test_suite" ]]; then
    top="$(git rev-parse --show-toplevel)"
    suites="$(declared_suites "$top/pyproject.toml")"
    if [[ -n "$suites" && $'\n'"$suites"$'\n' != *$'\n'"$test_suite"$'\n'* ]]; then
        usage_error "--test-suite '$test_suite' is not a suite of this project; pyproject.toml declares: ${suites//$'\n'/, }"
    fi
fi

# ---------------------------------------------------------------- branch and remotes
if [[ -z "$branch" ]]; then
    branch="$(git rev-parse --abbrev-ref HEAD)"
    [[ "$branch" != "HEAD" ]] ||
        die "HEAD is detached (not on a branch); check out your branch or pass --branch NAME"
fi

# The repository the workflow lives in: the 'upstream' remote of a fork's clone, else 'origin'.
if git config --get remote.upstream.url >/dev/null; then
    upstream_remote="upstream"
else
    upstream_remote="origin"
fi
upstream_repo="$(repo_of_remote "$upstream_remote")"

if git rev-parse --verify --quiet "refs/heads/$branch" >/dev/null; then
    push_remote="$(git config --get "branch.$branch.remote" || true)"
    merge_ref="$(git config --get "branch.$branch.merge" || true)"
    if [[ -z "$push_remote" || -z "$merge_ref" || "$push_remote" == "." ]]; then
        die "branch '$branch' has no upstream branch, so it has not been pushed; push it first: git push -u origin $branch"
    fi
    local_head="$(git rev-parse "refs/heads/$branch")"
else
    # --branch naming a branch that only exists on the remote.
    push_remote="origin"
    merge_ref="refs/heads/$branch"
    local_head=""
fi

remote_line="$(git ls-remote --heads "$push_remote" "$merge_ref")" ||
    die "could not reach git remote '$push_remote' to check that '$branch' is pushed"
remote_head="${remote_line%%[[:space:]]*}"
if [[ -z "$remote_head" ]]; then
    die "branch '$branch' is not on remote '$push_remote' (${merge_ref#refs/heads/} not found); push it first: git push -u $push_remote $branch"
fi
if [[ -n "$local_head" && "$local_head" != "$remote_head" ]]; then
    die "branch '$branch' (${local_head:0:12}) differs from $push_remote/${merge_ref#refs/heads/} (${remote_head:0:12}); the workflow records what is on the remote, so push first: git push $push_remote $branch"
fi
head_repo="$(repo_of_remote "$push_remote")"
remote_branch="${merge_ref#refs/heads/}"

echo "Branch:      $branch (pushed to $push_remote as $remote_branch, $head_repo)"
echo "Workflow in: $upstream_repo"

# ---------------------------------------------------------------- pull request and fork
pr_selector="$remote_branch"
if [[ "${head_repo,,}" != "${upstream_repo,,}" ]]; then
    pr_selector="${head_repo%%/*}:$remote_branch"
fi
fields="number,headRepository,headRepositoryOwner,isCrossRepository,url"
if pr_json="$(gh pr view "$pr_selector" --repo "$upstream_repo" --json "$fields" 2>/dev/null)"; then
    pr_number="$(json_get '.number' <<<"$pr_json")"
    pr_url="$(json_get '.url' <<<"$pr_json")"
    cross_repo="$(json_get '.isCrossRepository' <<<"$pr_json")"
    pr_owner="$(json_get '.headRepositoryOwner.login' <<<"$pr_json")"
    pr_repo_name="$(json_get '.headRepository.name' <<<"$pr_json")"
    echo "Pull request: #$pr_number $pr_url"
    if [[ -n "$pr_owner" && -n "$pr_repo_name" ]]; then
        head_repo="$pr_owner/$pr_repo_name"
    fi
    if [[ "$cross_repo" == "true" ]]; then
        is_fork=true
    else
        is_fork=false
    fi
else
    echo "Pull request: none for '$pr_selector' in $upstream_repo (fine: the workflow runs on the branch)"
    if [[ "${head_repo,,}" != "${upstream_repo,,}" ]]; then
        is_fork=true
    else
        is_fork=false
    fi
fi

# A fork's branch does not exist in the upstream repository, so the workflow runs from the
# upstream default branch and checks the fork's branch out itself.
if $is_fork; then
    pr_head_repo="$head_repo"
    repo_json="$(gh repo view "$upstream_repo" --json defaultBranchRef)" ||
        die "could not read the default branch of $upstream_repo with 'gh repo view'"
    dispatch_ref="$(json_get '.defaultBranchRef.name' <<<"$repo_json")"
    [[ -n "$dispatch_ref" ]] || die "'gh repo view $upstream_repo' did not report a default branch"
    echo "Fork:        yes, recordings will be pushed to $pr_head_repo"
else
    pr_head_repo=""
    dispatch_ref="$remote_branch"
fi

# ---------------------------------------------------------------- dispatch
run_list=(gh run list --repo "$upstream_repo" --workflow="$WORKFLOW" --branch "$dispatch_ref"
    --event workflow_dispatch --limit 1 --json "databaseId,url")
previous_run_id=""
if previous_json="$("${run_list[@]}" 2>/dev/null)"; then
    previous_run_id="$(json_get '.[0].databaseId' <<<"$previous_json")"
fi

echo "Dispatching $WORKFLOW on $upstream_repo at $dispatch_ref (provider: $test_provider," \
    "subdirs: ${test_subdirs:-all}, suite: ${test_suite:-all})"
gh workflow run "$WORKFLOW" --repo "$upstream_repo" --ref "$dispatch_ref" \
    -f "test-subdirs=$test_subdirs" \
    -f "test-suite=$test_suite" \
    -f "test-provider=$test_provider" \
    -f "pr-head-repo=$pr_head_repo" \
    -f "branch=$remote_branch" ||
    die "'gh workflow run' failed; check that $WORKFLOW exists on $upstream_repo at $dispatch_ref and that you may run workflows there"

# The dispatch API returns no run id: wait for a run newer than the one seen before.
attempts="${SCHEDULE_RECORD_POLL_ATTEMPTS:-10}"
interval="${SCHEDULE_RECORD_POLL_INTERVAL:-3}"
for ((attempt = 1; attempt <= attempts; attempt++)); do
    if run_json="$("${run_list[@]}" 2>/dev/null)"; then
        run_id="$(json_get '.[0].databaseId' <<<"$run_json")"
        if [[ -n "$run_id" && "$run_id" != "$previous_run_id" ]]; then
            echo "Workflow run: $(json_get '.[0].url' <<<"$run_json")"
            echo "Follow it with: gh run watch $run_id --repo $upstream_repo"
            exit 0
        fi
    fi
    sleep "$interval"
done
echo "The workflow was dispatched, but its run has not shown up yet; find it at:"
echo "https://github.com/$upstream_repo/actions/workflows/$WORKFLOW"
