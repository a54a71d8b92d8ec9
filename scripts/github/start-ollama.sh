#!/usr/bin/env bash
# Wait for Ollama (starting it first with --image), pull the models the `ollama` setup records
# with, and export OLLAMA_URL to the later steps of a GitHub Actions job.
#
# The models are the ones harness/setups.py names for the `ollama` setup, plus, with --vision,
# the model the vision suite records with. A test in tests/unit/test_start_ollama.py keeps the
# two lists in step.
set -euo pipefail

readonly PROG="start-ollama"
readonly TEXT_MODEL="llama3.2:3b"
readonly EMBEDDING_MODEL="all-minilm:l6-v2"
# Small enough for a hosted runner's CPU and disk (about 3 GB), and follows instructions well.
readonly VISION_MODEL="qwen2.5vl:3b"

usage() {
    cat <<'EOF'
Usage: scripts/github/start-ollama.sh [--image IMAGE] [--vision]

Wait until Ollama answers at $OLLAMA_URL (default http://localhost:11434), pull the models of
the `ollama` setup, and append OLLAMA_URL to $GITHUB_ENV when it is set.

Options:
  --image IMAGE   first start Ollama from this container image with docker (port 11434)
  --vision        also pull the vision suite's model
  -h, --help      show this help and exit
EOF
}

die() {
    echo "::error::$PROG: $*"
    exit 1
}

image=""
vision=false
while [[ $# -gt 0 ]]; do
    case "$1" in
        --image)
            [[ $# -ge 2 && -n "$2" ]] || die "--image needs a value"
            image="$2"
            shift
            ;;
        --vision) vision=true ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown option '$1'"
            ;;
    esac
    shift
done

url="${OLLAMA_URL:-http://localhost:11434}"
url="${url%/}"
attempts="${OLLAMA_WAIT_ATTEMPTS:-60}"
interval="${OLLAMA_WAIT_INTERVAL:-2}"

if [[ -n "$image" ]]; then
    echo "Starting $image"
    docker run --detach --name ollama --publish 127.0.0.1:11434:11434 "$image" >/dev/null ||
        die "could not start the Ollama container from $image"
fi

up=false
for ((attempt = 1; attempt <= attempts; attempt++)); do
    if curl -sf "$url/api/tags" >/dev/null; then
        up=true
        break
    fi
    sleep "$interval"
done
$up || die "Ollama did not answer at $url/api/tags after $attempts attempts"

models=("$TEXT_MODEL" "$EMBEDDING_MODEL")
if $vision; then
    models+=("$VISION_MODEL")
fi
for model in "${models[@]}"; do
    echo "Pulling $model"
    curl -sfS "$url/api/pull" -d "{\"model\": \"$model\", \"stream\": false}" ||
        die "pulling $model from $url failed"
    echo
done

if [[ -n "${GITHUB_ENV:-}" ]]; then
    echo "OLLAMA_URL=$url" >>"$GITHUB_ENV"
fi
echo "Ollama is ready at $url with: ${models[*]}"
