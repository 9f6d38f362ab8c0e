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
