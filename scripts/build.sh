#!/usr/bin/env bash
# Builds the Worker (wasm + JS shim) into build/, with the entry module beside it
# (src/js/entry.mjs, the object classes as RPC needs them, as build/entry.mjs).
# worker-build would download wasm-bindgen and esbuild from the internet; we point
# it at the pinned copies that scripts/bootstrap.sh installed instead, and wasm-opt
# is disabled in Cargo.toml.
#
# EXCHANGE_SKIP_BUILD=1 makes this a no-op when build/ exists: the tests build once
# and then start `wrangler dev` many times without rebuilding.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${EXCHANGE_SKIP_BUILD:-}" = 1 ] && [ -f build/entry.mjs ]; then
  exit 0
fi
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-wasm-bindgen}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/@esbuild/linux-x64/bin/esbuild}"
worker-build --release
cp src/js/entry.mjs build/entry.mjs
