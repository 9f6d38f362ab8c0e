{{/*
The release's live Deployment as JSON: `{}` under `helm template`, a client-side
`--dry-run` and on a first install (lookup sees no cluster object then). In a file of
its own so the chart tests can stand in for the cluster.
*/}}
{{- define "tf-model-server.liveDeployment" -}}
{{- lookup "apps/v1" "Deployment" .Release.Namespace (include "tf-model-server.fullname" .) | toJson }}
{{- end }}
