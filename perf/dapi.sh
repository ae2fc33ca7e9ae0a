#!/usr/bin/env bash
# Distributed-API load scenario: agent listings through a worker (relayed to the master and back)
# against the same listings on the master's own socket, in both dialects.
#
# For each Wazuh version, in a temporary directory: a master and one worker (`wazuh-clusterd -f`, the
# embedded agent database) on 127.0.0.1. N agents are registered through the worker and connected
# in its database with `cluster-load agents --count N`; the worker's agent-info rounds carry them to
# the master, which then holds N agents reporting to worker1 (checked). Then `cluster-load dapi`
# sends R `get_agents_overview` requests (what `cluster_control -a` and the API's agent listing
# send: `limit` agents per page, offsets walking all N) with C concurrent clients, one local-socket
# connection per request as the Wazuh API opens them:
#   - on the worker: each request goes to the master as `dapi`, runs there, and its answer comes back
#     as a long string then `dapi_res`;
#   - on the master (the baseline, measured in the same run): the same requests run in place.
# Printed: mean and p99 latency and requests/s of each, and the ratio of the means worker / master.
#
#   perf/dapi.sh                          # 50,000 agents, 1,000 requests of 500, both versions
#   perf/dapi.sh --agents 5000 --requests 200 --no-build
#
# Options:
#   --agents N         agents the master holds (default 50000)
#   --requests R       requests per node (default 1000)
#   --limit L          agents per request (default 500)
#   --clients C        concurrent clients (default 1)
#   --versions "V..."  Wazuh versions (default "4.3.11 4.14.7")
#   --timeout S        seconds allowed for registration, the agent-info rounds and each run (default 900)
#   --no-build         use the binaries already in target/release/
#   --keep             keep the temporary directory (homes and logs) and say where it is
#
# Every process this script starts is stopped when it ends, also on error or Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."

agents=50000
requests=1000
limit=500
clients=1
versions="4.3.11 4.14.7"
timeout_s=900
build=1
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --agents) agents="$2"; shift 2 ;;
        --requests) requests="$2"; shift 2 ;;
        --limit) limit="$2"; shift 2 ;;
        --clients) clients="$2"; shift 2 ;;
        --versions) versions="$2"; shift 2 ;;
        --timeout) timeout_s="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done

# shellcheck source=perf/lib/nodes.sh
source perf/lib/nodes.sh
prepare_run dapi

# intervals HOME: short cluster timers, so the agents reach the master soon.
intervals() {
    cat >"$1/etc/cluster.json" <<EOF
{"intervals": {"worker": {"sync_integrity": 5, "sync_agent_info": 5, "connection_retry": 1, "keep_alive": 5},
               "master": {"recalculate_integrity": 2, "agent_group_start_delay": 5, "sync_agent_groups": 5}}}
EOF
}

# wait_log FILE TEXT: until FILE holds a line containing TEXT (or the timeout).
wait_log() {
    local deadline=$((SECONDS + timeout_s))
    until grep -qF -- "$2" "$1" 2>/dev/null; do
        [[ $SECONDS -lt $deadline ]] || { echo "timeout waiting for '$2' in $1" >&2; exit 1; }
        sleep 0.2
    done
}

# held DB: the agents the master's database says report to worker1.
held() {
    python3 - "$1" <<'PYEOF'
import sqlite3, sys
try:
    db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=5)
    print(db.execute("SELECT COUNT(*) FROM agent WHERE id > 0 AND node_name = 'worker1'").fetchone()[0])
except sqlite3.Error:
    print(0)
PYEOF
}

# field LINE NAME: the value of NAME=... in a `cluster-load dapi` summary line.
field() {
    tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"
}

# run_dapi HOME OUT: one `cluster-load dapi` run; prints its summary line.
run_dapi() {
    timeout "$timeout_s" "$load" dapi --home "$1" --requests "$requests" --clients "$clients" \
        --limit "$limit" >"$2" 2>&1 || { cat "$2" >&2; exit 1; }
    grep -E '^requests=' "$2"
}

printf '%-8s %7s %8s %5s %11s %11s %10s %11s %11s %10s %7s\n' version agents requests limit \
    worker_mean worker_p99 worker_r/s master_mean master_p99 master_r/s ratio
for version in $versions; do
    dir="$root/$version"
    port="$(free_port)"
    write_ossec_conf "$dir/master" master master "$port"
    write_ossec_conf "$dir/worker1" worker1 worker "$port"
    intervals "$dir/master"
    intervals "$dir/worker1"
    spawn_node "$dir/master" --wazuh-version "$version"
    wait_log "$dir/master/logs/cluster.log" "Serving on"
    spawn_node "$dir/worker1" --wazuh-version "$version"
    wait_log "$dir/worker1/logs/cluster.log" "Successfully connected to master."

    timeout "$timeout_s" "$load" agents --home "$dir/worker1" --count "$agents" --duration 0 --concurrency 128 \
        >"$dir/load.log" 2>&1 || { cat "$dir/load.log" >&2; exit 1; }
    deadline=$((SECONDS + timeout_s))
    until [[ "$(held "$dir/master/queue/db/clusterd-global.db")" == "$agents" ]]; do
        [[ $SECONDS -lt $deadline ]] || { echo "$version: the master never held $agents agents of worker1" >&2; exit 1; }
        sleep 1
    done

    worker_line="$(run_dapi "$dir/worker1" "$dir/dapi-worker1.log")"
    master_line="$(run_dapi "$dir/master" "$dir/dapi-master.log")"
    w_mean="$(field "$worker_line" mean_ms)"
    m_mean="$(field "$master_line" mean_ms)"
    w_rate="$(python3 -c "print(f'{$requests / max($(field "$worker_line" total_s), 0.001):.0f}')")"
    m_rate="$(python3 -c "print(f'{$requests / max($(field "$master_line" total_s), 0.001):.0f}')")"
    ratio="$(python3 -c "print(f'{$w_mean / max($m_mean, 0.001):.2f}')")"
    printf '%-8s %7d %8d %5d %9sms %9sms %10s %9sms %9sms %10s %7s\n' "$version" "$agents" "$requests" \
        "$limit" "$w_mean" "$(field "$worker_line" p99_ms)" "$w_rate" "$m_mean" "$(field "$master_line" p99_ms)" \
        "$m_rate" "${ratio}x"
    stop_nodes
done
