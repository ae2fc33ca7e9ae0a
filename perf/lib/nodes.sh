# shellcheck shell=bash
# Shared by the perf scripts that run real nodes: the release binaries, a temporary directory
# removed at exit, writing install roots, starting daemons, stopping them. Source it, then call
# `prepare_run NAME`; the started pids are kept in the array `pids`.

pids=()

# The cluster key of every node these scripts start.
key=c98b62a9b6169ac5f67dae55ae4a9088

# prepare_run NAME: builds the release binaries unless `build` is 0, sets `daemon`, `load` and
# `control` to them (exits if one is missing), makes the temporary directory `root`, and at exit
# (also on error or Ctrl-C) stops every node and removes `root` unless `keep` is 1.
prepare_run() {
    if [[ ${build:-1} == 1 ]]; then
        timeout 1800 cargo build --release --bins
    fi
    local bin_dir="${CARGO_TARGET_DIR:-target}/release"
    daemon="$PWD/$bin_dir/wazuh-clusterd"
    [[ $bin_dir == /* ]] && daemon="$bin_dir/wazuh-clusterd"
    load="${daemon%/*}/cluster-load"
    control="${daemon%/*}/cluster_control"
    for bin in "$daemon" "$load" "$control"; do
        [[ -x $bin ]] || { echo "$bin is missing: build it with cargo build --release --bins" >&2; exit 1; }
    done
    root="$(mktemp -d "${TMPDIR:-/tmp}/clusterd-$1-XXXXXX")"
    trap cleanup_run EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

cleanup_run() {
    stop_nodes
    if [[ ${keep:-0} == 1 ]]; then
        echo "kept $root" >&2
    else
        rm -rf "$root"
    fi
}

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

# spawn_node HOME ARGS...: the daemon in the foreground mode, in the background of the script, as
# the user running the script (-r: root too).
spawn_node() {
    local home="$1"
    shift
    "$daemon" -f -r --home "$home" "$@" </dev/null >/dev/null 2>>"$home/stderr.log" &
    pids+=("$!")
}
