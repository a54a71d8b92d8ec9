#!/usr/bin/env bash
# Record the tests listed in MISSES_FILE (written by find-missing-recordings.sh) with the
# `ollama` setup, in record-if-missing mode: recordings that exist are replayed, only the
# missing ones are asked of Ollama and written under recordings/.
#
# Starts Ollama with scripts/github/start-ollama.sh first (from --ollama-image when given),
# with the vision model when a listed test belongs to the vision suite.
set -euo pipefail

readonly PROG="record-missing-recordings"
# The root of the vision suite ([tool.stack-harness.suites] in pyproject.toml).
readonly VISION_ROOT="tests/integration/vision/"

usage() {
    cat <<'EOF'
Usage: scripts/github/record-missing-recordings.sh [--ollama-image IMAGE] MISSES_FILE

Record the tests whose node ids MISSES_FILE lists (one per line) against Ollama with
LLAMA_STACK_TEST_INFERENCE_MODE=record-if-missing and --setup ollama.
EOF
}

fail() {
    echo "::error::$PROG: $*"
    exit 1
}

image=""
misses_file=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --ollama-image)
            [[ $# -ge 2 && -n "$2" ]] || fail "--ollama-image needs a value"
            image="$2"
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        -*)
            usage >&2
            exit 2
            ;;
        *)
            [[ -z "$misses_file" ]] || fail "only one MISSES_FILE, please"
            misses_file="$1"
            ;;
    esac
    shift
done
[[ -n "$misses_file" ]] || {
    usage >&2
    exit 2
}
[[ -f "$misses_file" ]] || fail "$misses_file does not exist"

ids=()
vision=false
while IFS= read -r id || [[ -n "$id" ]]; do
    [[ -n "$id" ]] || continue
    # A node id under tests/ can never be taken for a pytest option.
    [[ "$id" == tests/* ]] || fail "$misses_file holds '$id', which is not a node id under tests/"
    ids+=("$id")
    if [[ "$id" == "$VISION_ROOT"* ]]; then
        vision=true
    fi
done <"$misses_file"
if [[ ${#ids[@]} -eq 0 ]]; then
    echo "No test missed a recording; there is nothing to record."
    exit 0
fi

start=("$(dirname "$0")/start-ollama.sh")
if [[ -n "$image" ]]; then
    start+=(--image "$image")
fi
if $vision; then
    start+=(--vision)
fi
"${start[@]}"

echo "Recording ${#ids[@]} test(s) with the ollama setup"
export OLLAMA_URL="${OLLAMA_URL:-http://localhost:11434}"
LLAMA_STACK_TEST_INFERENCE_MODE=record-if-missing \
    pytest "${ids[@]}" --setup ollama --stack-config=server:starter
