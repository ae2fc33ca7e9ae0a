#!/usr/bin/env bash
# Runs the integrity benchmark (benches/integrity.rs) and prints each operation's time as a ratio to
# baselines measured in the same run:
#   - hashing one file (MD5, BLAKE2b-512) against reading it (std::fs::read) and SHA-256 of its bytes;
#   - building and extracting a package (zlib, ZIP) against copies of the same bytes: std::fs::copy of
#     each file, the files concatenated into one new file (concat), and a copy in memory (memcpy).
#
#   perf/hash_package_ratios.sh            # run `cargo bench --bench integrity`, then print the ratios
#   perf/hash_package_ratios.sh --no-run   # print the ratios of the last run (target/criterion/)
#
# Times are criterion's mean estimate per iteration (one file hashed, one whole package).
set -euo pipefail

cd "$(dirname "$0")/.."

# shellcheck source=perf/lib/bench.sh
source perf/lib/bench.sh
run_bench_unless_no_run integrity "$@"

target_dir="${CARGO_TARGET_DIR:-target}"
results="$target_dir/criterion"
for group in hash package; do
    if [[ ! -d $results/$group ]]; then
        echo "no results under $results/$group: run without --no-run first" >&2
        exit 1
    fi
done

python3 - "$results" <<'PY'
import json
import os
import sys

results = sys.argv[1]
missing = False


def mean_ns(group, function, label):
    global missing
    path = os.path.join(results, group, function, label, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["mean"]["point_estimate"]
    except FileNotFoundError:
        missing = True
        return None


def human(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def rate(ns, byte_count):
    return f"{byte_count / (ns / 1e9) / (1 << 20):,.0f} MiB/s"


def table(group, label, byte_count, baselines, operations):
    base = {b: mean_ns(group, b, label) for b in baselines}
    if None in base.values():
        print(f"{group}/{label}: baseline missing", file=sys.stderr)
        return
    print(f"{group}/{label}  (" + "; ".join(
        f"{b} {human(ns)}, {rate(ns, byte_count)}" for b, ns in base.items()) + ")")
    print(f"  {'operation':<15}{'time':>12}{'throughput':>16}" +
          "".join(f"{'x ' + b:>11}" for b in baselines))
    for op in operations:
        ns = mean_ns(group, op, label)
        if ns is None:
            print(f"  {op:<15}{'missing':>12}")
            continue
        print(f"  {op:<15}{human(ns):>12}{rate(ns, byte_count):>16}" +
              "".join(f"{ns / base[b]:>11.2f}" for b in baselines))
    print()


for label, byte_count in (("4KiB", 4 << 10), ("1MiB", 1 << 20), ("64MiB", 64 << 20)):
    table("hash", label, byte_count, ["read", "sha256"], ["md5", "blake2b"])
for label, byte_count in (("200x16KiB", 200 * (16 << 10)), ("1x64MiB", 64 << 20)):
    table("package", label, byte_count, ["fs_copy", "concat", "memcpy"],
          ["build_zlib", "build_zip", "extract_zlib", "extract_zip"])
sys.exit(1 if missing else 0)
PY
