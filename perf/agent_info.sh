#!/usr/bin/env bash
# Agent-info load scenario: one round of agent-info sync carrying N agents, worker read → master
# applied, in both dialects.
#
# For each Wazuh version, in a temporary directory: a master and one worker (`wazuh-clusterd -f`, the
# embedded agent database) on 127.0.0.1. N agents are registered through the worker with
# `cluster-load agents --count N` (sendsync to the master's embedded registration service) and then
# connected in the worker's database as remoted would (full agent data, status `syncreq`), while the
# worker's agent-info period is long enough that no round runs. The worker is then restarted with a
# 5 s period, so its first round carries all N agents at once. Reported, from the logs:
#   - the worker's round (`[Agent-info sync] Finished in <t>s`): from its read of the database until
#     the master's result arrives, i.e. read + send + master apply + answer;
#   - the master's part (`Finished in <t>s` on the master): applying the string to its database;
#   - the agents the master then holds with `node_name` = the worker (checked, must be N);
# and, as the baseline measured in the same run, a plain Python `SELECT * FROM agent` of the same rows
# from the worker's database file followed by `json.dumps` (what the least a reader and serialiser of
# those rows costs on this machine), as the ratio round / baseline.
#
#   perf/agent_info.sh                          # 50,000 agents, both versions
#   perf/agent_info.sh --agents 10000 --no-build
#
# Options:
#   --agents N         agents in the round (default 50000)
#   --versions "V..."  Wazuh versions (default "4.3.11 4.14.7")
#   --timeout S        seconds allowed for registration and for the round (default 900)
#   --no-build         use the binaries already in target/release/
#   --keep             keep the temporary directory (homes and logs) and say where it is
#
# Every process this script starts is stopped when it ends, also on error or Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."

agents=50000
versions="4.3.11 4.14.7"
timeout_s=900
build=1
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --agents) agents="$2"; shift 2 ;;
        --versions) versions="$2"; shift 2 ;;
        --timeout) timeout_s="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done

# shellcheck source=perf/lib/nodes.sh
source perf/lib/nodes.sh
prepare_run agent-info

# intervals HOME SYNC_AGENT_INFO_S: short cluster timers, and the worker's agent-info period.
intervals() {
    cat >"$1/etc/cluster.json" <<EOF
{"intervals": {"worker": {"sync_integrity": 5, "sync_agent_info": $2, "connection_retry": 1, "keep_alive": 5},
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

# seconds_in LINE: the number after "Finished in " in a log line.
seconds_in() {
    sed -E 's/.*Finished in ([0-9.]+)s.*/\1/' <<<"$1"
}

printf '%-8s %8s %12s %12s %12s %10s %8s\n' version agents round_s master_s baseline_s agents/s ratio
for version in $versions; do
    dir="$root/$version"
    port="$(free_port)"
    write_ossec_conf "$dir/master" master master "$port"
    write_ossec_conf "$dir/worker1" worker1 worker "$port"
    intervals "$dir/master" 10
    intervals "$dir/worker1" 100000
    spawn_node "$dir/master" --wazuh-version "$version"
    wait_log "$dir/master/logs/cluster.log" "Serving on"
    spawn_node "$dir/worker1" --wazuh-version "$version"
    worker_pid="${pids[-1]}"
    wait_log "$dir/worker1/logs/cluster.log" "Successfully connected to master."

    timeout "$timeout_s" "$load" agents --home "$dir/worker1" --count "$agents" --duration 0 --concurrency 128 \
        >"$dir/load.log" 2>&1 || { cat "$dir/load.log" >&2; exit 1; }

    # The same worker with a short period: its first round carries every agent.
    kill -TERM "$worker_pid"
    while kill -0 "$worker_pid" 2>/dev/null; do sleep 0.05; done
    intervals "$dir/worker1" 5
    spawn_node "$dir/worker1" --wazuh-version "$version"
    wait_log "$dir/worker1/logs/cluster.log" "[Agent-info sync] Finished in"
    worker_line="$(grep -F "[Agent-info sync] Finished in" "$dir/worker1/logs/cluster.log" | head -1)"
    wait_log "$dir/master/logs/cluster.log" "[Agent-info sync] Finished in"
    master_line="$(grep -F "[Agent-info sync] Finished in" "$dir/master/logs/cluster.log" | tail -1)"
    round="$(seconds_in "$worker_line")"
    applied="$(seconds_in "$master_line")"

    read -r held baseline < <(python3 - "$dir/master/queue/db/clusterd-global.db" \
        "$dir/worker1/queue/db/clusterd-global.db" <<'PYEOF'
import json, sqlite3, sys, time
master = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
held = master.execute("SELECT COUNT(*) FROM agent WHERE id > 0 AND node_name = 'worker1'").fetchone()[0]
worker = sqlite3.connect(f"file:{sys.argv[2]}?mode=ro", uri=True)
worker.row_factory = sqlite3.Row
best = None
for _ in range(3):
    start = time.perf_counter()
    rows = [dict(r) for r in worker.execute("SELECT * FROM agent WHERE id > 0")]
    json.dumps({"chunks": {"syncreq": rows}})
    took = time.perf_counter() - start
    best = took if best is None else min(best, took)
print(held, f"{best:.3f}")
PYEOF
    )
    [[ $held == "$agents" ]] || { echo "$version: the master holds $held agents of worker1, expected $agents" >&2; exit 1; }
    rate="$(python3 -c "print(f'{$agents / max($round, 0.001):.0f}')")"
    ratio="$(python3 -c "print(f'{$round / max($baseline, 0.001):.1f}')")"
    printf '%-8s %8d %12s %12s %12s %10s %8s\n' "$version" "$agents" "$round" "$applied" "$baseline" "$rate" "${ratio}x"
    stop_nodes
done
