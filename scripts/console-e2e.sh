#!/usr/bin/env bash
# The console's end-to-end tests (tests/console) in a real headless Chromium, driven by
# playwright-core, against a live `hearth serve` on loopback with the real test models: the
# support inbox on a handed-over conversation, roles, keys, spend and the security checks.
# Models pulled from the console come from a fake Hugging Face Hub on loopback
# (tests/console/fake-hub.mjs) into a Hub cache of the run's own: nothing reaches the real Hub
# or touches the user's cache.
# Screenshots of every page go to $HEARTH_SCREENSHOTS (default target/ci-artifacts/console).
set -euo pipefail
. "$(dirname "$0")/lib/wait-for-serve.sh"
cd "$(dirname "$0")/.."
models=${HEARTH_TEST_MODELS:-$(scripts/fetch-test-models.sh)}
node_modules=$(scripts/node-client.sh)
chromium=${CHROMIUM:-$(command -v chromium || true)}
[ -x "$chromium" ] || { echo "console-e2e: chromium not found (scripts/setup.sh installs it)" >&2; exit 1; }
# Same flags as scripts/test.sh, so this reuses its build instead of making another.
cargo build --release --workspace --all-targets --quiet
bin="${CARGO_TARGET_DIR:-target}/release/hearth"
shots=${HEARTH_SCREENSHOTS:-${CARGO_TARGET_DIR:-target}/ci-artifacts/console}
rm -rf "$shots"
mkdir -p "$shots"
data=$(mktemp -d)
log="$data/server.log"
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null
  wait "${pid:-}" 2>/dev/null || true
  [ -n "${hub_pid:-}" ] && kill "$hub_pid" 2>/dev/null
  wait "${hub_pid:-}" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
export HEARTH_LOG=warn
# The fake Hub serves the test GGUF as hearth-test/tiny-GGUF; it prints its URL once it listens.
gguf="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$gguf" ] || { echo "console-e2e: the test model $gguf is missing" >&2; exit 1; }
HEARTH_FAKE_HUB_GGUF="$gguf" node tests/console/fake-hub.mjs >"$data/hub.stdout" 2>"$data/hub.log" &
hub_pid=$!
hub_url=
for _ in $(seq 1 60); do
  hub_url=$(sed -n '1{/^http:\/\//p}' "$data/hub.stdout" 2>/dev/null || true)
  [ -n "$hub_url" ] && break
  kill -0 "$hub_pid" 2>/dev/null || { cat "$data/hub.log" >&2; echo "console-e2e: the fake Hub exited" >&2; exit 1; }
  sleep 0.5
done
[ -n "$hub_url" ] || { cat "$data/hub.log" >&2; echo "console-e2e: the fake Hub did not say where it listens" >&2; exit 1; }
# Every hearth command below pulls from the fake Hub into the run's own cache, with no token.
export HF_ENDPOINT="$hub_url" HF_HUB_CACHE="$data/hub" HF_HOME="$data/hf"
unset HF_TOKEN HUGGING_FACE_HUB_TOKEN HF_TOKEN_PATH HF_HUB_OFFLINE HUGGINGFACE_HUB_CACHE
# The agent follows the demo company's policy (shared/data/retail, beside the repository).
policy="$(pwd)/../shared/data/retail/policy.md"
[ -f "$policy" ] || { echo "console-e2e: the retail policy ($policy) is missing" >&2; exit 1; }
printf '[support]\npolicy = "%s"\n' "$policy" >"$data/hearth.toml"
"$bin" --data-dir "$data" models import "$models/SmolLM2-135M-Instruct.Q4_1.gguf" --name smollm2 >/dev/null
"$bin" --data-dir "$data" models import "$models/all-MiniLM-L6-v2" --name minilm >/dev/null
# A recommender trained on MovieLens-100K and a knowledge base of the policy, for those pages.
movielens=${HEARTH_MOVIELENS:-$(scripts/fetch-movielens.sh)}
"$bin" --data-dir "$data" recs import --items "$movielens/ml-100k.item" --events "$movielens/ml-100k.inter" >/dev/null
"$bin" --data-dir "$data" recs train >/dev/null
mkdir -p "$data/kb"
cp "$policy" "$data/kb/policy.md"
"$bin" --data-dir "$data" support kb add "$data/kb" >/dev/null
password="console-e2e-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
for account in ana:admin sam:support tom:support vic:viewer; do
  printf '%s\n' "$password" | "$bin" --data-dir "$data" users create "${account%%:*}" --role "${account##*:}" >/dev/null
done
"$bin" --data-dir "$data" serve --listen 127.0.0.1:0 --model smollm2 >"$data/stdout" 2>"$log" &
pid=$!
wait_for_serve "$pid" "$data/stdout" "$log"
HEARTH_URL="$url" HEARTH_SCREENSHOTS="$shots" HEARTH_CONSOLE_PASSWORD="$password" CHROMIUM="$chromium" \
  HEARTH_FAKE_HUB_URL="$hub_url" NODE_PATH="$node_modules" node --test --test-concurrency=1 tests/console/ \
  || { tail -50 "$log"; echo "console-e2e: the fake Hub's requests:" >&2; tail -20 "$data/hub.log" >&2; exit 1; }
echo "console-e2e: screenshots in $shots"
