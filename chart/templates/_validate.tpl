{{/*
Every rule the values schema cannot express, one named helper each; `tf-model-server.validate`
runs them all once (from deployment.yaml, which every release renders), so template
bodies only render. Each rule fails with the values it names and what to do.
*/}}
{{- define "tf-model-server.validate" -}}
{{- include "tf-model-server.validate.modelSource" . }}
{{- include "tf-model-server.validate.modelConfig" . }}
{{- include "tf-model-server.validate.drain" . }}
{{- include "tf-model-server.validate.preStopSleep" . }}
{{- include "tf-model-server.validate.autoscaling" . }}
{{- include "tf-model-server.validate.ephemeralStorage" . }}
{{- include "tf-model-server.validate.inflightBudget" . }}
{{- include "tf-model-server.validate.grpc" . }}
{{- end }}

{{- define "tf-model-server.validate.modelSource" -}}
{{- $model := .Values.model }}
{{- if and (eq $model.source "pvc") (not $model.pvc.claimName) }}
{{- fail "model.source is pvc: set model.pvc.claimName to an existing PersistentVolumeClaim" }}
{{- end }}
{{- if and (eq $model.source "url") (not $model.url.address) }}
{{- fail "model.source is url: set model.url.address to the model archive's URL" }}
{{- end }}
{{- end }}

{{- define "tf-model-server.validate.modelConfig" -}}
{{- if and .Values.model.config .Values.server.modelConfigFile }}
{{- fail "model.config and server.modelConfigFile both name a model config: set one (model.config has the chart write the file)" }}
{{- end }}
{{- $names := list }}
{{- range .Values.model.config }}
{{- if has .name $names }}
{{- fail (printf "model.config lists model %s twice (TF Serving: Illegal to list model %s multiple times)" .name .name) }}
{{- end }}
{{- $names = append $names .name }}
{{- end }}
{{- end }}

{{- define "tf-model-server.validate.drain" -}}
{{- $drain := .Values.server.drain }}
{{- if ge (int $drain.delaySeconds) (int $drain.timeoutSeconds) }}
{{- fail (printf "server.drain.delaySeconds (%d) must be less than server.drain.timeoutSeconds (%d): in-flight requests need time to finish after the delay" (int $drain.delaySeconds) (int $drain.timeoutSeconds)) }}
{{- end }}
{{- end }}

{{- define "tf-model-server.validate.preStopSleep" -}}
{{- if and (gt (int .Values.termination.preStopSleepSeconds) 0) (semverCompare "<1.30.0-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "termination.preStopSleepSeconds needs Kubernetes 1.30+ (the kubelet's native preStop sleep); this cluster is %s" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- end }}

{{- define "tf-model-server.validate.autoscaling" -}}
{{- $autoscaling := .Values.autoscaling }}
{{- if $autoscaling.enabled }}
{{- if not (or $autoscaling.targetCPUUtilizationPercentage $autoscaling.targetMemoryUtilizationPercentage $autoscaling.metrics) }}
{{- fail "autoscaling.enabled needs a metric: set targetCPUUtilizationPercentage, targetMemoryUtilizationPercentage or metrics" }}
{{- end }}
{{- if gt (int $autoscaling.minReplicas) (int $autoscaling.maxReplicas) }}
{{- fail (printf "autoscaling.minReplicas (%d) is greater than autoscaling.maxReplicas (%d)" (int $autoscaling.minReplicas) (int $autoscaling.maxReplicas)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The /tmp emptyDir counts toward the server container's ephemeral storage: a limit below
its sizeLimit would have the kubelet evict the pod before the volume is full.
*/}}
{{- define "tf-model-server.validate.ephemeralStorage" -}}
{{- $tmp := include "tf-model-server.bytes" (dict "value" .Values.tmpDir.sizeLimit "name" "tmpDir.sizeLimit") | int64 }}
{{- $limits := .Values.resources.limits | default dict }}
{{- with get $limits "ephemeral-storage" }}
{{- $limit := include "tf-model-server.bytes" (dict "value" . "name" "resources.limits.ephemeral-storage") | int64 }}
{{- if lt $limit $tmp }}
{{- fail (printf "resources.limits.ephemeral-storage (%v) is less than tmpDir.sizeLimit (%v): the kubelet would evict the pod before /tmp is full; raise the limit or lower the sizeLimit" . $.Values.tmpDir.sizeLimit) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The in-flight budget must hold one body of the largest size (its bytes plus 16x for
decoding), or such a body could never be served; the server refuses to start otherwise.
*/}}
{{- define "tf-model-server.validate.inflightBudget" -}}
{{- $budget := include "tf-model-server.maxInflightBytes" . | int64 }}
{{- $needed := mul (int64 .Values.server.limits.maxBodyBytes) 17 }}
{{- if lt $budget $needed }}
{{- fail (printf "server.limits.maxInflightBytes (%d, derived from resources.limits.memory when unset) must be at least 17x server.limits.maxBodyBytes (%d): raise the memory limit, lower maxBodyBytes, or set maxInflightBytes" $budget $needed) }}
{{- end }}
{{- end }}

{{/*
gRPC: the in-flight budget must hold one message of the largest size (its bytes plus 2x
for parsing, modelserver.settings.MESSAGE_DECODE_EXPANSION; the server refuses to start
otherwise), and the gRPC readiness probe needs the gRPC port.
*/}}
{{- define "tf-model-server.validate.grpc" -}}
{{- if .Values.server.grpcPort }}
{{- $budget := include "tf-model-server.maxInflightBytes" . | int64 }}
{{- $message := int64 .Values.server.grpc.maxMessageBytes | default (int64 .Values.server.limits.maxBodyBytes) }}
{{- $needed := mul $message 3 }}
{{- if lt $budget $needed }}
{{- fail (printf "server.limits.maxInflightBytes (%d, derived from resources.limits.memory when unset) must be at least 3x server.grpc.maxMessageBytes (%d): raise the memory limit, lower maxMessageBytes, or set maxInflightBytes" $budget $needed) }}
{{- end }}
{{- if eq (int .Values.server.grpcPort) (int .Values.server.port) }}
{{- fail (printf "server.grpcPort and server.port are both %d: the server needs a port for each" (int .Values.server.port)) }}
{{- end }}
{{- else if .Values.grpcReadinessProbe }}
{{- fail "grpcReadinessProbe needs the gRPC port: set server.grpcPort (0 turns gRPC off)" }}
{{- end }}
{{- end }}
