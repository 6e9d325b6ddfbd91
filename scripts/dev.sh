#!/usr/bin/env bash
# Runs the exchange locally: wrangler dev on http://127.0.0.1:8787 with persistent
# local storage in .state/ (mailboxes and queued messages survive restarts).
# Extra arguments go to wrangler, e.g. `scripts/dev.sh --port 9000`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_SEND_METRICS=false
exec node_modules/.bin/wrangler dev --ip 127.0.0.1 --port 8787 --persist-to .state "$@"
