#!/usr/bin/env bash
# A private PostgreSQL server for the tests: `start DIR` makes a cluster in DIR (a temporary
# directory), starts it on a free loopback port and prints its URL
# (postgres://postgres@127.0.0.1:PORT); `stop DIR` stops it and removes DIR. Run as root, the
# cluster belongs to the `postgres` user (PostgreSQL refuses root). Tests run it without
# fsync; PG_DURABLE=1 keeps PostgreSQL's defaults (fsync and synchronous commits), as a
# benchmark of writes needs.
set -euo pipefail
cmd=${1:?usage: test-postgres.sh start|stop DIR}
dir=${2:?usage: test-postgres.sh start|stop DIR}
bin=""
if ! command -v initdb >/dev/null; then
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)/
fi
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}
case "$cmd" in
  start)
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$(id -u)" -ne 0 ] || chown postgres "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "${bin}initdb -D $dir/data -A trust -U postgres --no-sync -E UTF8 > $dir/initdb.log 2>&1"
    fsync="-c fsync=off"
    [ "${PG_DURABLE:-0}" = 1 ] && fsync=""
    as_owner "${bin}pg_ctl -D $dir/data -l $dir/server.log -w -o '-p $port -k $dir -c listen_addresses=127.0.0.1 $fsync -c max_connections=300' start > /dev/null"
    echo "postgres://postgres@127.0.0.1:$port"
    ;;
  stop)
    [ -d "$dir/data" ] && as_owner "${bin}pg_ctl -D $dir/data -m fast stop > /dev/null 2>&1" || true
    rm -rf "$dir"
    ;;
  *) echo "usage: test-postgres.sh start|stop DIR" >&2; exit 2 ;;
esac
