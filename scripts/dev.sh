#!/usr/bin/env bash
# Runs the exchange locally: wrangler dev on http://127.0.0.1:8787 with persistent
# local storage in .state/ (mailboxes and queued messages survive restarts).
# EXCHANGE_PORT and EXCHANGE_STATE_DIR change the port and the storage directory;
# extra arguments go to wrangler (e.g. `--var LISTEN_TIMEOUT_S:30`).
#
# Authentication: wrangler.toml sets no AUTH_METHOD (so a deployment must choose
# one). Locally this script chooses `none` -- anyone on this machine may use the
# exchange -- unless you choose otherwise, by environment or in .dev.vars (wrangler's
# file for local-only settings and secrets, never deployed):
#   AUTH_METHOD=token scripts/dev.sh   # with EXCHANGE_TOKENS='{...}' in .dev.vars
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_SEND_METRICS=false
settings=()
if [ -n "${AUTH_METHOD:-}" ] || ! grep -qs '^[[:space:]]*AUTH_METHOD[[:space:]]*=' .dev.vars; then
  settings+=(--var "AUTH_METHOD:${AUTH_METHOD:-none}")
fi
exec node_modules/.bin/wrangler dev --ip 127.0.0.1 --port "${EXCHANGE_PORT:-8787}" \
  --persist-to "${EXCHANGE_STATE_DIR:-.state}" "${settings[@]}" "$@"
