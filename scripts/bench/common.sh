# Shared by the benchmark scripts, which `source scripts/bench/common.sh` from the repository root.

# A free loopback port (the kernel picks it).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until URL answers on PATH (default /health), for up to three minutes.
wait_healthy() {
    local url=$1 path=${2:-/health}
    for _ in $(seq 1 360); do
        curl -sf "$url$path" > /dev/null && return 0
        sleep 0.5
    done
    echo "no answer from $url$path" >&2
    return 1
}
