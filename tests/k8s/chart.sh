#!/usr/bin/env bash
# Test of the Helm chart charts/spillway against a real kube-apiserver + etcd (tests/k8s/testbed.sh):
# helm lint --strict; helm template with defaults and with replicaCount=2 + the standalone gateway;
# the rendered objects pass server-side dry-run validation (CRDs installed first); the values
# schema rejects typos and wrong types; helm install creates every object (operator Deployment,
# ServiceAccount, RBAC, Services, TLS Secret + CA ConfigMap, labelled dashboard ConfigMap);
# helm upgrade keeps the generated CA (lookup); helm uninstall removes the release. The injection
# webhook: its MutatingWebhookConfiguration (selectors, policies, caBundle = the Secret's CA, or
# the cert-manager cainjector annotation), the operator's --inject-* flags, schema checks.
# Pods never run on the test bed (no kubelet): objects are checked, not pods.
# Output ends with `N passed, M failed`; the exit status is non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

TESTBED=tests/k8s/testbed.sh
CHART=charts/spillway
NS=spillway-system
WORK=$(mktemp -d "${TMPDIR:-/tmp}/spillway-k8s-chart.XXXXXX")

cleanup() {
  bash "$TESTBED" stop "$WORK/cluster" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=tests/k8s/lib.sh
source tests/k8s/lib.sh





echo "==> starting the test bed in $WORK/cluster"
bash "$TESTBED" start "$WORK/cluster" >/dev/null
eval "$(bash "$TESTBED" env "$WORK/cluster")"

echo "==> lint and render"
check "helm lint --strict" helm lint --strict "$CHART"
GW_SET=replicaCount=2,gateway.enabled=true,tls.certManager.enabled=false
render() { # OUT ARGS...: helm template into OUT
  local out=$1
  shift
  helm template spillway "$CHART" -n "$NS" "$@" >"$out"
}
check "helm template with defaults" render "$WORK/default.yaml"
check "helm template with $GW_SET" render "$WORK/gateway.yaml" --set "$GW_SET"
# kinds FILE: "1 ClusterRole, 2 ConfigMap, …" (count and kind of each rendered object)
kinds() { sed -n 's/^kind: //p' "$1" | sort | uniq -c | sed 's/^ *//' | paste -sd, - | sed 's/,/, /g'; }
contains "defaults render the operator objects" \
  "1 ClusterRole, 1 ClusterRoleBinding, 3 ConfigMap, 1 Deployment, 1 Role, 1 RoleBinding, 1 Secret, 1 Service, 1 ServiceAccount, 1 ValidatingWebhookConfiguration" \
  kinds "$WORK/default.yaml"
contains "replicaCount=2 + gateway render the gateway too" \
  "1 ClusterRole, 1 ClusterRoleBinding, 3 ConfigMap, 2 Deployment, 1 Role, 1 RoleBinding, 1 Secret, 2 Service, 2 ServiceAccount, 1 ValidatingWebhookConfiguration" \
  kinds "$WORK/gateway.yaml"
contains "replicaCount=2 renders two operator replicas" "replicas: 2" \
  helm template spillway "$CHART" -n "$NS" --set "$GW_SET" --show-only templates/operator-deployment.yaml
contains "replicaCount=2 keeps leader election on" "--lease-name=spillway-operator" \
  helm template spillway "$CHART" -n "$NS" --set "$GW_SET" --show-only templates/operator-deployment.yaml
contains "the operator gets POD_NAME from the downward API" "fieldPath: metadata.name" \
  grep -A3 "name: POD_NAME" "$WORK/default.yaml"
contains "the gateway mounts a projected token for audience spillway" \
  "audience: spillway
                  expirationSeconds: 3600
                  path: token" cat "$WORK/gateway.yaml"
contains "the gateway reads the token where the sidecar looks" \
  "mountPath: /var/run/secrets/spillway" cat "$WORK/gateway.yaml"
contains "the gateway dials the operator Service over https" \
  "--operator=https://spillway-operator.$NS.svc:8443" cat "$WORK/gateway.yaml"
contains "OTLP settings become OTEL_EXPORTER_OTLP_* env" 'value: "http/protobuf"' \
  helm template spillway "$CHART" -n "$NS" --set gateway.enabled=true \
  --set telemetry.otlp.endpoint=http://otel-collector:4318,telemetry.otlp.protocol=http/protobuf
# Every container and pod is hardened.
hardened() {
  local f=$1 n
  n=$(grep -c '^kind: Deployment' "$f")
  [[ $(grep -c 'readOnlyRootFilesystem: true' "$f") == "$n" ]] &&
    [[ $(grep -c 'allowPrivilegeEscalation: false' "$f") == "$n" ]] &&
    [[ $(grep -c 'drop: \[ALL\]' "$f") == "$n" ]] &&
    [[ $(grep -c 'type: RuntimeDefault' "$f") == "$((2 * n))" ]] &&
    [[ $(grep -c 'runAsNonRoot: true' "$f") == "$((2 * n))" ]] &&
    [[ $(grep -c '  limits:' "$f") == "$n" ]]
}
check "every pod and container is hardened and has limits" hardened "$WORK/gateway.yaml"
contains "cert-manager mode renders Issuers and Certificates, no generated Secret" \
  "2 Certificate, 2 Issuer" bash -c "helm template spillway $CHART -n $NS --set tls.certManager.enabled=true >$WORK/cm.yaml &&
    ! grep -q '^kind: Secret' $WORK/cm.yaml && sed -n 's/^kind: \(Issuer\|Certificate\)$/\1/p' $WORK/cm.yaml | sort | uniq -c | sed 's/^ *//' | paste -sd, - | sed 's/,/, /g'"
contains "with cert-manager the gateway trusts ca.crt of the cert-manager Secret" "secretName: spillway-operator-tls" \
  helm template spillway "$CHART" -n "$NS" --set tls.certManager.enabled=true,gateway.enabled=true \
  --show-only templates/gateway.yaml

echo "==> the injection webhook"
check "helm template with injector.enabled=true" render "$WORK/inject.yaml" --set injector.enabled=true
kubectl create --dry-run=client -o json -f "$WORK/inject.yaml" >"$WORK/inject.json"
# webhook EXPR: a Python expression over the rendered objects (helpers: one(kind), hooks, args,
# ca, exprs(selector)); passes iff it is True.
webhook() {
  python3 - "$WORK/inject.json" "$1" <<'EOF'
import base64, json, sys
# kubectl prints one JSON document per object, one after the other.
text, items, at = open(sys.argv[1]).read(), [], 0
while text[at:].strip():
    item, end = json.JSONDecoder().raw_decode(text, len(text) - len(text[at:].lstrip()))
    items.append(item)
    at = end
def one(kind):
    return next(i for i in items if i["kind"] == kind)
hooks = {h["name"]: h for h in one("MutatingWebhookConfiguration")["webhooks"]}
args = one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
ca = base64.b64decode(one("Secret")["data"]["ca.crt"]).decode()
def exprs(selector):
    return {(e["key"], e["operator"], tuple(e["values"])) for e in selector["matchExpressions"]}
value = eval(sys.argv[2])
print(value)
sys.exit(0 if value is True else 1)
EOF
}
check "two webhooks: namespace- and pod-selected" webhook 'sorted(hooks) == ["namespace.inject.spillway.dev", "pod.inject.spillway.dev"]'
check "v1 reviews, no side effects, reinvocation Never, failurePolicy Ignore, 5 s" webhook \
  'all(h["admissionReviewVersions"] == ["v1"] and h["sideEffects"] == "None" and h["reinvocationPolicy"] == "Never" and h["failurePolicy"] == "Ignore" and h["timeoutSeconds"] == 5 for h in hooks.values())'
check "only Pod CREATE is sent, to /mutate on the operator Service" webhook \
  'all(h["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}] and h["clientConfig"]["service"] == {"name": "spillway-operator", "namespace": "'"$NS"'", "port": 8443, "path": "/mutate"} for h in hooks.values())'
check "caBundle is the CA of the TLS Secret (and of the CA ConfigMap)" webhook \
  'all(base64.b64decode(h["clientConfig"]["caBundle"]).decode() == ca for h in hooks.values()) and next(i for i in items if "ca.crt" in i.get("data", {}) and i["kind"] == "ConfigMap")["data"]["ca.crt"].strip() == ca.strip()'
check "namespace webhook: namespace enabled, Pod not disabled" webhook \
  '("spillway.dev/inject", "In", ("enabled",)) in exprs(hooks["namespace.inject.spillway.dev"]["namespaceSelector"]) and exprs(hooks["namespace.inject.spillway.dev"]["objectSelector"]) == {("spillway.dev/inject", "NotIn", ("disabled",))}'
check "pod webhook: Pod enabled, namespace not enabled (no double call)" webhook \
  '("spillway.dev/inject", "NotIn", ("enabled",)) in exprs(hooks["pod.inject.spillway.dev"]["namespaceSelector"]) and exprs(hooks["pod.inject.spillway.dev"]["objectSelector"]) == {("spillway.dev/inject", "In", ("enabled",))}'
check "the release namespace and kube-system are never injected" webhook \
  'all(("kubernetes.io/metadata.name", "NotIn", ("'"$NS"'", "kube-system", "kube-node-lease")) in exprs(h["namespaceSelector"]) for h in hooks.values())'
check "the operator gets the --inject-* flags and mounts ca.crt" webhook \
  '"--inject-image=ghcr.io/spillway-dev/spillway:0.1.0" in args and "--inject-operator-url=https://spillway-operator.'"$NS"'.svc:8443" in args and "--inject-ca-file=/etc/spillway/tls/ca.crt" in args and "--inject-on-error=allow" in args and {"key": "ca.crt", "path": "ca.crt"} in one("Deployment")["spec"]["template"]["spec"]["volumes"][0]["secret"]["items"]'
contains "failurePolicy Fail is passed on and makes the operator deny" "--inject-on-error=deny" \
  helm template spillway "$CHART" -n "$NS" --set injector.enabled=true,injector.failurePolicy=Fail
contains "cert-manager mode: cainjector annotation instead of a caBundle" \
  "cert-manager.io/inject-ca-from: $NS/spillway-operator" bash -c \
  "helm template spillway $CHART -n $NS --set injector.enabled=true,tls.certManager.enabled=true --show-only templates/injector.yaml | tee $WORK/inject-cm.yaml && ! grep -q caBundle $WORK/inject-cm.yaml"
check "the injector is off by default" bash -c "! grep -q MutatingWebhookConfiguration $WORK/default.yaml"
rejects "injector.failurePolicy=Maybe is rejected by the schema" "failurePolicy" \
  helm template spillway "$CHART" --set injector.enabled=true,injector.failurePolicy=Maybe

echo "==> the validating webhook"
validator() { # EXPR over the rendered webhook `h` and the TLS Secret's CA `ca`
  helm template spillway "$CHART" -n "$NS" >"$WORK/validator.yaml"
  kubectl create --dry-run=client -o json -f "$WORK/validator.yaml" | python3 -c '
import base64, json, sys
text, items, at = sys.stdin.read(), [], 0
while text[at:].strip():
    item, end = json.JSONDecoder().raw_decode(text, len(text) - len(text[at:].lstrip()))
    items.append(item)
    at = end
(config,) = [i for i in items if i["kind"] == "ValidatingWebhookConfiguration"]
(h,) = config["webhooks"]
ca = base64.b64decode(next(i for i in items if i["kind"] == "Secret")["data"]["ca.crt"]).decode()
value = eval(sys.argv[1])
print(value)
sys.exit(0 if value is True else 1)' "$1"
}
check "validation is on by default: CREATE/UPDATE of the three kinds to /validate" validator \
  'h["rules"] == [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["spillway.dev"], "apiVersions": ["v1alpha1"], "resources": ["aibackendpools", "tokenquotas", "aigateways"], "scope": "Namespaced"}] and h["clientConfig"]["service"]["path"] == "/validate"'
check "validation: failurePolicy Ignore, no side effects, caBundle = the TLS CA" validator \
  'h["failurePolicy"] == "Ignore" and h["sideEffects"] == "None" and base64.b64decode(h["clientConfig"]["caBundle"]).decode() == ca'
check "validation.enabled=false renders no validating webhook" bash -c \
  "! helm template spillway $CHART -n $NS --set validation.enabled=false | grep -q ValidatingWebhookConfiguration"
rejects "validation.failurePolicy=Maybe is rejected by the schema" "failurePolicy" \
  helm template spillway "$CHART" --set validation.failurePolicy=Maybe

echo "==> server-side validation"
check "apply the CRDs" kubectl apply --server-side -f "$CHART/crds/spillway.dev_crds.yaml"
check "CRDs Established" kubectl wait --for=condition=Established --timeout=30s \
  crd/aibackendpools.spillway.dev crd/tokenquotas.spillway.dev crd/aigateways.spillway.dev
check "create namespace $NS" kubectl create namespace "$NS"
check "defaults pass kubectl apply --dry-run=server" \
  kubectl apply --dry-run=server -f "$WORK/default.yaml"
check "replicaCount=2 + gateway pass kubectl apply --dry-run=server" \
  kubectl apply --dry-run=server -f "$WORK/gateway.yaml"
check "injector.enabled=true passes kubectl apply --dry-run=server" \
  kubectl apply --dry-run=server -f "$WORK/inject.yaml"
check "create namespace team" kubectl create namespace team
check "helm template with operator.watchNamespace=team" render "$WORK/team.yaml" --set operator.watchNamespace=team
contains "watchNamespace=team moves object rights into a Role in team" "namespace: team" \
  bash -c "sed -n '/^kind: Role\$/,/^---/p' $WORK/team.yaml"
check "watchNamespace=team keeps no Secret rights in the ClusterRole" bash -c \
  "! sed -n '/^kind: ClusterRole\$/,/^---/p' $WORK/team.yaml | grep -q secrets"
check "watchNamespace=team passes kubectl apply --dry-run=server" \
  kubectl apply --dry-run=server -f "$WORK/team.yaml"

echo "==> the values schema"
rejects "typo replicaCont=2 is rejected" "replicaCont" \
  helm template spillway "$CHART" --set replicaCont=2
rejects "replicaCount=abc is rejected" "replicaCount" \
  helm template spillway "$CHART" --set replicaCount=abc
rejects "a nested typo (gateway.enabeld) is rejected" "enabeld" \
  helm template spillway "$CHART" --set gateway.enabeld=true
rejects "an unknown OTLP protocol is rejected" "protocol" \
  helm template spillway "$CHART" --set telemetry.otlp.protocol=udp
rejects "replicaCount=2 without leader election is rejected" "leaderElection" \
  helm template spillway "$CHART" --set replicaCount=2,operator.leaderElection.enabled=false

echo "==> helm install"
check "helm install" helm install spillway "$CHART" -n "$NS" --create-namespace --set gateway.enabled=true,injector.enabled=true
get() { kubectl get -n "$NS" "$@"; }
contains "operator Deployment" "spillway-operator" get deployment spillway-operator -o name
contains "operator Deployment runs the operator image" "spillway-operator:0.1.0" \
  get deployment spillway-operator -o 'jsonpath={.spec.template.spec.containers[0].image}'
contains "gateway Deployment" "spillway-gateway" get deployment spillway-gateway -o name
contains "operator ServiceAccount" "spillway-operator" get serviceaccount spillway-operator -o name
contains "ClusterRole" "tokenreviews" kubectl get clusterrole spillway-operator -o yaml
contains "ClusterRoleBinding to the ServiceAccount" "$NS/spillway-operator" \
  kubectl get clusterrolebinding spillway-operator \
  -o 'jsonpath={.subjects[0].namespace}/{.subjects[0].name}'
contains "Lease Role in the release namespace" "leases" get role spillway-operator-leader-election -o yaml
contains "stream Service on 8443 and admin on 8080" "stream:8443 admin:8080" \
  get service spillway-operator -o 'jsonpath={range .spec.ports[*]}{.name}:{.port} {end}'
contains "gateway Service" "spillway-gateway" get service spillway-gateway -o name
contains "TLS Secret" "kubernetes.io/tls" get secret spillway-operator-tls -o 'jsonpath={.type}'
contains "CA ConfigMap" "BEGIN CERTIFICATE" get configmap spillway-ca -o 'jsonpath={.data.ca\.crt}'
contains "dashboard ConfigMap labelled grafana_dashboard=1" "spillway-dashboard-spillway" \
  get configmap -l grafana_dashboard=1 -o name
get configmap spillway-dashboard-spillway -o 'jsonpath={.data.spillway\.json}' >"$WORK/dashboard.json"
check "the dashboard ConfigMap holds dashboards/spillway.json unchanged" \
  diff <(tr -d '\n' <"$CHART/dashboards/spillway.json") <(tr -d '\n' <"$WORK/dashboard.json")
contains "the chargeback dashboard has its own labelled ConfigMap" "spillway-dashboard-chargeback" \
  get configmap -l grafana_dashboard=1 -o name
get configmap spillway-dashboard-chargeback -o 'jsonpath={.data.chargeback\.json}' >"$WORK/chargeback.json"
check "the chargeback ConfigMap holds dashboards/chargeback.json unchanged" \
  diff <(tr -d '\n' <"$CHART/dashboards/chargeback.json") <(tr -d '\n' <"$WORK/chargeback.json")
# The generated certificate: signed by the published CA, for the Service's names.
get secret spillway-operator-tls -o 'jsonpath={.data.tls\.crt}' | base64 -d >"$WORK/tls.crt"
get configmap spillway-ca -o 'jsonpath={.data.ca\.crt}' >"$WORK/ca.crt"
contains "the serving certificate verifies against the CA ConfigMap" "OK" \
  openssl verify -CAfile "$WORK/ca.crt" "$WORK/tls.crt"
webhook_ca() { kubectl get mutatingwebhookconfiguration spillway-injector -o 'jsonpath={.webhooks[*].clientConfig.caBundle}'; }
SECRET_CA=$(get secret spillway-operator-tls -o 'jsonpath={.data.ca\.crt}')
contains "the installed webhooks trust the CA of the TLS Secret" "$SECRET_CA $SECRET_CA" webhook_ca
contains "the serving certificate names the Service" "spillway-operator.$NS.svc" \
  openssl x509 -in "$WORK/tls.crt" -noout -ext subjectAltName
check "the operator ServiceAccount may create TokenReviews" \
  kubectl auth can-i create tokenreviews.authentication.k8s.io --as="system:serviceaccount:$NS:spillway-operator"
check "the operator ServiceAccount may patch AIBackendPool status" \
  kubectl auth can-i patch aibackendpools.spillway.dev --subresource=status -A --as="system:serviceaccount:$NS:spillway-operator"
check "the operator ServiceAccount may not write AIBackendPools" bash -c \
  "! kubectl auth can-i update aibackendpools.spillway.dev -A --as=system:serviceaccount:$NS:spillway-operator"
check "the operator ServiceAccount may not delete Secrets" bash -c \
  "! kubectl auth can-i delete secrets -A --as=system:serviceaccount:$NS:spillway-operator"
check "the operator ServiceAccount may list and apply presence Leases in its namespace" bash -c \
  "kubectl auth can-i list leases.coordination.k8s.io -n $NS --as=system:serviceaccount:$NS:spillway-operator && kubectl auth can-i patch leases.coordination.k8s.io -n $NS --as=system:serviceaccount:$NS:spillway-operator"
check "the operator ServiceAccount may not touch Leases elsewhere" bash -c \
  "! kubectl auth can-i patch leases.coordination.k8s.io -n kube-system --as=system:serviceaccount:$NS:spillway-operator"

echo "==> helm upgrade"
CA_BEFORE=$(get secret spillway-operator-tls -o 'jsonpath={.data.ca\.crt}')
check "helm upgrade" helm upgrade spillway "$CHART" -n "$NS" --set gateway.enabled=true,replicaCount=2,injector.enabled=true
contains "upgrade applied replicaCount=2" "2" get deployment spillway-operator -o 'jsonpath={.spec.replicas}'
contains "upgrade keeps the CA in the Secret" "$CA_BEFORE" \
  get secret spillway-operator-tls -o 'jsonpath={.data.ca\.crt}'
contains "upgrade keeps the CA in the webhooks' caBundle" "$CA_BEFORE $CA_BEFORE" webhook_ca
contains "upgrade keeps the CA in the ConfigMap" "$(base64 -d <<<"$CA_BEFORE" | head -c 200 | tail -c 100)" \
  get configmap spillway-ca -o 'jsonpath={.data.ca\.crt}'

echo "==> helm uninstall"
check "helm uninstall" helm uninstall spillway -n "$NS"
check "the operator Deployment is gone" bash -c \
  "! kubectl get deployment spillway-operator -n $NS 2>/dev/null"
check "the ClusterRole is gone" bash -c "! kubectl get clusterrole spillway-operator 2>/dev/null"
check "the webhook configuration is gone" bash -c "! kubectl get mutatingwebhookconfiguration spillway-injector 2>/dev/null"

summary
