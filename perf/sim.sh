#!/usr/bin/env bash
# Seeded whole-cluster simulation at scale: runs seeds A..B of the simulation in
# src/proto/node/tests/chaos.rs (a master and 50 workers on a faulty network: frame drops and
# duplications, latencies, disconnects, partitions, worker and master restarts, clock jumps, a slow
# pool), split over J parallel test processes, and prints the failing seeds (each with the command
# that replays it) and a summary per process.
#
#   perf/sim.sh                    # seeds 0..2000, one process per core
#   perf/sim.sh 0 500 --jobs 1     # seeds 0..500 in one process
#
# Options:
#   A B          first seed and the seed after the last (default 0 2000)
#   --jobs J     parallel processes (default: the number of cores)
#   --workers W  workers per run (default 50)
#
# Exits non-zero if any seed failed.
set -euo pipefail
cd "$(dirname "$0")/.."

first=0
end=2000
jobs=$(nproc)
workers=50
positional=()
while [ $# -gt 0 ]; do
    case "$1" in
        --jobs) jobs="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) positional+=("$1"); shift ;;
    esac
done
[ ${#positional[@]} -ge 1 ] && first="${positional[0]}"
[ ${#positional[@]} -ge 2 ] && end="${positional[1]}"
[ "$end" -gt "$first" ] || { echo "perf/sim.sh: empty seed range $first..$end" >&2; exit 2; }

cargo test --lib --no-run --quiet 2>&1 | tail -3 >&2 || true
started=$(date +%s)
span=$(( (end - first + jobs - 1) / jobs ))
# SIM_LOGS=DIR keeps each process's output there (progress lines every 100 seeds).
logs="${SIM_LOGS:-$(mktemp -d)}"
mkdir -p "$logs"
[ -n "${SIM_LOGS:-}" ] || trap 'rm -rf "$logs"' EXIT
pids=()
for ((j = 0; j < jobs; j++)); do
    a=$(( first + j * span ))
    b=$(( a + span < end ? a + span : end ))
    [ "$a" -lt "$b" ] || continue
    CLUSTERD_SIM_SEEDS="$a..$b" CLUSTERD_SIM_WORKERS="$workers" \
        cargo test --lib --quiet seeded_runs_from_the_environment -- --ignored --nocapture \
        >"$logs/$j.log" 2>&1 &
    pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
grep -h -E "^seed [0-9]+ .*failed|replay:" "$logs"/*.log || true
grep -h -E "^progress:" "$logs"/*.log | tail -n "$jobs" || true
grep -h -E "^seeds " "$logs"/*.log
echo "all: seeds $first..$end, $workers workers, $jobs processes, $(( $(date +%s) - started )) s, $([ $failed -eq 0 ] && echo 'no failure' || echo 'FAILURES above')"
exit "$failed"
