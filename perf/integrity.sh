#!/usr/bin/env bash
# Integrity load scenario: local integrity and worker convergence over a master-like tree of N files.
#
# Builds an install root shaped like a master's under a temporary directory: etc/client.keys with one
# line per agent, and N files shared by etc/shared/<group>/ (60 %, 25 files per group plus an ar.conf
# that is never synced), etc/rules (15 %), etc/decoders (10 %) and etc/lists (15 %), text of 256 B to
# 16 KiB each. Then, in the same run:
#   - local integrity: `local_integrity` cold (empty cache, every file hashed) and warm (the cache of
#     a cold run reused, nothing hashed), with MD5 and the 4.3 files table and with BLAKE2b-512 and the
#     4.14 table (`cargo bench --bench local_integrity`), next to `md5sum` and `b2sum` over the same
#     files (`find ... -print0 | xargs -0 md5sum`); medians of --repeat runs, as ratios to md5sum;
#   - convergence: a master and one empty worker (`wazuh-clusterd -f`, a new pair per Wazuh version
#     and run) on 127.0.0.1, the worker started once the master has computed its local integrity; the
#     time from the worker's start until its synced files (client.keys, shared, rules, decoders,
#     lists; without ar.conf, ossec.conf and names ending ~ .tmp .lock .swp) equal the master's
#     (`diff -r`), median of --repeat runs, as a ratio to `cp -a` of the same files into an empty
#     root: alone, followed by one `sync` of the file system, and followed by `sync` of each file
#     (the worker syncs every file it writes before renaming it into place).
# The master's tree is read from the page cache; only the writes of the worker and of the copies, and
# their syncs, reach the disk.
#
#   perf/integrity.sh                              # 10,000 files, both versions, 3 runs
#   perf/integrity.sh --no-build --files 100000    # a larger tree
#
# Options:
#   --files N          files in the synced directories besides client.keys (default 10000)
#   --agents A         lines of etc/client.keys (default 5000)
#   --versions "V..."  Wazuh versions for convergence (default "4.3.11 4.14.7")
#   --repeat R         runs of each figure; the median is reported (default 3)
#   --timeout S        seconds allowed for a worker to converge (default 600)
#   --no-build         use the binaries already in target/release/ (cargo bench still compiles the
#                      local_integrity bench when it is out of date)
#   --keep             keep the temporary directory (trees and logs) and say where it is
#
# Every process this script starts is stopped when it ends, also on error or Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."

files=10000
agents=5000
versions="4.3.11 4.14.7"
repeat=3
converge_timeout_s=600
build=1
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --files) files="$2"; shift 2 ;;
        --agents) agents="$2"; shift 2 ;;
        --versions) versions="$2"; shift 2 ;;
        --repeat) repeat="$2"; shift 2 ;;
        --timeout) converge_timeout_s="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --keep) keep=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done
for n in "$files" "$agents" "$repeat" "$converge_timeout_s"; do
    if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
        echo "not a positive whole number: $n" >&2
        exit 2
    fi
done
for tool in md5sum b2sum diff python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool is needed" >&2
        exit 1
    fi
done

# shellcheck source=perf/lib/nodes.sh
source perf/lib/nodes.sh
prepare_run integrity
if [[ $build == 1 ]]; then
    timeout 1800 cargo bench --bench local_integrity --no-run
fi
master="$root/master"
results="$root/results.tsv"

# elapsed START [END]: seconds between two $EPOCHREALTIME readings (END defaults to now).
elapsed() {
    local end="${2:-$EPOCHREALTIME}"
    awk -v a="$1" -v b="$end" 'BEGIN { printf "%.4f", b - a }'
}

# record KIND NAME RUN SECONDS: one line of results.
record() {
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$results"
}

# The synced paths under an install root, and the names never synced.
items=(etc/client.keys etc/shared etc/rules etc/decoders etc/lists)
not_synced=(! -name ar.conf ! -name ossec.conf ! -name '*~' ! -name '*.tmp' ! -name '*.lock' ! -name '*.swp')

# synced_files HOME: the synced files of HOME, NUL-separated, relative to HOME (run from HOME).
synced_files() {
    local existing=() item
    for item in "${items[@]}"; do
        [[ -e $1/$item ]] && existing+=("$item")
    done
    [[ ${#existing[@]} -gt 0 ]] || return 0
    (cd "$1" && find "${existing[@]}" -type f "${not_synced[@]}" -print0 2>/dev/null) || true
}

# summary HOME: "files bytes" of the synced files of HOME, cheap enough to poll.
summary() {
    local existing=() item
    for item in "${items[@]}"; do
        [[ -e $1/$item ]] && existing+=("$item")
    done
    if [[ ${#existing[@]} -gt 0 ]]; then
        (cd "$1" && find "${existing[@]}" -type f "${not_synced[@]}" -printf '%s\n' 2>/dev/null) || true
    fi | awk '{ n++; s += $1 } END { printf "%d %d\n", n, s }'
}

# same_files A B: whether the synced files of two install roots are identical.
same_files() {
    local item
    for item in "${items[@]}"; do
        if [[ -d $1/$item ]]; then
            diff -r -q -x ar.conf -x ossec.conf -x '*~' -x '*.tmp' -x '*.lock' -x '*.swp' \
                "$1/$item" "$2/$item" >/dev/null 2>&1 || return 1
        elif [[ -e $1/$item ]]; then
            cmp -s "$1/$item" "$2/$item" || return 1
        fi
    done
}

# The master's tree, written by a deterministic generator.
make_tree() {
    python3 - "$master" "$files" "$agents" <<'PY'
import os
import random
import sys

home, count, agents = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(20_240_611)
words = ("rule level group match regex decoder prematch program_name sshd authentication failed "
         "user srcip dstport syslog windows audit agent config localfile location log_format "
         "frequency options no_full_log description if_sid field name type pcre2 osregex").split()
# One pool of text; each file is its own header followed by a slice of the pool.
lines, size = [], 0
while size < (2 << 20):
    line = (f'<rule id="{rng.randrange(100_000, 120_000)}" level="{rng.randrange(16)}"><match>'
            + " ".join(rng.choice(words) for _ in range(rng.randrange(3, 9)))
            + "</match></rule>\n")
    lines.append(line)
    size += len(line)
pool = "".join(lines).encode()
sizes = (256, 512, 1024, 2048, 4096, 8192, 16384, 768)


def put(rel, data):
    path = os.path.join(home, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def content(i):
    head = f"<!-- file {i} -->\n".encode()
    want = max(sizes[i % len(sizes)], len(head))
    at = (i * 7919) % (len(pool) - want)
    return head + pool[at:at + want - len(head)]


put("etc/client.keys", "".join(
    f"{a:03d} agent{a:06d} any {(a * 0x9E3779B97F4A7C15) % (1 << 256):064x}\n"
    for a in range(1, agents + 1)).encode())
shared, rules, decoders = count * 60 // 100, count * 15 // 100, count * 10 // 100
total = 0
for i in range(count):
    if i < shared:
        group, slot = divmod(i, 25)
        name = {0: "agent.conf", 1: "merged.mg"}.get(slot, f"file{i:06d}.conf")
        rel = f"etc/shared/group{group:04d}/{name}"
        if slot == 0:
            put(f"etc/shared/group{group:04d}/ar.conf", b"restart-ossec0 - restart-ossec.sh - 0\n")
    elif i < shared + rules:
        rel = f"etc/rules/rules_{i:06d}.xml"
    elif i < shared + rules + decoders:
        rel = f"etc/decoders/decoder_{i:06d}.xml"
    else:
        rel = f"etc/lists/list_{i:06d}"
    data = content(i)
    total += len(data)
    put(rel, data)
print(f"{count} files, {total / (1 << 20):.1f} MiB, {agents} agents in client.keys")
PY
}

# write_home HOME NAME TYPE PORT: etc/ossec.conf and etc/cluster.json with short intervals.
write_home() {
    write_ossec_conf "$@"
    echo '{"intervals": {"worker": {"sync_integrity": 1, "connection_retry": 1}, "master": {"recalculate_integrity": 1}}}' \
        >"$1/etc/cluster.json"
}

# start_node HOME VERSION: the daemon in the foreground mode, in the background of this script.
start_node() {
    spawn_node "$1" --wazuh-version "$2"
}

# wait_for_log HOME TEXT SECONDS PID: until logs/cluster.log of HOME holds TEXT.
wait_for_log() {
    local deadline=$((SECONDS + $3))
    until grep -qF -- "$2" "$1/logs/cluster.log" 2>/dev/null; do
        if ! kill -0 "$4" 2>/dev/null; then
            echo "the node of $1 stopped:" >&2
            tail -n 5 "$1/stderr.log" | sed 's/^/    /' >&2
            exit 1
        fi
        if [[ $SECONDS -ge $deadline ]]; then
            echo "'$2' not logged in $1 within $3 s" >&2
            tail -n 5 "$1/logs/cluster.log" 2>/dev/null | sed 's/^/    /' >&2
            exit 1
        fi
        sleep 0.05
    done
}

# converge VERSION RUN: a master on the tree and an empty worker; records the convergence time and
# the time the worker itself logs for its sync rounds.
converge() {
    local version="$1" run="$2" port worker master_pid worker_pid start want now match_at rounds
    port="$(free_port)"
    worker="$root/worker-$version-$run"
    write_home "$master" master master "$port"
    write_home "$worker" worker1 worker "$port"
    # The log of the previous master, so that the wait below sees this master's line.
    rm -f "$master/logs/cluster.log"

    start_node "$master" "$version"
    master_pid="${pids[-1]}"
    wait_for_log "$master" "[Local integrity] Finished in" "$converge_timeout_s" "$master_pid"

    want="$(summary "$master")"
    start="$EPOCHREALTIME"
    start_node "$worker" "$version"
    worker_pid="${pids[-1]}"
    local deadline=$((SECONDS + converge_timeout_s))
    while :; do
        now="$EPOCHREALTIME"
        if [[ "$(summary "$worker")" == "$want" ]]; then
            match_at="$now"
            same_files "$master" "$worker" && break
        fi
        if ! kill -0 "$worker_pid" 2>/dev/null; then
            echo "the worker stopped:" >&2
            tail -n 5 "$worker/stderr.log" | sed 's/^/    /' >&2
            exit 1
        fi
        if [[ $SECONDS -ge $deadline ]]; then
            echo "$version: the worker did not converge within $converge_timeout_s s" \
                "(worker $(summary "$worker"), master $want: files bytes)" >&2
            tail -n 5 "$worker/logs/cluster.log" | sed 's/^/    /' >&2
            exit 1
        fi
        sleep 0.2
    done
    record converge "$version" "$run" "$(elapsed "$start" "$match_at")"
    # The worker logs the end of its sync round after the last file is in place, once it has removed
    # what it received (seconds for 100,000 files): give it time.
    deadline=$((SECONDS + 120))
    until grep -qF '[Integrity sync] Finished in' "$worker/logs/cluster.log" || [[ $SECONDS -ge $deadline ]]; do
        sleep 0.2
    done
    rounds="$(grep -F '[Integrity sync] Finished in' "$worker/logs/cluster.log" |
        sed 's/.*Finished in \([0-9.]*\)s.*/\1/')" || true
    if [[ -n $rounds ]]; then
        record worker_sync "$version" "$run" "$(awk '{ s += $1 } END { printf "%.4f", s }' <<<"$rounds")"
        rounds="the worker logged $(wc -l <<<"$rounds") sync round(s): $(paste -s -d ' ' - <<<"$rounds") s"
    else
        rounds="the worker logged no end of a sync round within 120 s"
    fi
    printf '  %-7s run %s: converged in %s s; %s\n' "$version" "$run" \
        "$(elapsed "$start" "$match_at")" "$rounds"
    stop_nodes
    [[ $keep == 1 ]] || rm -rf "$worker"
}

: >"$results"
echo "Integrity on 127.0.0.1, $(nproc) cores, under $root"
start="$EPOCHREALTIME"
make_tree
echo "  tree written in $(elapsed "$start") s"
synced_files "$master" >"$root/files.list"
listed="$(tr -cd '\0' <"$root/files.list" | wc -c)"
# Bring every file into the page cache, and let the tree age past the 1 s during which the local
# integrity cache does not trust a file's stamp.
(cd "$master" && xargs -0 -a "$root/files.list" -n 2000 cat >/dev/null)
sleep 1.5

echo "Hashing $listed files, $repeat runs each"
for ((run = 1; run <= repeat; run++)); do
    for tool in md5sum b2sum; do
        start="$EPOCHREALTIME"
        (cd "$master" && find "${items[@]}" -type f "${not_synced[@]}" -print0 | xargs -0 "$tool" >/dev/null)
        record hash "$tool" "$run" "$(elapsed "$start")"
    done
done
json="$(CLUSTERD_INTEGRITY_HOME="$master" CLUSTERD_INTEGRITY_REPEAT="$repeat" \
    timeout 1800 cargo bench --bench local_integrity 2>"$root/bench.log" | grep '^{' | tail -n 1)" || {
    echo "cargo bench --bench local_integrity failed:" >&2
    tail -n 20 "$root/bench.log" >&2
    exit 1
}
printf '%s\n' "$json" >"$root/local_integrity.json"

# copies RUN: the baselines of the convergence, measured next to it.
copies() {
    local run="$1" kind copy="$root/copy" start
    for kind in cp cp_sync cp_fsync; do
        rm -rf "$copy"
        mkdir -p "$copy/etc"
        sync -f "$root"
        start="$EPOCHREALTIME"
        cp -a "$master/etc/client.keys" "$master/etc/shared" "$master/etc/rules" \
            "$master/etc/decoders" "$master/etc/lists" "$copy/etc/"
        case "$kind" in
            # One sync of the file system at the end.
            cp_sync) sync -f "$copy" ;;
            # Each file synced on its own, as the worker does before renaming it into place.
            cp_fsync) (cd "$copy" && find etc -type f -print0 | xargs -0 sync) ;;
        esac
        record copy "$kind" "$run" "$(elapsed "$start")"
    done
    same_files "$master" "$copy" || { echo "the copy differs from the master's files" >&2; exit 1; }
    rm -rf "$copy"
    printf '  run %s: cp -a %s s\n' "$run" "$(awk -F'\t' -v r="$run" '$1 == "copy" && $2 == "cp" && $3 == r { print $4 }' "$results")"
}

# File creation and syncing speed drift on a shared machine: each run measures the copies right
# before the convergence of every version, and ratios are taken within a run.
echo "Copies and convergence of an empty worker, $repeat runs"
for ((run = 1; run <= repeat; run++)); do
    copies "$run"
    for version in $versions; do
        converge "$version" "$run"
    done
done

python3 - "$results" "$root/local_integrity.json" "$listed" "$(summary "$master")" <<'PY'
import json
import statistics
import sys

path, json_path, listed = sys.argv[1], sys.argv[2], int(sys.argv[3])
_, total_bytes = map(int, sys.argv[4].split())
runs = {}
by_run = {}
for line in open(path):
    kind, name, run, seconds = line.rstrip("\n").split("\t")
    runs.setdefault((kind, name), []).append(float(seconds))
    by_run[(kind, name, run)] = float(seconds)
median = {key: statistics.median(values) for key, values in runs.items()}
local = json.load(open(json_path))["results"]

mib = total_bytes / (1 << 20)
print()
print(f"Local integrity of {listed} files ({mib:.1f} MiB), medians of {json.load(open(json_path))['repeat']} runs;")
print("ratios to md5sum over the same files (find | xargs md5sum):")
print()
base = median[("hash", "md5sum")]
rows = [("md5sum", base, None), ("b2sum", median[("hash", "b2sum")], None)]
for name, label in (("md5", "MD5, 4.3"), ("blake2b", "BLAKE2b, 4.14")):
    r = local[name]
    if r["files"] != listed:
        print(f"warning: local integrity ({name}) found {r['files']} files, find {listed}")
    if r["warm_hashed"]:
        print(f"warning: a warm run ({name}) hashed {r['warm_hashed']} files")
    rows.append((f"cold {label}", r["cold_s"], r["cold_hashed"]))
    rows.append((f"warm {label}", r["warm_s"], r["warm_hashed"]))
print(f"  {'operation':<22}{'time':>10}{'MiB/s':>9}{'x md5sum':>10}{'hashed':>9}")
for name, seconds, hashed in rows:
    hashed_text = "" if hashed is None else str(hashed)
    rate = f"{mib / seconds:.0f}" if hashed is None or hashed else ""
    print(f"  {name:<22}{seconds:>9.3f}s{rate:>9}{seconds / base:>10.2f}{hashed_text:>9}")

copies = [("cp -a", "cp"), ("+ sync", "cp_sync"), ("+ fsync each", "cp_fsync")]
print()
print("Copies of the same files into an empty root, medians of runs:")
for label, key in copies:
    print(f"  cp -a {label if label != 'cp -a' else '':<14}{median[('copy', key)]:>8.3f}s")
print()
print("Convergence of an empty worker: from its start until its synced files equal the master's")
print("(median), the time the worker logs for its sync rounds, and the median of the ratios to the")
print("copies of the same run:")
print()
print(f"  {'version':<10}{'converged':>11}{'worker log':>12}"
      + "".join(f"{'x ' + label:>15}" for label, _ in copies))
versions = sorted({name for kind, name, _ in by_run if kind == "converge"},
                  key=lambda v: [int(p) for p in v.split(".")])
run_ids = sorted({run for kind, _, run in by_run if kind == "converge"}, key=int)
for version in versions:
    ratios = [statistics.median(by_run[("converge", version, r)] / by_run[("copy", key, r)]
                                for r in run_ids if ("converge", version, r) in by_run)
              for _, key in copies]
    logged = median.get(("worker_sync", version), float("nan"))
    print(f"  {version:<10}{median[('converge', version)]:>10.2f}s{logged:>11.2f}s"
          + "".join(f"{ratio:>15.1f}" for ratio in ratios))
PY
