#!/usr/bin/env bash
# The gateway hop, side by side in one run: a fast OpenAI-compatible upstream (its own
# process), requests straight to it, through hearth, and through LiteLLM's proxy (the peer),
# at a fixed rate in interleaved rounds, then at full speed with concurrent clients.
# Usage: scripts/bench/gateway.sh [extra `hearth bench gateway` flags, e.g. --rps 1000]
set -euo pipefail
cd "$(dirname "$0")/../.."
HEARTH=${HEARTH:-target/release/hearth}
VENV=${LITELLM_VENV:-$HOME/.cache/hearth/venv-litellm}
if [ ! -x "$VENV/bin/litellm" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "litellm[proxy]"
fi
source scripts/bench/common.sh
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

upstream_port=$(free_port)
"$HEARTH" bench upstream --listen "127.0.0.1:$upstream_port" > "$work/upstream.log" 2>&1 &
peer_port=$(free_port)
cat > "$work/litellm.yaml" <<YAML
model_list:
  - model_name: fast
    litellm_params:
      model: openai/fast
      api_base: http://127.0.0.1:$upstream_port/v1
      api_key: none
litellm_settings:
  telemetry: false
YAML
# Defaults otherwise; no master key (local run) and no price-map download (offline).
LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true LITELLM_LOCAL_MODEL_COST_MAP=True \
    "$VENV/bin/litellm" --config "$work/litellm.yaml" --host 127.0.0.1 --port "$peer_port" \
    --num_workers 1 > "$work/litellm.log" 2>&1 &
wait_healthy "http://127.0.0.1:$peer_port" /health/liveliness
"$VENV/bin/litellm" --version 2>/dev/null | head -1 >&2 || true
"$HEARTH" bench gateway --upstream "http://127.0.0.1:$upstream_port/v1" \
    --peer "http://127.0.0.1:$peer_port/v1" "$@"
