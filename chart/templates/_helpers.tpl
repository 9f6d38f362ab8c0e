{{/*
Chart name, cut to 63 characters (a DNS label).
*/}}
{{- define "tf-model-server.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, cut to 63 characters because some Kubernetes name fields are
limited to this (DNS naming spec). A release name that already contains the chart name
is used as is.
*/}}
{{- define "tf-model-server.fullname" -}}
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

{{/*
Chart name and version for the helm.sh/chart label.
*/}}
{{- define "tf-model-server.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "tf-model-server.labels" -}}
helm.sh/chart: {{ include "tf-model-server.chart" . }}
{{ include "tf-model-server.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: name and instance only. Selectors are immutable, so nothing that
changes between releases (version, chart) may appear here.
*/}}
{{- define "tf-model-server.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tf-model-server.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "tf-model-server.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tf-model-server.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image tag (defaults to the chart's appVersion) and full reference.
*/}}
{{- define "tf-model-server.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "tf-model-server.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "tf-model-server.imageTag" .) }}
{{- end }}

{{/*
terminationGracePeriodSeconds: time before the kubelet sends SIGKILL, counted from the
start of deletion. It covers the preStop sleep (SIGTERM comes after it), the server's
drain timeout (it exits within TFMS_DRAIN_TIMEOUT_SECONDS of SIGTERM; the drain delay is
part of that time) and a margin for interpreter and TensorFlow teardown.
*/}}
{{- define "tf-model-server.terminationGracePeriodSeconds" -}}
{{- add .Values.termination.preStopSleepSeconds .Values.server.drain.timeoutSeconds .Values.termination.marginSeconds }}
{{- end }}

{{/*
spec.replicas of the Deployment, or nothing. HPA off: replicaCount. HPA on: the live
Deployment's count (clamped to the HPA's bounds) when there is one, else nothing (the
HPA sets it). Omitting `replicas` from a release that rendered it makes helm's
three-way merge send `replicas: null`, which the API server defaults to 1 (helm#12650):
so turning the HPA on for a running release, and every upgrade after, renders the live
count instead and never lowers what the HPA chose.
*/}}
{{- define "tf-model-server.replicas" -}}
{{- $autoscaling := .Values.autoscaling }}
{{- if not $autoscaling.enabled }}
{{- .Values.replicaCount }}
{{- else }}
{{- $live := include "tf-model-server.liveDeployment" . | fromJson }}
{{- with $live.spec }}
{{- if hasKey . "replicas" }}
{{- max (int $autoscaling.minReplicas) (min (int $autoscaling.maxReplicas) (int .replicas)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A server setting's value as the server reads it: YAML numbers arrive as float64, so
integral ones are printed as integers (never 1.048576e+06), the rest as they are.
*/}}
{{- define "tf-model-server.settingText" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
Bytes of a Kubernetes quantity (plain bytes, or with k/M/G/T/P/E or Ki/Mi/Gi/Ti/Pi/Ei),
from a dict with `value` and its values path `name` (for the error).
*/}}
{{- define "tf-model-server.bytes" -}}
{{- $text := toString .value }}
{{- if or (kindIs "float64" .value) (kindIs "int64" .value) (kindIs "int" .value) }}
{{- $text = printf "%d" (int64 .value) }}
{{- end }}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?([KMGTPE]i|[kMGTPE])?$" $text) }}
{{- fail (printf "%s: %q is not a byte quantity (e.g. 512Mi, 2Gi, 1G)" .name $text) }}
{{- end }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $text }}
{{- $factors := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "P" 1000000000000000 "E" 1000000000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 }}
{{- mulf (float64 $number) (index $factors (trimPrefix $number $text)) | int64 }}
{{- end }}

{{/*
A byte count as a quantity: in Mi when it is a whole number of them, else in bytes.
*/}}
{{- define "tf-model-server.quantity" -}}
{{- $bytes := int64 . }}
{{- if eq (mod $bytes 1048576) 0 }}
{{- printf "%dMi" (div $bytes 1048576) }}
{{- else }}
{{- $bytes }}
{{- end }}
{{- end }}

{{/*
Bytes of the models emptyDir (model.source url), or 0.
*/}}
{{- define "tf-model-server.modelsVolumeBytes" -}}
{{- if eq .Values.model.source "url" }}
{{- include "tf-model-server.bytes" (dict "value" .Values.model.url.sizeLimit "name" "model.url.sizeLimit") }}
{{- else }}0{{ end }}
{{- end }}

{{/*
The server container's resources. With model.source url the models emptyDir counts
toward the pod's ephemeral storage, so its sizeLimit is added to the ephemeral-storage
request and limit the values give (each only where given).
*/}}
{{- define "tf-model-server.serverResources" -}}
{{- $resources := deepCopy .Values.resources }}
{{- $models := include "tf-model-server.modelsVolumeBytes" . | int64 }}
{{- if gt $models 0 }}
{{- range $kind := list "requests" "limits" }}
{{- $given := get $resources $kind }}
{{- if and $given (hasKey $given "ephemeral-storage") }}
{{- $bytes := include "tf-model-server.bytes" (dict "value" (get $given "ephemeral-storage") "name" (printf "resources.%s.ephemeral-storage" $kind)) | int64 }}
{{- $_ := set $given "ephemeral-storage" (include "tf-model-server.quantity" (add $bytes $models)) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $resources }}
{{- end }}

{{/*
The first model name (TFMS_MODEL_NAME may list several), for the test pod and NOTES.
*/}}
{{- define "tf-model-server.firstModel" -}}
{{- .Values.server.modelName | splitList "," | first | trim }}
{{- end }}

{{/*
Whether more than one replica can exist (the canary's pods count too): a PDB only makes sense then.
*/}}
{{- define "tf-model-server.multiReplica" -}}
{{- $stable := ternary (int .Values.autoscaling.maxReplicas) (int .Values.replicaCount) .Values.autoscaling.enabled }}
{{- $canary := ternary (int .Values.canary.replicaCount) 0 .Values.canary.enabled }}
{{- if gt (add $stable $canary) 1 }}true{{ end }}
{{- end }}

{{/*
Labels of the helm test pod. It must not carry the server's selector labels, or the
Service, PDB and HPA would count it as a server pod.
*/}}
{{- define "tf-model-server.testSelectorLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
{{- end }}

{{- define "tf-model-server.testLabels" -}}
helm.sh/chart: {{ include "tf-model-server.chart" . }}
{{ include "tf-model-server.testSelectorLabels" . }}
app.kubernetes.io/part-of: {{ include "tf-model-server.name" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The pod's tolerations: the user's, plus NoExecute tolerations of node failure
(unreachable, not-ready) for nodeFailureTolerationSeconds unless the user tolerates that
key already. Rendered as a YAML list (fromYamlArray).
*/}}
{{- define "tf-model-server.tolerations" -}}
{{- $tolerations := list }}
{{- $userKeys := list }}
{{- range .Values.tolerations }}
{{- $tolerations = append $tolerations . }}
{{- if .key }}{{- $userKeys = append $userKeys .key }}{{- end }}
{{- end }}
{{- if not (kindIs "invalid" .Values.nodeFailureTolerationSeconds) }}
{{- range $key := list "node.kubernetes.io/not-ready" "node.kubernetes.io/unreachable" }}
{{- if not (has $key $userKeys) }}
{{- $tolerations = append $tolerations (dict "key" $key "operator" "Exists" "effect" "NoExecute" "tolerationSeconds" (int $.Values.nodeFailureTolerationSeconds)) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $tolerations }}
{{- end }}

{{/*
The server's memory bounds, derived from the container's memory limit unless set:
TFMS_MAX_INFLIGHT_BYTES a quarter of it (the rest is the interpreter, TensorFlow and the
models), TFMS_MAX_CONCURRENT_REQUESTS one per 2 MiB (at least 16). Without a memory
limit, the server's own defaults (256 MiB, 512).
*/}}
{{- define "tf-model-server.memoryLimitBytes" -}}
{{- with dig "limits" "memory" "" (.Values.resources | default dict) }}
{{- include "tf-model-server.bytes" (dict "value" . "name" "resources.limits.memory") }}
{{- end }}
{{- end }}

{{- define "tf-model-server.maxInflightBytes" -}}
{{- $set := .Values.server.limits.maxInflightBytes }}
{{- $limit := include "tf-model-server.memoryLimitBytes" . }}
{{- if not (kindIs "invalid" $set) }}{{ $set | int64 }}
{{- else if $limit }}{{ div (int64 $limit) 4 }}
{{- else }}268435456{{ end }}
{{- end }}

{{- define "tf-model-server.maxConcurrentRequests" -}}
{{- $set := .Values.server.limits.maxConcurrentRequests }}
{{- $limit := include "tf-model-server.memoryLimitBytes" . }}
{{- if not (kindIs "invalid" $set) }}{{ $set | int64 }}
{{- else if $limit }}{{ max 16 (div (int64 $limit) 2097152) }}
{{- else }}512{{ end }}
{{- end }}


{{/*
The readiness probe: `readinessProbe` as given, or with `grpcReadinessProbe` its handler
replaced by the kubelet's native gRPC probe (grpc.health.v1 Check with service "", which
the server answers SERVING exactly when HTTP readiness is 200). The gRPC probe takes a
port number only (no named ports), hence server.grpcPort here.
*/}}
{{- define "tf-model-server.readinessProbe" -}}
{{- $probe := deepCopy (.Values.readinessProbe | default dict) }}
{{- if .Values.grpcReadinessProbe }}
{{- $probe = omit $probe "httpGet" "tcpSocket" "exec" "grpc" }}
{{- $_ := set $probe "grpc" (dict "port" (int .Values.server.grpcPort)) }}
{{- end }}
{{- if $probe }}{{ toYaml $probe }}{{ end }}
{{- end }}
