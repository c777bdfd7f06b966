#!/usr/bin/env bash
# Run every fuzz target of rspolicy for a bounded time: fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS is per target (default 60); TARGETs are sidecars, rpc, screen_tiff (default: all).
# The corpus of each target grows in fuzz/corpus/<target>/ (seeded on first use from rspolicy's
# sample writers); crash, timeout and out-of-memory inputs land in fuzz/crashes/<target>/ with the
# libFuzzer log beside them. libFuzzer stops at the first finding, so a target is restarted on the
# time it has left (at most 20 times). Exit status 1 when any target found something.
set -uo pipefail

seconds="${1:-60}"
shift || true
targets=("$@")
[ "${#targets[@]}" -eq 0 ] && targets=(sidecars rpc screen_tiff)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
found=0

for target in "${targets[@]}"; do
    script="$here/fuzz_${target}.py"
    corpus="$here/corpus/$target"
    crashes="$here/crashes/$target"
    if [ ! -f "$script" ]; then
        echo "run.sh: no fuzz target named '$target' ($script)" >&2
        exit 2
    fi
    mkdir -p "$corpus" "$crashes"
    if [ -z "$(ls -A "$corpus")" ]; then
        "$python" "$script" --seed "$corpus" >>"$crashes/fuzz.log" 2>&1 || exit 2
    fi
    deadline=$(( $(date +%s) + seconds ))
    for attempt in $(seq 1 20); do
        left=$(( deadline - $(date +%s) ))
        [ "$left" -le 0 ] && break
        if "$python" "$script" "$corpus" -max_total_time="$left" -timeout=30 -rss_limit_mb=4096 \
                -artifact_prefix="$crashes/" -print_final_stats=1 >>"$crashes/fuzz.log" 2>&1; then
            break
        fi
        found=1
        echo "run.sh: $target: finding on run $attempt (see $crashes/)" >&2
    done
    echo "run.sh: $target: $(grep -c . <(ls "$crashes" | grep -v '^fuzz.log$')) finding(s) in $crashes," \
         "$(ls "$corpus" | wc -l) corpus inputs" >&2
done
exit "$found"
