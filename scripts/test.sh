#!/usr/bin/env bash
# Runs every test: formatting and lints (host and wasm32), the native unit tests of
# the pure core, then the black-box suite against the real Worker in workerd
# (wrangler dev, started per test session on free 127.0.0.1 ports), driven by raw
# HTTP and by the real academy-py clients (1.0.0, and 0.1.0 in its own venv), and by
# schemathesis from the OpenAPI document, with every answer checked against that
# document; last, a smoke run of the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (host and wasm32)"
cargo clippy --all-targets --quiet -- -D warnings
cargo clippy --target wasm32-unknown-unknown --quiet -- -D warnings
step "native unit tests (cargo test)"
cargo test --quiet

step "build the Worker once"
start=$(date +%s)
bash scripts/build.sh
echo "built in $(( $(date +%s) - start ))s"

step "black-box tests against the Worker in workerd (pytest), every answer checked against docs/openapi.json"
export EXCHANGE_SKIP_BUILD=1
EXCHANGE_CHECK_OPENAPI=1 .venv/bin/python -m pytest -c tests/pytest.ini "$@"

step "benchmark smoke run (checks every target and workload works; figures are not judged)"
.venv/bin/python bench/run.py --smoke
