#!/usr/bin/env bash
# Sidecar injection on a real kube-apiserver + etcd (tests/k8s/testbed.sh): the operator runs as
# a local process serving HTTPS on 127.0.0.1 with its generated CA; the chart's
# MutatingWebhookConfiguration (its selectors, failurePolicy, caBundle) is registered with
# clientConfig.url pointing at that process. Pods are created with kubectl and read back as the
# API server stored them (no kubelet: they are never run):
#   - a Pod labelled spillway.dev/inject=enabled gets the native sidecar (init container with
#     restartPolicy Always and the operator flags), the projected token volume (audience
#     spillway + the operator's CA), and the SDK env vars in each app container; an app's own
#     OPENAI_BASE_URL is kept;
#   - a Pod in a namespace labelled enabled is injected; one labelled disabled there is not;
#     an unlabelled Pod in an unlabelled namespace is not;
#   - creating a Pod from an injected Pod (a second admission) and re-applying keep one sidecar;
#   - POST /mutate needs no token (the config stream still does);
#   - a Pod that cannot be injected (port clash) is admitted with a warning under `allow`, and
#     refused with the reason under `deny`;
#   - with the operator stopped: failurePolicy Ignore creates the Pod uninjected, Fail refuses
#     it with a message naming the webhook.
# Output ends with `N passed, M failed`; the exit status is non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

TESTBED=tests/k8s/testbed.sh
CHART=charts/spillway
WORK=$(mktemp -d "${TMPDIR:-/tmp}/spillway-k8s-inject.XXXXXX")
OPERATOR_PID=""

stop_operator() {
  if [[ -n "$OPERATOR_PID" ]]; then
    kill "$OPERATOR_PID" 2>/dev/null || true
    wait "$OPERATOR_PID" 2>/dev/null || true
    OPERATOR_PID=""
  fi
}
cleanup() {
  stop_operator
  bash "$TESTBED" stop "$WORK/cluster" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=tests/k8s/lib.sh
source tests/k8s/lib.sh

echo "==> building the operator"
cargo build -q -p spillway-operator --bin spillway-operator
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
OPERATOR_BIN="$TARGET_DIR/debug/spillway-operator"

echo "==> starting the test bed in $WORK/cluster"
bash "$TESTBED" start "$WORK/cluster" >/dev/null
eval "$(bash "$TESTBED" env "$WORK/cluster")"
check "apply the CRDs" kubectl apply --server-side -f crds/spillway.dev_crds.yaml
check "CRDs Established" kubectl wait --for=condition=Established --timeout=30s \
  crd/aibackendpools.spillway.dev crd/tokenquotas.spillway.dev crd/aigateways.spillway.dev

OPERATOR_URL=https://spillway-operator.spillway-system.svc:8443
SIDECAR_IMAGE=example.invalid/spillway:inject-test
STREAM=""
# start_operator ON_ERROR: starts the operator (webhook on), sets STREAM to its HTTPS address.
start_operator() {
  local run=$WORK/operator-$1
  mkdir -p "$run"
  "$OPERATOR_BIN" --stream-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --generated-tls-dir "$WORK/tls" --no-leader-election \
    --inject-image "$SIDECAR_IMAGE" --inject-operator-url "$OPERATOR_URL" \
    --inject-on-error "$1" >"$run/stdout" 2>"$run/stderr" &
  OPERATOR_PID=$!
  ready_line() { [[ -s "$run/stdout" ]]; }
  if ! eventually 60 ready_line; then
    tail -n 20 "$run/stderr" >&2
    return 1
  fi
  STREAM=$(head -n 1 "$run/stdout" | python3 -c 'import json, sys; print(json.load(sys.stdin)["stream"])')
}
# register FAILURE_POLICY: the chart's webhook configuration, pointed at the local operator.
register() {
  helm template spillway "$CHART" -n spillway-system --show-only templates/injector.yaml \
    --set injector.enabled=true,injector.failurePolicy="$1" |
    kubectl create --dry-run=client -o json -f - |
    python3 -c '
import base64, json, sys
config = json.load(sys.stdin)
ca = base64.b64encode(open(sys.argv[2], "rb").read()).decode()
for webhook in config["webhooks"]:
    webhook["clientConfig"] = {"url": "https://%s/mutate" % sys.argv[1], "caBundle": ca}
json.dump(config, sys.stdout)' "$STREAM" "$WORK/tls/ca.crt" >"$WORK/webhook.json"
  kubectl apply -f "$WORK/webhook.json"
}
# pod_manifest NAME NAMESPACE LABEL [CONTAINER_PORT]: a Pod with two app containers (the second
# sets its own OPENAI_BASE_URL) and an init container; LABEL is the spillway.dev/inject value
# or "" for none.
pod_manifest() {
  local labels='{}'
  [[ -n "$3" ]] && labels="{\"spillway.dev/inject\": \"$3\"}"
  cat <<EOF
{"apiVersion": "v1", "kind": "Pod",
 "metadata": {"name": "$1", "namespace": "$2", "labels": $labels},
 "spec": {
   "initContainers": [{"name": "migrate", "image": "example.invalid/migrate:1"}],
   "containers": [
     {"name": "web", "image": "example.invalid/web:1", "ports": [{"containerPort": ${4:-8080}}]},
     {"name": "worker", "image": "example.invalid/worker:1",
      "env": [{"name": "OPENAI_BASE_URL", "value": "https://mine.example/v1"}]}]}}
EOF
}
create_pod() { pod_manifest "$@" | kubectl create -f - 2>&1; }
# sidecars NAME NAMESPACE: how many containers named spillway the stored Pod has.
sidecars() {
  kubectl get pod "$1" -n "$2" -o json | python3 -c '
import json, sys
spec = json.load(sys.stdin)["spec"]
print(sum(c["name"] == "spillway" for c in spec.get("initContainers", []) + spec["containers"]))'
}
# injected_dry_run: a server-side dry run of a labelled Pod comes back injected (the API server
# has picked up the webhook configuration).
injected_dry_run() {
  [[ "$(pod_manifest probe team-pod enabled | kubectl create --dry-run=server -o json -f - 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["spec"].get("initContainers", [{}])[0].get("name"))')" == spillway ]]
}

check "create namespace team-pod (unlabelled)" kubectl create namespace team-pod
check "create namespace team-ns (labelled)" kubectl create namespace team-ns
check "label team-ns spillway.dev/inject=enabled" kubectl label namespace team-ns spillway.dev/inject=enabled

echo "==> operator with the webhook (inject-on-error allow), failurePolicy Ignore"
# Not through `check`: these set OPERATOR_PID and STREAM, which a subshell would lose.
if start_operator allow; then pass "the operator starts and prints its HTTPS address $STREAM"; else
  fail "the operator starts and prints its HTTPS address"
fi
check "register the chart's webhook configuration at https://$STREAM/mutate" register Ignore
check "the API server calls the webhook (server-side dry run comes back injected)" eventually 30 injected_dry_run
post_mutate() {
  curl -sS --cacert "$WORK/tls/ca.crt" -H 'content-type: application/json' \
    --data '{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u-1", "kind": 5}}' \
    "https://$STREAM/mutate"
}
contains "POST /mutate needs no token; a bad review is answered per --inject-on-error (allow)" \
  '"uid":"u-1","allowed":true' post_mutate
contains "the config stream still wants a token" 401 \
  curl -sS -o /dev/null -w '%{http_code}' --cacert "$WORK/tls/ca.crt" "https://$STREAM/v1/snapshots/watch"

echo "==> a labelled Pod"
check "create Pod labelled spillway.dev/inject=enabled" create_pod labelled team-pod enabled
kubectl get pod labelled -n team-pod -o json >"$WORK/labelled.json"
# stored EXPR: evaluates a Python expression over the stored Pod `pod` (helpers: init, env).
stored() {
  python3 - "$WORK/labelled.json" "$1" <<'EOF'
import json, sys
pod = json.load(open(sys.argv[1]))
spec = pod["spec"]
init = spec.get("initContainers", [])
def env(container, name):
    return next((e.get("value") for e in container.get("env", []) if e["name"] == name), None)
value = eval(sys.argv[2])
print(value)
sys.exit(0 if value is True else 1)
EOF
}
check "the sidecar is the first init container" stored 'init[0]["name"] == "spillway" and init[1]["name"] == "migrate"'
check "it is a native sidecar (restartPolicy Always)" stored 'init[0].get("restartPolicy") == "Always"'
check "it runs the configured image" stored "init[0][\"image\"] == \"$SIDECAR_IMAGE\""
check "its args: spillway run --operator … on 127.0.0.1:15080, admin 0.0.0.0:15081" stored \
  "init[0][\"args\"] == [\"run\", \"--operator=$OPERATOR_URL\", \"--operator-token-file=/var/run/secrets/spillway/token\", \"--operator-ca-file=/var/run/secrets/spillway/ca.crt\", \"--listen=127.0.0.1:15080\", \"--admin-listen=0.0.0.0:15081\"]"
check "readiness probe on the admin /readyz" stored 'init[0]["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 15081, "scheme": "HTTP"}'
check "hardened: non-root, read-only root FS, drop ALL, seccomp RuntimeDefault" stored \
  'init[0]["securityContext"]["runAsNonRoot"] and init[0]["securityContext"]["readOnlyRootFilesystem"] and init[0]["securityContext"]["capabilities"]["drop"] == ["ALL"] and init[0]["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"'
check "token volume: projected ServiceAccount token for audience spillway" stored \
  'next(v for v in spec["volumes"] if v["name"] == "spillway-token")["projected"]["sources"][0]["serviceAccountToken"] == {"audience": "spillway", "expirationSeconds": 3600, "path": "token"}'
check "token volume: the CA file from the Pod annotation (downward API)" stored \
  'next(v for v in spec["volumes"] if v["name"] == "spillway-token")["projected"]["sources"][1]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.annotations['"'"'spillway.dev/operator-ca'"'"']"'
check "the sidecar mounts it at /var/run/secrets/spillway" stored \
  'init[0]["volumeMounts"] == [{"name": "spillway-token", "mountPath": "/var/run/secrets/spillway", "readOnly": True}]'
check "the annotation holds the operator's CA" stored \
  "pod[\"metadata\"][\"annotations\"][\"spillway.dev/operator-ca\"] == open(\"$WORK/tls/ca.crt\").read()"
check "annotated spillway.dev/injected" stored 'pod["metadata"]["annotations"]["spillway.dev/injected"] == "true"'
check "app container web: OPENAI_BASE_URL=http://127.0.0.1:15080/v1" stored 'env(spec["containers"][0], "OPENAI_BASE_URL") == "http://127.0.0.1:15080/v1"'
check "app container web: AZURE_OPENAI_ENDPOINT=http://127.0.0.1:15080" stored 'env(spec["containers"][0], "AZURE_OPENAI_ENDPOINT") == "http://127.0.0.1:15080"'
check "app container worker keeps its own OPENAI_BASE_URL" stored 'env(spec["containers"][1], "OPENAI_BASE_URL") == "https://mine.example/v1"'
check "app container worker gets AZURE_OPENAI_ENDPOINT" stored 'env(spec["containers"][1], "AZURE_OPENAI_ENDPOINT") == "http://127.0.0.1:15080"'
check "the app's init container gets no env" stored '"env" not in init[1]'
contains "kubectl reads back the sidecar image" "$SIDECAR_IMAGE" \
  kubectl get pod labelled -n team-pod -o 'jsonpath={.spec.initContainers[?(@.name=="spillway")].image}'

echo "==> selection and opt-out"
check "create Pod labelled disabled in the labelled namespace" create_pod optout team-ns disabled
contains "the opted-out Pod has no sidecar" 0 sidecars optout team-ns
check "create an unlabelled Pod in the labelled namespace" create_pod plain team-ns ""
contains "the namespace-selected Pod has the sidecar" 1 sidecars plain team-ns
contains "its app container points OPENAI_BASE_URL at the sidecar" "http://127.0.0.1:15080/v1" \
  kubectl get pod plain -n team-ns -o 'jsonpath={.spec.containers[0].env[?(@.name=="OPENAI_BASE_URL")].value}'
check "create an unlabelled Pod in the unlabelled namespace" create_pod bystander team-pod ""
contains "that Pod has no sidecar" 0 sidecars bystander team-pod

echo "==> no double injection"
python3 - "$WORK/labelled.json" >"$WORK/again.json" <<'EOF'
import json, sys
pod = json.load(open(sys.argv[1]))
meta = pod["metadata"]
for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
    meta.pop(key, None)
meta["name"] = "labelled-again"
pod.pop("status", None)
json.dump(pod, sys.stdout)
EOF
check "create a Pod from the injected Pod (a second admission)" kubectl create -f "$WORK/again.json"
contains "it still has one sidecar" 1 sidecars labelled-again team-pod
check "re-apply the labelled Pod's manifest" bash -c "$(declare -f pod_manifest); pod_manifest labelled team-pod enabled | kubectl apply -f -"
contains "the labelled Pod still has one sidecar" 1 sidecars labelled team-pod

echo "==> a Pod that cannot be injected"
contains "a Pod using the sidecar's admin port is admitted with a warning" \
  "spillway sidecar not injected: container web already uses port 15081" create_pod clash team-pod enabled 15081
contains "and stored without the sidecar" 0 sidecars clash team-pod

echo "==> operator stopped, failurePolicy Ignore"
stop_operator
check "a labelled Pod is created while the operator is down" create_pod down-ignore team-pod enabled
contains "uninjected" 0 sidecars down-ignore team-pod

echo "==> failurePolicy Fail"
check "register the webhook with failurePolicy Fail" register Fail
refused() { ! pod_manifest probe team-pod enabled | kubectl create --dry-run=server -f - >/dev/null 2>&1; }
check "the API server applies the new policy" eventually 30 refused
rejects "a labelled Pod is refused while the operator is down, naming the webhook" \
  'failed calling webhook "pod.inject.spillway.dev"' create_pod down-fail team-pod enabled
check "the refused Pod was not stored" bash -c "! kubectl get pod down-fail -n team-pod 2>/dev/null"
check "an opted-out Pod is still created (the webhook is not called for it)" create_pod optout-fail team-pod disabled

echo "==> operator with inject-on-error deny, failurePolicy Fail"
if start_operator deny; then pass "the operator starts again (deny) at $STREAM"; else
  fail "the operator starts again (deny)"
fi
check "register the webhook at the new address" register Fail
check "the API server calls the webhook again" eventually 30 injected_dry_run
rejects "a Pod that cannot be injected is refused with the reason" \
  "spillway sidecar injection failed: container web already uses port 15081" create_pod clash-deny team-pod enabled 15081
check "a labelled Pod is injected" create_pod up-fail team-pod enabled
contains "with one sidecar" 1 sidecars up-fail team-pod

stop_operator
summary
