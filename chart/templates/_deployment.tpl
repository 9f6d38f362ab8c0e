{{/*
A Deployment of the server, rendered for the stable track (deployment.yaml) and, when
`canary.enabled`, for the canary track (canary.yaml) from a context whose Values are the
canary's (tf-model-server.canaryValues) and whose `track` names it. Both tracks' pods
carry the selector labels, so the one Service spreads traffic over their ready pods;
each Deployment selects its own track only.
*/}}
{{- define "tf-model-server.deployment" -}}
{{- $model := .Values.model -}}
{{- $basePath := .Values.server.modelBasePath -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "tf-model-server.workloadName" . }}
  labels:
    {{- include "tf-model-server.labels" . | nindent 4 }}
    track: {{ .track }}
spec:
  {{- with include "tf-model-server.replicas" . }}
  replicas: {{ . }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "tf-model-server.selectorLabels" . | nindent 6 }}
      track: {{ .track }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: {{ .Values.rollingUpdate.maxSurge }}
      maxUnavailable: {{ .Values.rollingUpdate.maxUnavailable }}
  template:
    metadata:
      annotations:
        checksum/config: {{ include "tf-model-server.configMap" . | sha256sum }}
        {{- if and .Values.model.config (not (gt (float64 .Values.server.modelConfigFilePollWaitSeconds) 0.0)) }}
        {{- /* The server does not re-read its model config: a change must roll the pods. */}}
        checksum/model-config: {{ include "tf-model-server.modelConfigText" . | sha256sum }}
        {{- end }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      labels:
        {{- include "tf-model-server.labels" . | nindent 8 }}
        track: {{ .track }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      serviceAccountName: {{ include "tf-model-server.serviceAccountName" . }}
      automountServiceAccountToken: {{ .Values.serviceAccount.automount }}
      enableServiceLinks: false
      {{- with .Values.podSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      terminationGracePeriodSeconds: {{ include "tf-model-server.terminationGracePeriodSeconds" . }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with .Values.runtimeClassName }}
      runtimeClassName: {{ . }}
      {{- end }}
      {{- if eq $model.source "url" }}
      initContainers:
        - name: fetch-model
          image: {{ include "tf-model-server.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          command:
            - python
            - -m
            - modelserver.fetch
            - --url
            - {{ $model.url.address | quote }}
            - --dest
            - {{ $basePath | quote }}
            {{- /* Bounded by the emptyDir it fills: the whole archive never exceeds it, and the
                   files leave 5 % of it for the filesystem's blocks and directories. */}}
            {{- $volume := include "tf-model-server.modelsVolumeBytes" . | int64 }}
            - --max-download-bytes
            - {{ $volume | quote }}
            - --max-unpacked-bytes
            - {{ div (mul $volume 95) 100 | quote }}
          {{- with .Values.securityContext }}
          securityContext:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $model.url.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: models
              mountPath: {{ $basePath }}
      {{- end }}
      containers:
        - name: server
          image: {{ include "tf-model-server.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          {{- with .Values.securityContext }}
          securityContext:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            - name: http
              containerPort: {{ .Values.server.port }}
              protocol: TCP
            {{- if .Values.server.grpcPort }}
            - name: grpc
              containerPort: {{ .Values.server.grpcPort }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ include "tf-model-server.workloadName" . }}
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            # The chart sets no CPU limit, so the server sizes TensorFlow's threads from the request.
            - name: TFMS_CPU_REQUEST_MILLICORES
              valueFrom:
                resourceFieldRef:
                  containerName: server
                  resource: requests.cpu
                  divisor: 1m
            {{- with .Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with .Values.startupProbe }}
          startupProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .Values.livenessProbe }}
          livenessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with include "tf-model-server.readinessProbe" . | fromYaml }}
          readinessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- if gt (int .Values.termination.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ .Values.termination.preStopSleepSeconds }}
          {{- end }}
          {{- with .Values.resources }}
          resources:
            {{- include "tf-model-server.serverResources" $ | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if eq $model.source "pvc" }}
            - name: models
              mountPath: {{ $basePath }}
              readOnly: true
              {{- with $model.pvc.subPath }}
              subPath: {{ . }}
              {{- end }}
            {{- else if eq $model.source "url" }}
            - name: models
              mountPath: {{ $basePath }}
              readOnly: true
            {{- end }}
            {{- if .Values.model.config }}
            - name: model-config
              mountPath: {{ include "tf-model-server.modelConfigDir" . }}
              readOnly: true
            {{- end }}
            {{- with .Values.volumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        # TensorFlow needs a writable temporary directory on a read-only root filesystem.
        - name: tmp
          emptyDir:
            sizeLimit: {{ .Values.tmpDir.sizeLimit }}
        {{- if eq $model.source "pvc" }}
        - name: models
          persistentVolumeClaim:
            claimName: {{ $model.pvc.claimName }}
            readOnly: true
        {{- else if eq $model.source "url" }}
        - name: models
          emptyDir:
            sizeLimit: {{ $model.url.sizeLimit }}
        {{- end }}
        {{- if .Values.model.config }}
        {{- /* A directory mount (never subPath), so the kubelet updates the file in place. */}}
        - name: model-config
          configMap:
            name: {{ include "tf-model-server.fullname" . }}-models
        {{- end }}
        {{- with .Values.volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (include "tf-model-server.tolerations" . | fromYamlArray) }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.topologySpreadConstraints }}
      {{- $constraints := list }}
      {{- range $constraint := . }}
      {{- if not (hasKey $constraint "labelSelector") }}
      {{- $selector := dict "matchLabels" (include "tf-model-server.selectorLabels" $ | fromYaml) }}
      {{- $constraint = merge (dict "labelSelector" $selector) $constraint }}
      {{- end }}
      {{- $constraints = append $constraints $constraint }}
      {{- end }}
      topologySpreadConstraints:
        {{- toYaml $constraints | nindent 8 }}
      {{- end }}
{{- end }}
