#!/usr/bin/env bash
# Benchmarks this worker (workerd direct and under wrangler dev) against academy's
# own exchange server (in memory and on Redis); see README "Benchmark".
#   scripts/bench.sh           full run: several interleaved rounds (~11 min on 2 cores);
#                              installs redis-server with apt if it is missing (root)
#   scripts/bench.sh --smoke   one tiny round of every target and workload (~1 min);
#                              Redis only if redis-server is already installed
# Exits non-zero if a target fails to start or a message is lost, duplicated or reordered.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/build.sh
if [ "${1:-}" != "--smoke" ] && ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "bench: installing redis-server (apt) for the academy-redis target" >&2
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  else
    echo "bench: redis-server is not installed; the academy-redis target will be left out" >&2
  fi
fi
exec .venv/bin/python bench/run.py "$@"
