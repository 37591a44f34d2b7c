#!/usr/bin/env bash
# Smoke test of the Kubernetes test bed (tests/k8s/testbed.sh): starts a fresh kube-apiserver +
# etcd in a temporary directory, installs Spillway's CRDs (crds/spillway.dev_crds.yaml), and checks
# that the pieces the end-to-end tests rely on really work: CRD establishment, custom resources
# and their short name, `kubectl explain` from the published OpenAPI, namespaces, ServiceAccount
# tokens through the TokenRequest API (and that the API server accepts them), Pods being stored
# (never run), and helm (version, template, and an install against the API server). Stops the
# test bed on exit.
# Output ends with `N passed, M failed`; the exit status is non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

TESTBED=tests/k8s/testbed.sh
WORK=$(mktemp -d "${TMPDIR:-/tmp}/spillway-k8s-smoke.XXXXXX")

cleanup() {
  bash "$TESTBED" stop "$WORK/cluster" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=tests/k8s/lib.sh
source tests/k8s/lib.sh





echo "==> starting the test bed in $WORK/cluster"
t0=$SECONDS
bash "$TESTBED" start "$WORK/cluster"
echo "    started in $((SECONDS - t0))s"
eval "$(bash "$TESTBED" env "$WORK/cluster")"
BIN_DIR=$(dirname "$(command -v kube-apiserver)")
check "status reports a ready test bed" bash "$TESTBED" status "$WORK/cluster"
contains "kubectl on PATH is the cached build" "$BIN_DIR/kubectl" command -v kubectl
contains "API server reports Kubernetes v1.34" '"gitVersion": "v1.34.' kubectl version -o json
contains "admin is system:masters" "system:masters" kubectl auth whoami

echo "==> CRDs"
check "apply CRDs" kubectl apply --server-side -f crds/spillway.dev_crds.yaml
check "CRDs Established" kubectl wait --for=condition=Established --timeout=30s \
  crd/aibackendpools.spillway.dev crd/aigateways.spillway.dev crd/tokenquotas.spillway.dev
cat >"$WORK/pool.yaml" <<'EOF'
apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata:
  name: smoke-pool
  namespace: default
spec:
  models: [gpt-4o]
  backends:
    - name: ptu
      url: http://127.0.0.1:9/
      priority: 1
    - name: paygo
      type: OpenAI
      url: http://127.0.0.1:10/
      priority: 2
EOF
check "apply an AIBackendPool" kubectl apply -f "$WORK/pool.yaml"
contains "get aibackendpools" smoke-pool kubectl get aibackendpools -n default
contains "get aipool (short name)" smoke-pool kubectl get aipool -n default
contains "defaults applied by the CRD schema" AzureOpenAI \
  kubectl get aipool smoke-pool -n default -o 'jsonpath={.spec.backends[0].type}'
check "schema rejects a backend without url" bash -c \
  "! kubectl apply -f - <<'EOF'
apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {name: bad-pool, namespace: default}
spec: {models: [m], backends: [{name: b}]}
EOF"
# rejected NAME EXPECTED MANIFEST: applying MANIFEST must fail with a message containing
# EXPECTED (schema limits and CEL rules catch the mistake at `kubectl apply` time).
apply_text() { kubectl apply -f - <<<"$1"; }
rejected() { rejects "$1" "$2" apply_text "$3"; }
POOL_HEAD='apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {name: cel-pool, namespace: default}'
rejected "CEL: empty backends" "should have at least 1 items" "$POOL_HEAD
spec: {models: [m], backends: []}"
rejected "CEL: priority below 1" "should be greater than or equal to 1" "$POOL_HEAD
spec: {models: [m], backends: [{name: b, url: 'http://x', priority: 0}]}"
rejected "CEL: weight 0" "should be greater than or equal to 1" "$POOL_HEAD
spec: {models: [m], backends: [{name: b, url: 'http://x', weight: 0}]}"
rejected "CEL: min greater than max in a status range" "min must not be greater than max" "$POOL_HEAD
spec:
  models: [m]
  backends: [{name: b, url: 'http://x'}]
  circuitBreaker:
    rules:
      - {name: r, tripDuration: 10s, failureCondition: {count: 1, interval: 10s, statusCodeRanges: [{min: 599, max: 500}]}}"
rejected "CEL: both count and percentage" "set exactly one of count or percentage" "$POOL_HEAD
spec:
  models: [m]
  backends: [{name: b, url: 'http://x'}]
  circuitBreaker:
    rules:
      - {name: r, tripDuration: 10s, failureCondition: {count: 1, percentage: 50, interval: 10s, statusCodeRanges: [{min: 429, max: 429}]}}"
rejected "CEL: a secret needs exactly one source" "set exactly one of secretRef, env or file" "$POOL_HEAD
spec: {models: [m], backends: [{name: b, url: 'http://x', apiKey: {env: A, file: /b}}]}"
rejected "CEL: a provisioned cost on the pool" "belongs to the backend" "$POOL_HEAD
spec:
  models: [m]
  pricing: {currency: USD, provisioned: {amount: '2.00', per: Hour}}
  backends: [{name: b, url: 'http://x'}]"
rejected "CEL: pricing with neither rates nor provisioned" "set rates" "$POOL_HEAD
spec: {models: [m], backends: [{name: b, url: 'http://x', pricing: {currency: USD}}]}"
rejected "schema: a price that is not an exact decimal" "should match" "$POOL_HEAD
spec: {models: [m], backends: [{name: b, url: 'http://x'}], pricing: {currency: USD, rates: [{input: '2.5e3'}]}}"
rejected "schema: a currency that is not ISO 4217" "should match" "$POOL_HEAD
spec: {models: [m], backends: [{name: b, url: 'http://x'}], pricing: {currency: usd, rates: [{input: '2.50'}]}}"
rejected "schema: a budget amount that is not an exact decimal" "should match" 'apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: cel-quota, namespace: default}
spec: {appId: a, budgets: [{period: Daily, amount: "ten", currency: USD}]}'
check "a priced pool is accepted" kubectl apply -f - <<'EOF'
apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {name: priced-pool, namespace: default}
spec:
  models: [priced]
  pricing:
    currency: USD
    rates: [{model: priced, input: "2.50", cachedInput: "1.25", output: "10.00"}]
  backends:
    - {name: ptu, url: 'http://x', pricing: {provisioned: {amount: "13000", per: Month}}}
    - {name: paygo, url: 'http://y', priority: 2}
EOF
check "a quota with only a money budget and token weights is accepted" kubectl apply -f - <<'EOF'
apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: spend, namespace: default}
spec:
  appId: web
  budgets: [{period: Monthly, amount: "250.00", currency: USD}]
  tokenWeights: {cachedInput: "0.1"}
EOF
rejected "CEL: unknown quota period" "Unsupported value" 'apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: cel-quota, namespace: default}
spec: {appId: a, quotas: [{period: Yearly, tokens: 10}]}'
rejected "CEL: a quota without any limit" "set at least one limit" 'apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: cel-quota, namespace: default}
spec: {appId: a}'
check "a valid TokenQuota is accepted" kubectl apply -f - <<'EOF'
apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: web, namespace: default}
spec: {appId: web, tokensPerMinute: 1000, quotas: [{period: Daily, tokens: 100000}]}
EOF
contains "get tq (short name) shows the app and TPM" "1000" kubectl get tq -n default
explain() {
  local out
  out=$(kubectl explain aibackendpool.spec.backends 2>&1) && [[ "$out" == *"The backends of the pool"* ]]
}
if eventually 30 explain; then pass "kubectl explain aibackendpool.spec.backends"; else
  fail "kubectl explain aibackendpool.spec.backends"
  kubectl explain aibackendpool.spec.backends 2>&1 | tail -n 20 >&2 || true
fi
contains "explain lists backend fields" "priority" kubectl explain aibackendpool.spec.backends
contains "kubectl explain aibackendpool says what the kind is" "A pool of Azure OpenAI" \
  kubectl explain aibackendpool
contains "kubectl explain tokenquota says what the kind is" "Token and request limits" \
  kubectl explain tokenquota
contains "kubectl explain aigateway says what the kind is" "Settings of the Spillway sidecars" \
  kubectl explain aigateway
for kind in aibackendpool tokenquota aigateway; do
  check "kubectl explain $kind is not the derive's placeholder" bash -c \
    "out=\$(kubectl explain $kind) && [[ \$out == *DESCRIPTION* && \$out != *Auto-generated* ]]"
done
contains "explain: weight names its default and minimum" "Default 1, minimum 1" \
  kubectl explain aibackendpool.spec.backends.weight
contains "explain: an AIGateway's key Secret is in its own namespace" "own namespace" \
  kubectl explain aigateway.spec.identity.apiKeys.key
contains "explain: status names the served generation" "servedGeneration" \
  kubectl explain aibackendpool.status
check "a valid AIGateway is accepted" kubectl apply -f - <<'EOF'
apiVersion: spillway.dev/v1alpha1
kind: AIGateway
metadata: {name: gw, namespace: default}
spec: {identity: {apiKeys: [{appId: web, keySha256: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'}]}}
EOF
contains "get aigw shows Ready, Served, Identity, CORS and Audit columns" \
  "READY   SERVED   IDENTITY   CORS   AUDIT" kubectl get aigw -n default
contains "get tq shows Ready, Served, Day and Month columns" "DAY" kubectl get tq -n default

echo "==> namespaces and ServiceAccount tokens"
check "create namespace" kubectl create namespace smoke
contains "namespace is Active" Active kubectl get namespace smoke -o 'jsonpath={.status.phase}'
check "create serviceaccount" kubectl create serviceaccount robot -n smoke
TOKEN=$(kubectl create token robot -n smoke --duration=10m 2>&1) || TOKEN=""
if [[ "$TOKEN" =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]]; then
  pass "kubectl create token returns a JWT"
else
  fail "kubectl create token returns a JWT (got: ${TOKEN:0:200})"
fi
SERVER=$(kubectl config view --minify -o 'jsonpath={.clusters[0].cluster.server}')
as_robot() {
  kubectl --kubeconfig=/dev/null --server="$SERVER" \
    --certificate-authority="$WORK/cluster/pki/ca.crt" --token="$TOKEN" "$@"
}
contains "API server authenticates the token" "system:serviceaccount:smoke:robot" \
  as_robot auth whoami -o 'jsonpath={.status.userInfo.username}'
check "RBAC denies the robot by default" bash -c \
  "! kubectl auth can-i list aibackendpools --as=system:serviceaccount:smoke:robot -A"

check "a Pod is accepted without a default ServiceAccount" \
  kubectl run app --image=example.invalid/app:1 -n smoke --restart=Never
contains "the stored Pod stays Pending (no scheduler, no kubelet)" Pending \
  kubectl get pod app -n smoke -o 'jsonpath={.status.phase}'

echo "==> helm"
contains "helm version" 'Version:"v3.' helm version
mkdir -p "$WORK/chart/templates"
cat >"$WORK/chart/Chart.yaml" <<'EOF'
apiVersion: v2
name: smoke
version: 0.1.0
EOF
cat >"$WORK/chart/values.yaml" <<'EOF'
greeting: hello
EOF
cat >"$WORK/chart/templates/configmap.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  greeting: {{ .Values.greeting | quote }}
EOF
contains "helm template renders values" 'greeting: "bonjour"' \
  helm template smoke "$WORK/chart" --set greeting=bonjour
check "helm install against the API server" helm install smoke "$WORK/chart" -n smoke --wait --timeout 60s
contains "helm-installed ConfigMap is stored" hello \
  kubectl get configmap smoke-config -n smoke -o 'jsonpath={.data.greeting}'
contains "helm list shows the release" deployed helm list -n smoke

echo "==> stopping"
check "stop" bash "$TESTBED" stop "$WORK/cluster"
check "status reports it stopped" bash -c "! bash $TESTBED status $WORK/cluster"

summary
