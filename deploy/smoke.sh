#!/usr/bin/env bash
# The compose topology without containers, on this machine, with deploy/'s own files: a
# PostgreSQL server, two `hearth serve` replicas on 127.0.0.2 and 127.0.0.3 with
# deploy/hearth.toml (its paths moved into a temporary directory), and nginx with
# deploy/nginx.conf (its hosts pointed at the replicas) in front. Then, through the balancer
# only: readiness, a key made beside the replicas, events, a recommendation model trained
# beside them and served by both, a revoked key refused, and the database stopped and
# started again (503 with Retry-After, then service without restarting anything).
# Needs nginx (apt-get install nginx-light) and PostgreSQL's server binaries. Prints each
# check; exits non-zero at the first that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nginx > /dev/null || { echo "needs nginx (apt-get install nginx-light)" >&2; exit 2; }
ml=$(scripts/fetch-movielens.sh)
cargo build --release -p hearth --quiet
bin="$PWD/${CARGO_TARGET_DIR:-target}/release/hearth"
work=$(mktemp -d)
chmod 755 "$work"
pg="$work/pg"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; scripts/test-postgres.sh stop "$pg"; rm -rf "$work"' EXIT
port_on() { python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"; }
ok() { echo "ok: $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

server=$(scripts/test-postgres.sh start "$pg")
export HEARTH_STORE_URL="$server/postgres"
export HEARTH_LOG=warn

# The replicas: deploy/hearth.toml with its paths in $work.
sed -e "s|/var/lib/hearth-shared|$work/shared|" -e "s|^data_dir = .*|data_dir = \"$work/data\"|" \
    deploy/hearth.toml > "$work/hearth.toml"
declare -a replicas
for n in 1 2; do
    host=127.0.0.$((n + 1))
    port=$(port_on "$host")
    mkdir -p "$work/data-$n"
    "$bin" --config "$work/hearth.toml" --data-dir "$work/data-$n" serve --listen "$host:$port" \
        > "$work/hearth-$n.log" 2>&1 &
    replicas[$n]="$host:$port"
done
for n in 1 2; do
    for _ in $(seq 100); do curl -sf "http://${replicas[$n]}/ready" > /dev/null && break; sleep 0.2; done
done

# The balancer: deploy/nginx.conf, its hosts pointed at the replicas.
lb_port=$(port_on 127.0.0.1)
sed -e "s|hearth-1:8080|${replicas[1]}|" -e "s|hearth-2:8080|${replicas[2]}|" \
    -e "s|listen 8080;|listen 127.0.0.1:$lb_port;|" deploy/nginx.conf > "$work/default.conf"
mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<CONF
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events {}
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    include $work/default.conf;
}
CONF
nginx -t -c "$work/nginx.conf" -p "$work" 2> "$work/nginx-test.log" || { cat "$work/nginx-test.log" >&2; fail "nginx refuses deploy/nginx.conf"; }
nginx -c "$work/nginx.conf" -p "$work"
lb="http://127.0.0.1:$lb_port"
for _ in $(seq 50); do curl -sf "$lb/health" > /dev/null && break; sleep 0.1; done
status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

[ "$(status "$lb/ready")" = 200 ] || fail "/ready through the balancer"
ok "/ready through the balancer: 200"

cli() { "$bin" --config "$work/hearth.toml" --data-dir "$work/data-cli" "$@"; }
secret=$(cli keys create app --scope inference,recs:read,recs:write --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
[ "$(status "$lb/v1/recommendations/1")" = 401 ] || fail "a key made beside the replicas does not close the API"
ok "a key made beside the replicas: requests without it get 401 through the balancer"
auth=(-H "Authorization: Bearer $secret")

cli recs import --items "$ml/ml-100k.item" --events "$ml/ml-100k.inter" > /dev/null
cli recs train --models als > /dev/null
for _ in $(seq 50); do
    a=$(curl -s "${auth[@]}" "http://${replicas[1]}/v1/recommendations/1?n=3" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("model_version"))')
    b=$(curl -s "${auth[@]}" "http://${replicas[2]}/v1/recommendations/1?n=3" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("model_version"))')
    [ "$a" = 1 ] && [ "$b" = 1 ] && break
    sleep 0.2
done
[ "$a" = 1 ] && [ "$b" = 1 ] || fail "the model trained beside the replicas is not served by both ($a, $b)"
ok "a model trained beside the replicas is served by both"

for i in $(seq 20); do
    code=$(status "${auth[@]}" -H 'content-type: application/json' -X POST "$lb/v1/events" \
        -d "{\"events\":[{\"id\":\"smoke-$i\",\"user\":\"1\",\"item\":\"50\",\"type\":\"view\"}]}")
    [ "$code" = 200 ] || [ "$code" = 201 ] || fail "event $i through the balancer: $code"
done
stored=$(psql -tA "$HEARTH_STORE_URL" -c "SELECT COUNT(*) FROM recs_events WHERE id LIKE 'smoke-%'")
[ "$stored" = 20 ] || fail "20 events through the balancer, $stored stored"
ok "20 events through the balancer: 20 stored, once each"

cli keys revoke app > /dev/null
for _ in 1 2 3 4; do
    [ "$(status "${auth[@]}" "$lb/v1/recommendations/1")" = 401 ] || fail "a revoked key still answered through the balancer"
done
ok "a revoked key: 401 on every replica from the next request"
secret=$(cli keys create app2 --scope recs:read --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
auth=(-H "Authorization: Bearer $secret")

as_owner() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }
pg_bin=$(dirname "$(command -v initdb || ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
as_owner "$pg_bin/pg_ctl -D $pg/data -m immediate -w stop > /dev/null"
headers=$(curl -s -D - -o /dev/null "${auth[@]}" "$lb/v1/recommendations/1")
echo "$headers" | head -1 | grep -q ' 503' || fail "with the database down: $(echo "$headers" | head -1)"
echo "$headers" | grep -qi '^retry-after:' || fail "503 without Retry-After"
[ "$(status "$lb/ready")" = 503 ] || fail "/ready with the database down"
[ "$(status "$lb/health")" = 200 ] || fail "/health with the database down"
ok "database down: 503 with Retry-After through the balancer, /ready 503, /health 200"
port=${server##*:}
as_owner "$pg_bin/pg_ctl -D $pg/data -l $pg/server.log -w -o '-p $port -k $pg -c listen_addresses=127.0.0.1 -c fsync=off' start > /dev/null"
for _ in $(seq 100); do [ "$(status "${auth[@]}" "$lb/v1/recommendations/1")" = 200 ] && break; sleep 0.2; done
[ "$(status "${auth[@]}" "$lb/v1/recommendations/1")" = 200 ] || fail "service did not resume"
ok "database back: service resumed without restarting the replicas"
echo "every check passed"
