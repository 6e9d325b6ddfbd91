#!/usr/bin/env bash
# Installs everything the build and the tests need, offline-safe and idempotent:
# the wasm32 target, worker-build and wasm-bindgen-cli (pinned; the CLI must match
# the wasm-bindgen version in Cargo.lock exactly), wrangler from npm (its esbuild is
# what worker-build bundles with), a Python venv with academy-py 1.0.0, and one each
# with academy-py 0.5.0 and 0.1.0 (older clients; same package name, so their own venvs).
# Nothing is downloaded from outside the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)

log() { printf 'bootstrap: %s\n' "$*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

installed_version() { # binary -> its version number, or nothing if absent
  "$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n 1 || true
}

if [ "$(installed_version worker-build)" != "$WORKER_BUILD_VERSION" ]; then
  log "installing worker-build $WORKER_BUILD_VERSION"
  cargo install --locked --quiet worker-build --version "$WORKER_BUILD_VERSION"
fi
if [ "$(installed_version wasm-bindgen)" != "$WASM_BINDGEN_VERSION" ]; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  # Not --locked: its lockfile pins a webpki-roots release the registry no longer serves.
  cargo install --quiet wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

# A copy of the lockfile marks what node_modules was installed from.
if [ ! -x node_modules/.bin/wrangler ] || ! cmp -s package-lock.json node_modules/.installed-from-lock; then
  log "installing npm packages (wrangler)"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-from-lock
fi

# A copy of each requirements file marks what its venv was installed from.
install_venv() { # venv directory, requirements file, what it is for
  if [ ! -x "$1/bin/python" ] || ! cmp -s "$2" "$1/requirements.txt"; then
    log "creating the Python venv for $3"
    python3 -m venv "$1"
    "$1/bin/pip" install --quiet --disable-pip-version-check -r "$2"
    cp "$2" "$1/requirements.txt"
  fi
}
install_venv .venv tests/requirements.txt "the client tests"
install_venv .venv-academy050 tests/requirements-academy050.txt "the academy-py 0.5.0 client test"
install_venv .venv-academy010 tests/requirements-academy010.txt "the academy-py 0.1.0 client test"
