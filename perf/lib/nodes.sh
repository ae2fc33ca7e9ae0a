# shellcheck shell=bash
# shellcheck disable=SC2154 # key and daemon are set by the script that sources this file
# Shared by the perf scripts that run real nodes: writing install roots, starting daemons, stopping
# them. Source it after setting `key` (the cluster key) and `daemon` (the wazuh-clusterd binary); the
# started pids are kept in the array `pids`.

pids=()

# SIGTERM every node started, SIGKILL what is still running 10 s later.
stop_nodes() {
    local pid deadline
    [[ ${#pids[@]} -gt 0 ]] || return 0
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    deadline=$((SECONDS + 10))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [[ $SECONDS -lt $deadline ]]; do
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# write_ossec_conf HOME NAME TYPE PORT: the install root an operator would write (etc/ossec.conf).
write_ossec_conf() {
    local home="$1" name="$2" type="$3" port="$4"
    mkdir -p "$home/etc"
    cat >"$home/etc/ossec.conf" <<EOF
<ossec_config>
  <cluster>
    <name>wazuh</name>
    <node_name>$name</node_name>
    <node_type>$type</node_type>
    <key>$key</key>
    <port>$port</port>
    <bind_addr>127.0.0.1</bind_addr>
    <nodes>
      <node>127.0.0.1</node>
    </nodes>
    <hidden>no</hidden>
    <disabled>no</disabled>
  </cluster>
</ossec_config>
EOF
}

# spawn_node HOME ARGS...: the daemon in the foreground mode, in the background of the script.
spawn_node() {
    local home="$1"
    shift
    "$daemon" -f --home "$home" "$@" </dev/null >/dev/null 2>>"$home/stderr.log" &
    pids+=("$!")
}
