#!/usr/bin/env bash
# Gather the misses of every replay shard into one list.
#
# A CI matrix replays the suite in several jobs (one per suite); each writes the node ids of the
# tests that missed a recording to <shard>.txt (find-missing-recordings.sh) and uploads it. The
# job that records downloads all of them into SHARDS_DIR and runs this: MISSES_FILE gets every
# shard's node ids, each once, shard by shard in name order. Writes `count=N` to $GITHUB_OUTPUT
# when it is set.
#
# Exit status: 0 when the list is complete, 1 when it cannot be trusted (no shard's file found, a
# line that is no node id under tests/), 2 on a usage error.
set -euo pipefail

readonly PROG="gather-misses"

usage() {
    cat <<'EOF'
Usage: scripts/github/gather-misses.sh SHARDS_DIR MISSES_FILE

Concatenate the misses files SHARDS_DIR/*.txt (one node id per line, one file per replay shard)
into MISSES_FILE, each node id once.
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
[[ $# -eq 2 ]] || {
    usage >&2
    exit 2
}
shards_dir="$1"
misses_file="$2"

[[ -d "$shards_dir" ]] || fail "$shards_dir does not exist; did the replay shards upload their misses?"
shards=()
while IFS= read -r -d '' shard; do
    shards+=("$shard")
done < <(find "$shards_dir" -maxdepth 1 -type f -name '*.txt' -print0 | sort -z)
[[ ${#shards[@]} -gt 0 ]] || fail "$shards_dir holds no shard's misses file (*.txt)"

ids=()
declare -A seen=()
for shard in "${shards[@]}"; do
    name="${shard##*/}"
    while IFS= read -r id || [[ -n "$id" ]]; do
        id="${id%$'\r'}"
        [[ -n "$id" ]] || continue
        [[ "$id" == tests/* ]] || fail "$name holds '$id', which is not a node id under tests/"
        if [[ -z "${seen[$id]:-}" ]]; then
            seen[$id]=1
            ids+=("$id")
        fi
    done <"$shard"
done

if [[ ${#ids[@]} -gt 0 ]]; then
    printf '%s\n' "${ids[@]}" >"$misses_file"
else
    : >"$misses_file"
fi
count=${#ids[@]}
if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
    echo "count=$count" >>"$GITHUB_OUTPUT"
fi
echo "$count test(s) missed a recording in ${#shards[@]} shard(s):"
for shard in "${shards[@]}"; do
    name="${shard##*/}"
    echo "  ${name%.txt}: $(grep -c . "$shard" || true)"
done
