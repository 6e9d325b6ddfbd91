#!/usr/bin/env bash
# Benchmarks this worker against academy's own exchange (see README "Benchmark").
#   scripts/bench.sh           full run (installs redis-server from Debian if missing)
#   scripts/bench.sh --smoke   one tiny round, as CI runs it
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/build.sh
if [ "${1:-}" != "--smoke" ] && ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  else
    echo "bench: redis-server is not installed; the academy-redis target will be left out" >&2
  fi
fi
exec .venv/bin/python bench/run.py "$@"
