#!/usr/bin/env bash
# Runs the codec benchmark and prints, per payload size, each codec operation's time as a ratio to a
# plain copy (memcpy) and to SHA-256 of the same bytes, both measured in the same run.
#
#   perf/codec_ratios.sh            # run `cargo bench --bench codec`, then print the ratios
#   perf/codec_ratios.sh --no-run   # print the ratios of the last run (target/criterion/codec/)
#
# Times are criterion's mean estimate per iteration (one whole message).
set -euo pipefail

cd "$(dirname "$0")/.."

# shellcheck source=perf/lib/bench.sh
source perf/lib/bench.sh
run_bench_unless_no_run codec "$@"

target_dir="${CARGO_TARGET_DIR:-target}"
results="$target_dir/criterion/codec"
if [[ ! -d $results ]]; then
    echo "no results under $results: run without --no-run first" >&2
    exit 1
fi

python3 - "$results" <<'PY'
import json
import os
import sys

results = sys.argv[1]
sizes = ["1KiB", "1MiB", "8MiB"]
operations = ["encode_plain", "encode_fernet", "decode_plain", "decode_fernet"]
baselines = ["memcpy", "sha256"]


def mean_ns(function, size):
    path = os.path.join(results, function, size, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["mean"]["point_estimate"]
    except FileNotFoundError:
        return None


def human(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def rate(ns, size):
    byte_count = {"1KiB": 1024, "1MiB": 1 << 20, "8MiB": 8 << 20}[size]
    return f"{byte_count / (ns / 1e9) / (1 << 20):,.0f} MiB/s"


missing = False
for size in sizes:
    base = {b: mean_ns(b, size) for b in baselines}
    if None in base.values():
        print(f"{size}: baseline missing", file=sys.stderr)
        missing = True
        continue
    print(f"{size}  (memcpy {human(base['memcpy'])}, {rate(base['memcpy'], size)}; "
          f"sha256 {human(base['sha256'])}, {rate(base['sha256'], size)})")
    print(f"  {'operation':<15}{'time':>12}{'throughput':>16}{'x memcpy':>11}{'x sha256':>11}")
    for op in operations:
        ns = mean_ns(op, size)
        if ns is None:
            print(f"  {op:<15}{'missing':>12}")
            missing = True
            continue
        print(f"  {op:<15}{human(ns):>12}{rate(ns, size):>16}"
              f"{ns / base['memcpy']:>11.2f}{ns / base['sha256']:>11.2f}")
    print()
sys.exit(1 if missing else 0)
PY
