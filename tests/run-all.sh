#!/usr/bin/env bash
# Runs every Spillway test: the Rust workspace (unit, golden and integration tests with real
# `spillway run` / `spillway simulate` processes on 127.0.0.1) and the official OpenAI Python
# SDK against the gateway. Self-sufficient on a fresh machine with Rust and Python 3: it builds
# what it needs and creates the SDK's virtualenv (.venv, reused on later runs).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
echo "==> building"
cargo build --workspace --all-features --bins

echo "==> Rust tests"
cargo test --workspace --all-features

echo "==> OpenAI SDK tests"
venv=${SPILLWAY_VENV:-.venv}
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
SPILLWAY_BIN="$PWD/target/debug/spillway" "$venv/bin/python" -m pytest tests/sdk -q -p no:cacheprovider
