{{/* Chart name, truncated to a DNS label. */}}
{{- define "spillway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix of every object. */}}
{{- define "spillway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Names of the operator objects, the TLS Secret, the CA ConfigMap and the gateway. */}}
{{- define "spillway.operator.fullname" -}}
{{- printf "%s-operator" (include "spillway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "spillway.tls.secretName" -}}
{{- printf "%s-tls" (include "spillway.operator.fullname" .) }}
{{- end }}
{{- define "spillway.tls.caConfigMapName" -}}
{{- printf "%s-ca" (include "spillway.fullname" .) }}
{{- end }}
{{- define "spillway.gateway.fullname" -}}
{{- printf "%s-gateway" (include "spillway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "spillway.operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spillway.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "spillway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "spillway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spillway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component (operator or gateway): (dict "ctx" . "component" "…"). */}}
{{- define "spillway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spillway.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The DNS names of the operator's stream Service, for the serving certificate. */}}
{{- define "spillway.tls.dnsNames" -}}
{{- $svc := include "spillway.operator.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) }}
{{- toJson (concat $names .Values.tls.extraDnsNames) }}
{{- end }}

{{/* The operator URL sidecars and gateways connect to. */}}
{{- define "spillway.operator.url" -}}
{{- printf "https://%s.%s.svc:%d" (include "spillway.operator.fullname" .) .Release.Namespace (int .Values.service.streamPort) }}
{{- end }}

{{/* Hardened pod and container security contexts. */}}
{{- define "spillway.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}
{{- define "spillway.containerSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Image reference: (dict "image" .Values.image "ctx" .). */}}
{{- define "spillway.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* Checks of value combinations the schema cannot express. */}}
{{- define "spillway.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.operator.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs operator.leaderElection.enabled=true" }}
{{- end }}
{{- $ref := .Values.tls.certManager.issuerRef }}
{{- if and .Values.tls.certManager.enabled (or (and $ref.kind (not $ref.name)) (and $ref.name (not $ref.kind))) }}
{{- fail "tls.certManager.issuerRef needs both kind and name (or neither, for the chart's own CA)" }}
{{- end }}
{{- end }}

{{/* RBAC rules on the watched objects: a ClusterRole's, or a Role's in operator.watchNamespace. */}}
{{- define "spillway.rbac.objectRules" }}
  - apiGroups: [spillway.dev]
    resources: [aibackendpools, tokenquotas, aigateways]
    verbs: [get, list, watch]
  - apiGroups: [spillway.dev]
    resources: [aibackendpools/status, tokenquotas/status, aigateways/status]
    verbs: [update, patch]
  - apiGroups: [""]
    resources: [secrets]
    verbs: [get, list, watch]
  - apiGroups: [events.k8s.io]
    resources: [events]
    verbs: [create, patch]
  - apiGroups: [""]
    resources: [events]
    verbs: [create, patch]
{{- end }}
