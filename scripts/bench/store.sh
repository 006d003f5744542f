#!/usr/bin/env bash
# The embedded store (SQLite) beside PostgreSQL, in one run on this machine: each side imports
# MovieLens-100K (100,000 events, timed), trains ALS and serves it; then, in interleaved rounds
# (sqlite, postgres, postgres, sqlite, …), recommendation latency at a fixed 500 req/s and
# event ingestion over HTTP; then the gateway hop at 1,000 req/s with a hearth on PostgreSQL
# beside the embedded one. PostgreSQL runs with its defaults (fsync and synchronous commits
# on), on the same 2 cores as everything else. Prints JSON lines; docs/benchmarks.md quotes them.
# Usage: scripts/bench/store.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-2}
ml=$(scripts/fetch-movielens.sh)
cargo build --release -p hearth --quiet
bin="${CARGO_TARGET_DIR:-target}/release/hearth"
work=$(mktemp -d)
chmod 755 "$work"  # the PostgreSQL cluster inside belongs to `postgres` when run as root
pg="$work/pg"
trap 'kill $(jobs -p) 2>/dev/null || true; scripts/test-postgres.sh stop "$pg"; rm -rf "$work"' EXIT
source scripts/bench/common.sh
server=$(PG_DURABLE=1 scripts/test-postgres.sh start "$pg")
psql -q "$server/postgres" -c "CREATE DATABASE bench_recs" -c "CREATE DATABASE bench_gateway"

date -u +"date: %Y-%m-%d %H:%M UTC"; nproc | sed 's/^/cores: /'; grep -m1 'model name' /proc/cpuinfo
psql -tA "$server/postgres" -c "SELECT version()" | cut -d' ' -f1-2
declare -A url store
store[sqlite]=""
store[postgres]="$server/bench_recs"
for side in sqlite postgres; do
    data="$work/$side"
    mkdir -p "$data"
    start=$(date +%s.%N)
    HEARTH_STORE_URL=${store[$side]} HEARTH_LOG=warn "$bin" --data-dir "$data" recs import \
        --items "$ml/ml-100k.item" --events "$ml/ml-100k.inter" > /dev/null
    end=$(date +%s.%N)
    python3 -c "import json,sys; s=float(sys.argv[2])-float(sys.argv[1]); print(json.dumps({'store': sys.argv[3], 'import_events': 100000, 'seconds': round(s,2), 'events_per_second': round(100000/s)}))" "$start" "$end" "$side"
    HEARTH_STORE_URL=${store[$side]} HEARTH_LOG=warn "$bin" --data-dir "$data" recs train --models als > /dev/null
    port=$(free_port)
    HEARTH_STORE_URL=${store[$side]} HEARTH_LOG=warn "$bin" --data-dir "$data" serve \
        --listen "127.0.0.1:$port" > "$work/$side.log" 2>&1 &
    url[$side]="http://127.0.0.1:$port"
    wait_healthy "${url[$side]}"
    curl -sf "${url[$side]}/v1/recommendations/1?n=10" > /dev/null
done

order() { for r in $(seq "$rounds"); do if [ $((r % 2)) = 1 ]; then echo sqlite postgres; else echo postgres sqlite; fi; done; }

echo "## recommendations: GET /v1/recommendations/{user}?n=10 at 500 req/s, 10 s per round"
for side in $(order); do
    echo "### $side"
    "$bin" bench http --url "${url[$side]}" --rps 500 --seconds 10
done

echo "## event ingestion: 4 clients POSTing batches of 100 new events, 10 s per round"
for side in $(order); do
    echo "### $side"
    "$bin" bench events --url "${url[$side]}" --batch 100 --concurrency 4 --seconds 10
done
echo "## event ingestion: 16 clients POSTing one event each, 10 s per round"
for side in $(order); do
    echo "### $side"
    "$bin" bench events --url "${url[$side]}" --batch 1 --concurrency 16 --seconds 10
done

# The recommendation servers stop: the gateway rounds have the machine to themselves.
kill $(jobs -p) 2>/dev/null || true
wait 2>/dev/null || true
echo "## the gateway hop at 1,000 req/s (direct, embedded hearth, hearth on PostgreSQL), then budgets at 300 req/s"
HEARTH_STORE_URL="$server/bench_gateway" HEARTH_LOG=warn "$bin" --data-dir "$work/gw" bench gateway \
    --rps 1000 --seconds 5 --rounds "$rounds" --concurrency 16
HEARTH_STORE_URL="$server/bench_gateway" HEARTH_LOG=warn "$bin" --data-dir "$work/gw2" bench gateway \
    --rps 300 --seconds 5 --rounds "$rounds" --concurrency 16 --budgets
