#!/usr/bin/env bash
# Membership load scenario with real processes on 127.0.0.1.
#
# For each IO driver and each worker count N, starts a master and N workers (`wazuh-clusterd -f`) in
# fresh install roots and measures:
#   - the join time: from the start of the first worker until `cluster_control -l` on the master lists
#     all N workers (median of --repeat runs), reported per worker as a ratio to the N=1 join time
#     of the same driver in the same run;
#   - the master's resident memory (VmRSS of /proc/<pid>/status) before any worker starts and once all N
#     are connected.
#
#   perf/membership.sh                               # N = 1 10 50, io_uring and epoll, 3 runs each
#   perf/membership.sh --workers "1 100" --repeat 1 --drivers epoll
#
# Options:
#   --workers "N..."   worker counts (default "1 10 50"); 1 is added when missing, as the baseline
#   --drivers "D..."   IO drivers (default "io_uring epoll"); a driver the kernel refuses is reported
#   --repeat R         runs per (driver, N); the median join time is reported (default 3)
#   --timeout S        seconds allowed for N workers to be listed (default 120)
#   --no-build         use the binaries already in target/release/
#
# Every process this script starts is stopped when it ends, also on error or Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."

workers_list="1 10 50"
drivers="io_uring epoll"
repeat=3
join_timeout_s=120
build=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --workers) workers_list="$2"; shift 2 ;;
        --drivers) drivers="$2"; shift 2 ;;
        --repeat) repeat="$2"; shift 2 ;;
        --timeout) join_timeout_s="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done
read -r -a counts <<<"$workers_list"
for n in "${counts[@]}" "$repeat" "$join_timeout_s"; do
    if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
        echo "not a positive whole number: $n" >&2
        exit 2
    fi
done
# N=1 is the baseline of the ratios: measure it first.
workers_list="$(printf '%s\n' 1 "${counts[@]}" | sort -n -u | tr '\n' ' ')"

# shellcheck source=perf/lib/nodes.sh
source perf/lib/nodes.sh
prepare_run membership
results="$root/results.tsv"

# write_home HOME NAME TYPE PORT: the install root an operator would write (etc/ossec.conf).
write_home() {
    write_ossec_conf "$@"
}

# start_node HOME DRIVER: starts the daemon in the foreground mode, in the background of this script.
start_node() {
    spawn_node "$1" --io-driver "$2"
}

listed_nodes() {
    "$control" --home "$1" -l --timeout 5 2>/dev/null | awk '$2 == "master" || $2 == "worker"' | wc -l
}

rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# run_once DRIVER N RUN: one cluster; appends "driver n run join_s rss_idle_kib rss_kib" to $results.
# Returns 1 when the master does not start with this driver.
run_once() {
    local driver="$1" n="$2" run="$3"
    local dir="$root/$driver-$n-$run" port master_pid start now deadline i listed rss_idle rss
    port="$(free_port)"
    write_home "$dir/master" master master "$port"
    if [[ $n -gt 10 ]]; then
        # The master accepts 10 connections per source address unless told otherwise.
        echo "connections_per_ip_max = 1000" >"$dir/master/etc/clusterd.toml"
    fi
    for ((i = 1; i <= n; i++)); do
        write_home "$dir/worker$i" "worker$i" worker "$port"
        # A worker that finds no master retries after connection_retry: keep a retry visible but short.
        echo '{"intervals": {"worker": {"connection_retry": 1}}}' >"$dir/worker$i/etc/cluster.json"
    done

    start_node "$dir/master" "$driver"
    master_pid="${pids[-1]}"
    deadline=$((SECONDS + 15))
    until [[ -S $dir/master/queue/cluster/c-internal.sock ]]; do
        if ! kill -0 "$master_pid" 2>/dev/null; then
            echo "  the master did not start with --io-driver $driver:" >&2
            tail -n 3 "$dir/master/stderr.log" | sed 's/^/    /' >&2
            stop_nodes
            return 1
        fi
        if [[ $SECONDS -ge $deadline ]]; then
            echo "the master did not open its local socket within 15 s" >&2
            exit 1
        fi
        sleep 0.05
    done
    sleep 0.5
    rss_idle="$(rss_kib "$master_pid")"

    start="$EPOCHREALTIME"
    for ((i = 1; i <= n; i++)); do
        start_node "$dir/worker$i" "$driver"
    done
    deadline=$((SECONDS + join_timeout_s))
    while :; do
        listed="$(listed_nodes "$dir/master")"
        [[ $listed -lt $((n + 1)) ]] || break
        if [[ $SECONDS -ge $deadline ]]; then
            echo "only $((listed - 1)) of $n workers were listed after $join_timeout_s s" >&2
            tail -n 5 "$dir/master/logs/cluster.log" | sed 's/^/    /' >&2
            exit 1
        fi
        sleep 0.01
    done
    now="$EPOCHREALTIME"
    # Let hand-shake buffers be released before reading the resident size.
    sleep 1
    rss="$(rss_kib "$master_pid")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$driver" "$n" "$run" \
        "$(python3 -c "print(f'{$now - $start:.4f}')")" "$rss_idle" "$rss" >>"$results"
    stop_nodes
    rm -rf "$dir"
}

: >"$results"
echo "Membership on 127.0.0.1, $(nproc) cores: workers $workers_list; drivers $drivers; $repeat runs each"
for driver in $drivers; do
    for n in $workers_list; do
        for ((run = 1; run <= repeat; run++)); do
            if ! run_once "$driver" "$n" "$run"; then
                printf '%s\t%s\t%s\tunavailable\t\t\n' "$driver" "$n" "$run" >>"$results"
                break 2
            fi
            tail -n 1 "$results" | awk -F'\t' '{ printf "  %-8s N=%-4s run %s: %.3f s, master %.1f MiB\n", $1, $2, $3, $4, $6 / 1024 }'
        done
    done
done

python3 - "$results" "$drivers" <<'PY'
import statistics
import sys

path, drivers = sys.argv[1], sys.argv[2].split()
runs = {}
unavailable = set()
for line in open(path):
    driver, n, _run, join, idle, rss = line.rstrip("\n").split("\t")
    if join == "unavailable":
        unavailable.add(driver)
        continue
    runs.setdefault((driver, int(n)), []).append((float(join), int(idle), int(rss)))

counts = sorted({n for _, n in runs})
summary = {}
for key, values in runs.items():
    summary[key] = (
        statistics.median(v[0] for v in values),
        statistics.median(v[1] for v in values) / 1024,
        statistics.median(v[2] for v in values) / 1024,
    )

print()
print("Join time: from the first worker's start until all N are listed (median);")
print("per worker = join / N, as a ratio to the N=1 join time of the same driver.")
print("Master RSS: idle before the workers start, and with all N connected.")
print()
header = f"{'N':>5}  {'driver':<9}{'join':>9}{'x N=1':>8}{'per worker':>12}{'x N=1':>8}" \
         f"{'RSS idle':>11}{'RSS':>11}{'per worker':>12}"
print(header)
for n in counts:
    for driver in drivers:
        if (driver, n) not in summary:
            if driver in unavailable:
                print(f"{n:>5}  {driver:<9}{'unavailable':>20}")
            continue
        join, idle, rss = summary[(driver, n)]
        base = summary.get((driver, 1), (float("nan"),))[0]
        per_worker = join / n
        print(f"{n:>5}  {driver:<9}{join:>8.3f}s{join / base:>8.2f}{per_worker * 1000:>10.1f}ms"
              f"{per_worker / base:>8.3f}{idle:>7.1f} MiB{rss:>7.1f} MiB"
              f"{(rss - idle) * 1024 / n:>8.0f} KiB")

present = [d for d in drivers if any((d, n) in summary for n in counts)]
if len(present) >= 2:
    a, b = present[0], present[1]
    print()
    print(f"{b} / {a}, same N:")
    print(f"{'N':>5}{'join':>8}{'RSS':>8}")
    for n in counts:
        if (a, n) in summary and (b, n) in summary:
            ja, _, ra = summary[(a, n)]
            jb, _, rb = summary[(b, n)]
            print(f"{n:>5}{jb / ja:>8.2f}{rb / ra:>8.2f}")
PY
