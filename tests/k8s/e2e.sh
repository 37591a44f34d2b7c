#!/usr/bin/env bash
# End-to-end test of Spillway on a real kube-apiserver + etcd (tests/k8s/testbed.sh):
#   1. starts a fresh test bed in its own temporary directory (so it never meets another test
#      bed running on this machine: its own etcd data, certificates and free loopback ports);
#   2. installs the CRDs and checks that every example under examples/ (except the demo) is
#      accepted by the API server (`kubectl apply --dry-run=server`, schema and CEL rules);
#   3. creates the operator's ServiceAccount and RBAC from the Helm chart itself
#      (`helm template … --show-only templates/rbac.yaml`), checks what that RBAC allows and
#      refuses, and writes a kubeconfig holding only that ServiceAccount's token;
#   4. creates the apps' namespace and the sidecars' ServiceAccount;
#   5. runs the Rust scenario `tools/tests/e2e_kubernetes.rs` (operator + two sidecars as local
#      processes, simulators as backends; see that file) with the paths it needs;
#   6. then, in the same namespace, `tools/tests/e2e_never_fail_open.rs`: bad edits of every
#      kind and an operator restart, checked through a real sidecar (see that file);
#   7. then `tools/tests/e2e_shared_pools.rs` in namespaces of its own: a platform pool and
#      central quotas shared by namespace label, keys only over the stream, revocation.
# Uses the binaries of `cargo build --workspace --all-features --bins` (built here if missing;
# a no-op after tests/run-all.sh built them). Stops the test bed on exit; set
# SPILLWAY_E2E_KEEP=1 to keep the directory (logs, kubeconfigs) for a look afterwards.
# Output ends with `N passed, M failed`; the exit status is non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

TESTBED=tests/k8s/testbed.sh
WORK=$(mktemp -d "${TMPDIR:-/tmp}/spillway-k8s-e2e.XXXXXX")
CLUSTER=$WORK/cluster
OPERATOR_NS=spillway-system
OPERATOR_SA=spillway-operator
APPS_NS=ai-apps

cleanup() {
  bash "$TESTBED" stop "$CLUSTER" || true
  if [[ -n "${SPILLWAY_E2E_KEEP:-}" ]]; then
    echo "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
# shellcheck source=tests/k8s/lib.sh
source tests/k8s/lib.sh

echo "==> building (no-op when up to date)"
cargo build --workspace --all-features --bins --quiet

echo "==> starting the test bed in $CLUSTER"
bash "$TESTBED" start "$CLUSTER"
eval "$(bash "$TESTBED" env "$CLUSTER")"

echo "==> CRDs and the examples"
check "apply CRDs" kubectl apply --server-side -f crds/spillway.dev_crds.yaml
check "CRDs Established" kubectl wait --for=condition=Established --timeout=30s \
  crd/aibackendpools.spillway.dev crd/aigateways.spillway.dev crd/tokenquotas.spillway.dev
examples=0
for dir in examples/*/; do
  name=$(basename "$dir")
  [[ "$name" == demo ]] && continue
  examples=$((examples + 1))
  check "the API server accepts examples/$name (dry-run=server)" \
    kubectl apply --dry-run=server -n default -f "$dir"
done
if ((examples >= 3)); then pass "found $examples examples"; else fail "found $examples examples (want 3)"; fi

echo "==> the operator's ServiceAccount with the chart's RBAC"
check "create namespace $OPERATOR_NS" kubectl create namespace "$OPERATOR_NS"
helm template spillway charts/spillway -n "$OPERATOR_NS" \
  --show-only templates/serviceaccount.yaml --show-only templates/rbac.yaml >"$WORK/rbac.yaml"
contains "the chart renders a ServiceAccount and a ClusterRole" "kind: ClusterRole" cat "$WORK/rbac.yaml"
check "apply the chart's ServiceAccount and RBAC" kubectl apply -f "$WORK/rbac.yaml"
AS="system:serviceaccount:$OPERATOR_NS:$OPERATOR_SA"
can() { [[ "$(kubectl auth can-i "$@" --as="$AS")" == yes ]]; }
cannot() { ! can "$@"; }
check "RBAC: watch pools in every namespace" can watch aibackendpools.spillway.dev -A
check "RBAC: patch pool status" can patch aibackendpools.spillway.dev --subresource=status -n "$APPS_NS"
check "RBAC: read Secrets" can get secrets -n "$APPS_NS"
check "RBAC: create TokenReviews" can create tokenreviews.authentication.k8s.io
check "RBAC: update its Lease" can update leases.coordination.k8s.io/spillway-operator -n "$OPERATOR_NS"
check "RBAC: no writes to specs" cannot update aibackendpools.spillway.dev -n "$APPS_NS"
check "RBAC: no deleting Secrets" cannot delete secrets -n "$APPS_NS"
check "RBAC: no Leases outside its namespace" cannot update leases.coordination.k8s.io/spillway-operator -n "$APPS_NS"

TOKEN=$(kubectl create token "$OPERATOR_SA" -n "$OPERATOR_NS" --duration=2h)
SERVER=$(kubectl config view --minify -o 'jsonpath={.clusters[0].cluster.server}')
OPERATOR_KUBECONFIG=$WORK/operator.kubeconfig
okc=(kubectl --kubeconfig="$OPERATOR_KUBECONFIG")
"${okc[@]}" config set-cluster testbed --server="$SERVER" \
  --certificate-authority="$CLUSTER/pki/ca.crt" --embed-certs=true >/dev/null
"${okc[@]}" config set-credentials operator --token="$TOKEN" >/dev/null
"${okc[@]}" config set-context operator --cluster=testbed --user=operator >/dev/null
"${okc[@]}" config use-context operator >/dev/null
chmod 600 "$OPERATOR_KUBECONFIG"
contains "the operator kubeconfig authenticates as its ServiceAccount" "$AS" \
  "${okc[@]}" auth whoami -o 'jsonpath={.status.userInfo.username}'

echo "==> the apps' namespace"
check "create namespace $APPS_NS" kubectl create namespace "$APPS_NS"
check "create the sidecars' ServiceAccount" kubectl create serviceaccount gateway -n "$APPS_NS"

echo "==> the scenario (tools/tests/e2e_kubernetes.rs)"
export SPILLWAY_E2E_KUBECONFIG=$KUBECONFIG
export SPILLWAY_E2E_OPERATOR_KUBECONFIG=$OPERATOR_KUBECONFIG
export SPILLWAY_E2E_OPERATOR_NAMESPACE=$OPERATOR_NS
export SPILLWAY_E2E_OPERATOR_BIN=$PWD/target/debug/spillway-operator
export SPILLWAY_E2E_LOG_DIR=$WORK/logs
# scenario NAME TEST WHAT: runs the ignored test binary tools/tests/TEST.rs (--workspace: the
# same feature set as the build above, so nothing is compiled again) and checks it ran once.
scenario() {
  local log=$WORK/$1.log
  echo "==> the scenario $1 (tools/tests/$2.rs)"
  if cargo test --workspace --all-features --test "$2" -- --ignored --nocapture \
    2>&1 | tee "$log" | sed 's/^/    /'; then
    pass "$3"
  else
    fail "the scenario $1 (tools/tests/$2.rs)"
    for process_log in "$WORK"/logs/*.log; do
      [[ -e "$process_log" ]] || continue
      echo "--- last lines of $(basename "$process_log")" >&2
      tail -n 30 "$process_log" >&2
    done
  fi
  if grep -q 'test result: ok. 1 passed' "$log"; then
    pass "the scenario $1 ran (not skipped)"
  else
    fail "the scenario $1 did not run exactly once"
  fi
}
scenario end-to-end e2e_kubernetes \
  "operator, two sidecars, two apps: spillover, quota, OTLP = ledger, pool deletion"
# In the same namespace, which it empties first.
scenario never-fail-open e2e_never_fail_open \
  "bad edits (keySha256, deleted Secret, pool URL, rival pool, quota) and an operator restart never fail open"
# Its own namespaces (platform, team-a/b/c), emptied first.
scenario shared-pools e2e_shared_pools \
  "a platform pool shared by namespace label: key only over the stream, revocation, central + local quotas, usage per namespace"

summary
