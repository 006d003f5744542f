#!/usr/bin/env bash
# Two hearth builds side by side in one run: recommendation latency at a fixed rate (each
# build serves MovieLens-100K with an ALS model it trained itself) and the gateway hop, in
# interleaved rounds (before, after, after, before, …) so the machine's drift hits both alike.
# Usage: scripts/bench/before-after.sh BEFORE_BIN AFTER_BIN [ROUNDS]
#   e.g. git worktree add /tmp/before COMMIT && (cd /tmp/before && cargo build --release --bin hearth)
set -euo pipefail
cd "$(dirname "$0")/../.."
before=${1:?the binary built from the earlier commit}
after=${2:?the binary built from the later commit}
rounds=${3:-2}
ml=$(scripts/fetch-movielens.sh)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
source scripts/bench/common.sh

date -u +"date: %Y-%m-%d %H:%M UTC"; nproc | sed 's/^/cores: /'; grep -m1 'model name' /proc/cpuinfo
declare -A url
for side in before after; do
    bin=${!side}
    data="$work/$side"
    HEARTH_LOG=warn "$bin" --data-dir "$data" recs import --items "$ml/ml-100k.item" \
        --events "$ml/ml-100k.inter" > /dev/null
    HEARTH_LOG=warn "$bin" --data-dir "$data" recs train --models als > /dev/null
    port=$(free_port)
    HEARTH_LOG=warn "$bin" --data-dir "$data" serve --listen "127.0.0.1:$port" > "$work/$side.log" 2>&1 &
    url[$side]="http://127.0.0.1:$port"
    wait_healthy "${url[$side]}"
    # Warm: the model loads on the first request.
    curl -sf "${url[$side]}/v1/recommendations/1?n=10" > /dev/null
done

order() { for r in $(seq "$rounds"); do if [ $((r % 2)) = 1 ]; then echo before after; else echo after before; fi; done; }

echo "## recommendations: GET /v1/recommendations/{user}?n=10 at 500 req/s, 10 s per round"
for side in $(order); do
    echo "### $side"
    "$after" bench http --url "${url[$side]}" --rps 500 --seconds 10
done

echo "## the gateway hop at 1,000 req/s, 5 s per path per round (each build's own bench)"
up=$(free_port)
"$after" bench upstream --listen "127.0.0.1:$up" > "$work/upstream.log" 2>&1 &
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$up/" && break; sleep 0.1; done
for side in $(order); do
    echo "### $side"
    HEARTH_LOG=warn "${!side}" --data-dir "$work/gw-$side" bench gateway \
        --upstream "http://127.0.0.1:$up/v1" --rps 1000 --seconds 5 --rounds 1 --concurrency 0
done
