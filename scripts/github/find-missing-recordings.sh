#!/usr/bin/env bash
# Replay the integration tests and list the ones that missed a recording.
#
# Runs `pytest --misses-file` in replay mode; the plugin writes the node id of every test that
# hit a replay miss to MISSES_FILE, one per line. Tests that fail for any other reason are the
# integration workflow's business, not a reason to record: they are reported and left alone.
# Writes `count=N` to $GITHUB_OUTPUT when it is set.
#
# Exit status: 0 when the list is trustworthy (possibly empty), 1 when it is not (pytest could
# not run the tests, or did not write the list), 2 on a usage error.
set -euo pipefail

readonly PROG="find-missing-recordings"
readonly TESTS="tests/integration"

usage() {
    cat <<'EOF'
Usage: scripts/github/find-missing-recordings.sh MISSES_FILE [PYTEST_ARGS...]

Replay tests/integration against server:starter and write the node ids of the tests that
missed a recording to MISSES_FILE (one per line). Extra arguments go to pytest.
EOF
}

fail() {
    echo "::error::$PROG: $*"
    exit 1
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
misses_file="$1"
shift

rm -f -- "$misses_file"
mkdir -p -- "$(dirname -- "$misses_file")"
status=0
LLAMA_STACK_TEST_INFERENCE_MODE=replay \
    pytest --stack-config=server:starter --misses-file "$misses_file" "$@" "$TESTS" || status=$?

case "$status" in
    0 | 1) ;;
    5) fail "pytest collected no test under $TESTS" ;;
    *) fail "pytest could not run the tests (exit status $status); see its output above" ;;
esac
[[ -f "$misses_file" ]] ||
    fail "pytest did not write $misses_file; does this checkout's plugin know --misses-file?"

# One node id a line, each under tests/ (so never an option), each once, in the order pytest ran.
ids=()
declare -A seen=()
while IFS= read -r id || [[ -n "$id" ]]; do
    id="${id%$'\r'}"
    [[ -n "$id" ]] || continue
    [[ "$id" == tests/* ]] || fail "$misses_file holds '$id', which is not a node id under tests/"
    if [[ -z "${seen[$id]:-}" ]]; then
        seen[$id]=1
        ids+=("$id")
    fi
done <"$misses_file"
if [[ ${#ids[@]} -gt 0 ]]; then
    printf '%s\n' "${ids[@]}" >"$misses_file"
else
    : >"$misses_file"
fi

count=${#ids[@]}
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
    echo "count=$count" >>"$GITHUB_OUTPUT"
fi
if [[ $count -eq 0 && $status -eq 1 ]]; then
    echo "::warning::Some tests failed, but none for a missing recording: there is nothing to record."
elif [[ $count -eq 0 ]]; then
    echo "Every test found its recordings; there is nothing to record."
else
    echo "$count test(s) missed a recording:"
    printf '  %s\n' "${ids[@]}"
fi
