#!/usr/bin/env bash
# Runs every Spillway test:
#   1. the Rust workspace: unit, golden and integration tests with real `spillway run` /
#      `spillway simulate` processes on 127.0.0.1 and a real `redis-server`;
#   2. the official OpenAI Python SDK against the gateway;
#   3. the Helm chart, the CRDs and the end-to-end scenario (operator + two sidecars) against
#      a real kube-apiserver + etcd (and kubectl, helm)
#      built from the official Go modules into a cache outside the repo (tests/k8s/testbed.sh).
# Self-sufficient on a fresh machine with Rust, Python 3 and Go: it installs redis-server and
# python3-venv from Debian when missing, creates the SDK's virtualenv (.venv, reused) and
# builds the Kubernetes binaries once (cached in ~/.cache/spillway/k8s).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v make >/dev/null || need_apt+=(make) # builds jemalloc
if ((${#need_apt[@]})); then
  echo "==> installing ${need_apt[*]}"
  if [[ $(id -u) -ne 0 ]]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

echo "==> building"
cargo build --workspace --all-features --bins

# Every stage runs even when an earlier one failed, so one run shows every failure; the
# command fails at the end if any stage did.
failed=()
stage() {
  local name=$1
  shift
  echo "==> $name"
  if ! "$@"; then
    echo "==> FAILED: $name"
    failed+=("$name")
  fi
}

sdk_tests() {
  local venv=${SPILLWAY_VENV:-.venv}
  if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv" || return 1
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt || return 1
  "$venv/bin/python" -m pytest tests/sdk -q -p no:cacheprovider
}

# The operator's tests start real sidecars: this binary, built above with every feature.
export SPILLWAY_BIN="$PWD/target/debug/spillway"
stage "Rust tests" cargo test --workspace --all-features --no-fail-fast
stage "OpenAI SDK tests" sdk_tests
stage "Kubernetes: the Helm chart on a real API server" bash tests/k8s/chart.sh
stage "Kubernetes: CRDs (schema, CEL rules, explain) on a real API server" bash tests/k8s/smoke.sh
stage "Kubernetes: sidecar injection webhook on a real API server" bash tests/k8s/inject.sh
stage "Kubernetes: end to end (operator, two sidecars, the examples) on a real API server" \
  bash tests/k8s/e2e.sh

if ((${#failed[@]})); then
  echo "==> ${#failed[@]} stage(s) failed:"
  printf '    %s\n' "${failed[@]}"
  exit 1
fi
echo "==> all tests passed"
