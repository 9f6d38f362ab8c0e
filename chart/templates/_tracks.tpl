{{/*
The stable and canary tracks, and the model config file.
*/}}

{{/*
A track's resource name: the fullname for stable, `<fullname>-canary` for the canary.
*/}}
{{- define "tf-model-server.workloadName" -}}
{{- if eq .track "canary" }}
{{- printf "%s-canary" (include "tf-model-server.fullname" . | trunc 56 | trimSuffix "-") }}
{{- else }}
{{- include "tf-model-server.fullname" . }}
{{- end }}
{{- end }}

{{/*
A track's server settings ConfigMap: one key per server setting (the table comes from the
server's own, see _settings.tpl). With `model.config` the server reads the mounted file.
*/}}
{{- define "tf-model-server.configMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "tf-model-server.workloadName" . }}
  labels:
    {{- include "tf-model-server.labels" . | nindent 4 }}
    track: {{ .track }}
data:
  {{- range $env, $row := include "tf-model-server.settingValues" . | fromYaml }}
  {{- $value := $.Values.server }}
  {{- range splitList "." $row.value }}
  {{- $value = index $value . }}
  {{- end }}
  {{- if and (eq $env "TFMS_MODEL_CONFIG_FILE") $.Values.model.config }}
  {{- $value = printf "%s/models.config" (include "tf-model-server.modelConfigDir" $) }}
  {{- end }}
  {{- if and (kindIs "invalid" $value) $row.derived }}
  {{ $env }}: {{ include $row.derived $ | quote }}
  {{- else }}
  {{ $env }}: {{ include "tf-model-server.settingText" $value | quote }}
  {{- end }}
  {{- end }}
{{- end }}

{{/*
The canary's values: the release's, with the canary's replica count (never autoscaled),
image and server values over them.
*/}}
{{- define "tf-model-server.canaryValues" -}}
{{- $values := deepCopy .Values }}
{{- $canary := .Values.canary }}
{{- $_ := set $values "replicaCount" $canary.replicaCount }}
{{- $_ = set $values.autoscaling "enabled" false }}
{{- with $canary.image.repository }}{{ $_ = set $values.image "repository" . }}{{ end }}
{{- with $canary.image.tag }}{{ $_ = set $values.image "tag" . }}{{ end }}
{{- $_ = set $values "server" (mergeOverwrite (deepCopy .Values.server) (deepCopy $canary.server)) }}
{{- toJson $values }}
{{- end }}

{{- define "tf-model-server.modelConfigDir" -}}
/etc/tf-model-server
{{- end }}

{{/*
model.config as TF Serving's ModelServerConfig text (what --model_config_file reads).
*/}}
{{- define "tf-model-server.modelConfigText" -}}
model_config_list {
{{- range .Values.model.config }}
  config {
    name: {{ .name | quote }}
    base_path: {{ .basePath | default (printf "%s/%s" (trimSuffix "/" $.Values.server.modelBasePath) .name) | quote }}
    model_platform: "tensorflow"
    {{- with .versionPolicy }}
    {{- if hasKey . "all" }}
    model_version_policy { all {} }
    {{- else if hasKey . "specific" }}
    model_version_policy { specific {{ "{" }}{{ range .specific.versions }} versions: {{ int64 . }}{{ end }} {{ "}" }} }
    {{- else if hasKey . "latest" }}
    model_version_policy { latest { num_versions: {{ int64 (.latest.numVersions | default 1) }} } }
    {{- end }}
    {{- end }}
    {{- range $label, $version := .versionLabels }}
    version_labels { key: {{ $label | quote }} value: {{ int64 $version }} }
    {{- end }}
  }
{{- end }}
}
{{- end }}
