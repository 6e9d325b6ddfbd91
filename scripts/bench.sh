#!/usr/bin/env bash
# Benchmarks this worker (workerd direct and under wrangler dev) against academy's
# own exchange server (in memory and on Redis); see README "Benchmark".
#   scripts/bench.sh                  full run: several interleaved rounds (~15 min on 2 cores);
#                                     installs redis-server with apt if it is missing (root)
#   scripts/bench.sh --smoke          one tiny round of every target and workload (~2 min);
#                                     Redis only if redis-server is already installed
#   scripts/bench.sh --baseline REV   also the build of an earlier commit, as target
#                                     workerd-before, in the same interleaved run
# Other arguments go to bench/run.py. Exits non-zero if a target fails to start or a
# message is lost, duplicated or reordered.
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds commit $1 in a temporary worktree (outside the repository) and prints the
# directory holding its build/: target/bench-before/<commit>, kept for the next run.
# Compiled dependencies are shared between such builds in target/bench-before/cargo.
build_commit() ( # a subshell: its EXIT trap removes the worktree, also on failure
  commit=$(git rev-parse --verify "$1^{commit}")
  dest="$PWD/target/bench-before/$commit"
  if [ -f "$dest/index.js" ]; then
    echo "bench: reusing the build of $commit in $dest" >&2
    echo "$dest"
    exit 0
  fi
  tree=$(mktemp -d)
  trap 'git worktree remove --force "$tree/src" 2>/dev/null || true; rm -rf "$tree"' EXIT
  echo "bench: building $commit (git worktree in $tree/src)" >&2
  git worktree add --quiet --detach "$tree/src" "$commit"
  ln -s "$PWD/node_modules" "$tree/src/node_modules"
  cargo_dir="$PWD/target/bench-before/cargo"
  (cd "$tree/src" && EXCHANGE_SKIP_BUILD='' CARGO_TARGET_DIR="$cargo_dir" bash scripts/build.sh) >&2
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest.partial"
  cp -r "$tree/src/build" "$dest.partial"
  mv "$dest.partial" "$dest"
  echo "$dest"
)

args=()
baseline=
while [ $# -gt 0 ]; do
  case "$1" in
    --baseline) baseline="${2:?--baseline needs a commit}"; shift 2 ;;
    --baseline=*) baseline="${1#*=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
smoke=
for arg in "${args[@]}"; do
  [ "$arg" = --smoke ] && smoke=1
done

bash scripts/bootstrap.sh
bash scripts/build.sh
if [ -n "$baseline" ]; then
  before_dir=$(build_commit "$baseline")
  args+=(--baseline-build "$before_dir" --baseline-rev "$(git rev-parse --short "$baseline^{commit}")")
fi
if [ -z "$smoke" ] && ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "bench: installing redis-server (apt) for the academy-redis target" >&2
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  else
    echo "bench: redis-server is not installed; the academy-redis target will be left out" >&2
  fi
fi
exec .venv/bin/python bench/run.py "${args[@]}"
