# bench-fakes.sh — sourced by the gateway benchmarks (bench-gateway.sh, bench-gateway-ab.sh):
# the processes they start and stop, and the FAKE upstreams (test-support's fake-upstream, a
# test fixture, not a model). Needs `die` and `$logs` from the script that sources it.

# port_in_use PORT: whether something listens on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Processes started by the script; all of them are stopped on exit, Ctrl-C or a failure.
pids=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((${#pids[@]})); then
        kill "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_fake PORT NAME MODEL: a fake upstream, waiting until it has bound its port.
start_fake() {
    local port=$1 name=$2 model=$3 log="$logs/fake-$2.log"
    target/release/fake-upstream --listen "127.0.0.1:$port" --name "$name" \
        --served-model "$model" --latency 0ms >"$log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 1 100); do
        grep -q '^fake-upstream listening on ' "$log" && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "fake upstream $name exited"; }
        # Polling a child process's log while it starts.
        sleep 0.1
    done
    die "fake upstream $name did not start within 10 s (log: $log)"
}
