# shellcheck shell=bash
# Shared by the perf scripts that turn a criterion benchmark into ratios: the `[--no-run]` option and
# the benchmark run. Source it from the repository root.

# Runs `cargo bench --bench NAME` unless the script's arguments are `--no-run` (reuse the last
# results); any other argument prints the usage and exits 2.
run_bench_unless_no_run() {
    local bench=$1
    shift
    case "${1:-}" in
        "")
            # Criterion bounds each benchmark's time itself; the timeout only guards against a hung build.
            timeout 1800 cargo bench --bench "$bench" -- --noplot
            ;;
        --no-run) ;;
        *)
            echo "usage: $0 [--no-run]" >&2
            exit 2
            ;;
    esac
}
