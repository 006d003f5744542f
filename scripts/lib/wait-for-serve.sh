# Sourced by the scripts that start `hearth serve --listen 127.0.0.1:0 >STDOUT 2>LOG &`:
# `wait_for_serve PID STDOUT LOG` waits until it prints its address (up to 60 s) and sets `url`;
# exits with the log if the server stops or never says where it listens.
wait_for_serve() {
  local pid=$1 stdout=$2 log=$3
  for _ in $(seq 1 120); do
    grep -q '^listening on ' "$stdout" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "hearth serve exited" >&2; exit 1; }
    sleep 0.5
  done
  url=$(sed -n 's/^listening on //p' "$stdout")
  [ -n "$url" ] || { cat "$log"; echo "hearth serve did not start" >&2; exit 1; }
}
