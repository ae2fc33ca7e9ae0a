#!/usr/bin/env bash
# Runs every fuzz target in turn, one job each, for EXECS executions (default 10^7), and prints a
# table: target, executions, seconds, exec/s, crashes (0, or the artifact libFuzzer wrote).
# Exits non-zero if any target crashed, hung (-timeout) or went over the RSS limit.
#
#   fuzz/run.sh [EXECS]
#
# Environment:
#   TARGETS="decoder fernet"  run only these targets (default: all of them, in the order below)
#   SKIP="node_master"        leave these targets out
#   MAX_TIME=SECONDS          also stop each target after this long (libFuzzer -max_total_time);
#                             the table then shows the executions actually done
#   FUZZ_ARGS="..."           more libFuzzer arguments (e.g. "-fork=1 -ignore_crashes=1")
#   SANITIZER=address|none    cargo fuzz sanitizer (default: address)
#
# The working corpus of each target is fuzz/corpus/<target>, seeded from fuzz/seeds/<target>;
# crash inputs go to fuzz/artifacts/<target>/ and logs to fuzz/artifacts/logs/<target>.log.
# libFuzzer only reads and writes one directory per target; nothing else is touched.
set -u -o pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

execs="${1:-10000000}"
sanitizer="${SANITIZER:-address}"
# Nightly-only flags of cargo fuzz (-Z sanitizer, sancov passes) on a stable toolchain.
export RUSTC_BOOTSTRAP=1
# Package and cluster.json targets write temporary files: keep them in memory.
export FUZZ_TMPDIR="${FUZZ_TMPDIR:-/dev/shm}"
[ -d "$FUZZ_TMPDIR" ] || export FUZZ_TMPDIR=/tmp

# target:max_len. Bounds are chosen per input kind; parsers without a limit of their own also
# cap their input inside the target (see each target's header). 16 KiB holds every structure of a
# connection's frames, a metadata document or a package many times over (their size limits have
# tests of their own); the node targets play sequences of messages: 4 KiB holds dozens of them,
# and the payload parsers they reach have targets of their own with larger inputs.
all="
decoder:16384
fernet:4096
connection:16384
metadata:16384
package_zip:16384
package_zlib:16384
merged:65536
dapi_request:16384
ossec_conf:16384
cluster_json:16384
authd:8192
wdb_wire:4096
wazuh_error:8192
client_keys:16384
node_master:4096
node_worker:4096
node_local:4096
"

selected=""
for entry in $all; do
    name="${entry%%:*}"
    if [ -n "${TARGETS:-}" ] && ! [[ " $TARGETS " == *" $name "* ]]; then continue; fi
    if [ -n "${SKIP:-}" ] && [[ " $SKIP " == *" $name "* ]]; then continue; fi
    selected="$selected $entry"
done

# A fresh machine has no cargo-fuzz: install it from crates.io rather than fail on "no such command".
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing: cargo install cargo-fuzz --locked --version 0.13.2" >&2
    cargo install cargo-fuzz --locked --version 0.13.2 >&2 || { echo "could not install cargo-fuzz" >&2; exit 2; }
fi

# Built target by target: the seed writer (make_seeds) is no fuzz target and does not link
# without a sanitizer runtime.
for entry in $selected; do
    build=(cargo fuzz build --sanitizer "$sanitizer" --release --debug-assertions "${entry%%:*}")
    echo "building: ${build[*]}" >&2
    "${build[@]}" >&2 || { echo "build failed" >&2; exit 2; }
done

mkdir -p artifacts/logs corpus
rows=()
failed=0
for entry in $selected; do
    name="${entry%%:*}"
    max_len="${entry#*:}"
    mkdir -p "corpus/$name" "artifacts/$name"
    if [ -d "seeds/$name" ]; then
        cp -n seeds/"$name"/* "corpus/$name/" 2>/dev/null || true
    fi
    log="artifacts/logs/$name.log"
    before="$(ls -1 "artifacts/$name" | sort)"
    args=(-runs="$execs" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
    if [ -n "${MAX_TIME:-}" ]; then args+=(-max_total_time="$MAX_TIME"); fi
    # shellcheck disable=SC2206
    if [ -n "${FUZZ_ARGS:-}" ]; then args+=($FUZZ_ARGS); fi
    cmd=(cargo fuzz run --sanitizer "$sanitizer" --release --debug-assertions "$name" "corpus/$name" -- "${args[@]}")
    echo "running: ${cmd[*]}" >&2
    start=$(date +%s.%N)
    "${cmd[@]}" >"$log" 2>&1
    rc=$?
    end=$(date +%s.%N)
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
    # libFuzzer's own count and time: "stat::number_of_executed_units: N" and "Done N runs in S second(s)".
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    [ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    [ -n "$runs" ] || runs=$(grep -o '#[0-9]*' "$log" | tail -1 | tr -d '#')
    [ -n "$runs" ] || runs=0
    fsecs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    [ -n "$fsecs" ] && [ "$fsecs" -gt 0 ] && secs="$fsecs"
    rate=$(awk -v r="$runs" -v s="$secs" 'BEGIN { if (s > 0) printf "%.0f", r / s; else print r }')
    after="$(ls -1 "artifacts/$name" | sort)"
    new="$(comm -13 <(echo "$before") <(echo "$after") | grep -E '^(crash|timeout|oom|leak|slow-unit)-' | head -1)"
    crash=0
    if [ "$rc" -ne 0 ] || [ -n "$new" ]; then
        failed=1
        if [ -n "$new" ]; then
            crash="fuzz/artifacts/$name/$new"
        else
            crash="exit $rc, see fuzz/$log"
        fi
    fi
    rows+=("$(printf '%-14s %12s %8s %10s  %s' "$name" "$runs" "$secs" "$rate" "$crash")")
    printf '%s\n' "${rows[-1]}" >&2
done

printf '%-14s %12s %8s %10s  %s\n' target executions seconds exec/s crashes
printf '%s\n' "${rows[@]}"
exit "$failed"
