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
{{- $drain := .Values.server.drain }}
{{- if ge (int $drain.delaySeconds) (int $drain.timeoutSeconds) }}
{{- fail (printf "server.drain.delaySeconds (%d) must be less than server.drain.timeoutSeconds (%d): in-flight requests need time to finish after the delay" (int $drain.delaySeconds) (int $drain.timeoutSeconds)) }}
{{- end }}
{{- add .Values.termination.preStopSleepSeconds $drain.timeoutSeconds .Values.termination.marginSeconds }}
{{- end }}

{{/*
The first model name (TFMS_MODEL_NAME may list several), for the test pod and NOTES.
*/}}
{{- define "tf-model-server.firstModel" -}}
{{- .Values.server.modelName | splitList "," | first | trim }}
{{- end }}

{{/*
Whether more than one replica can exist: a PDB only makes sense then.
*/}}
{{- define "tf-model-server.multiReplica" -}}
{{- if .Values.autoscaling.enabled }}
{{- if gt (int .Values.autoscaling.maxReplicas) 1 }}true{{ end }}
{{- else if gt (int .Values.replicaCount) 1 }}true{{ end }}
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
A Kubernetes quantity (512Mi, 1Gi, 1G, 1073741824) in bytes; empty when none is given.
*/}}
{{- define "tf-model-server.quantityBytes" -}}
{{- if and (kindIs "string" .) (ne . "") }}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "" 1 }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" . }}
{{- $suffix := trimPrefix $number . }}
{{- if or (not $number) (not (hasKey $units $suffix)) }}
{{- fail (printf "resources.limits.memory %q is not a memory quantity the chart can read (e.g. 1Gi, 512Mi, 1G)" .) }}
{{- end }}
{{- mulf $number (get $units $suffix) | int64 }}
{{- else if . }}
{{- . | int64 }}
{{- end }}
{{- end }}

{{/*
The server's memory bounds, derived from the container's memory limit unless set:
TFMS_MAX_INFLIGHT_BYTES a quarter of it (the rest is the interpreter, TensorFlow and the
models), TFMS_MAX_CONCURRENT_REQUESTS one per 2 MiB (at least 16). Without a memory
limit, the server's own defaults (256 MiB, 512).
*/}}
{{- define "tf-model-server.memoryLimitBytes" -}}
{{- include "tf-model-server.quantityBytes" (dig "limits" "memory" "" (.Values.resources | default dict)) }}
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
The in-flight budget must hold one body of the largest size (its bytes plus 16x for
decoding), or such a body could never be served; the server refuses to start otherwise.
*/}}
{{- define "tf-model-server.validateInflightBudget" -}}
{{- $budget := include "tf-model-server.maxInflightBytes" . | int64 }}
{{- $needed := mul (int64 .Values.server.limits.maxBodyBytes) 17 }}
{{- if lt $budget $needed }}
{{- fail (printf "server.limits.maxInflightBytes (%d, derived from resources.limits.memory when unset) must be at least 17x server.limits.maxBodyBytes (%d): raise the memory limit, lower maxBodyBytes, or set maxInflightBytes" $budget $needed) }}
{{- end }}
{{- end }}
