{{/*
Generated from image/modelserver/settings.py by `make docs` (ops.chart_settings): do not edit.
Each server setting's environment variable and its value under .Values.server.
*/}}
{{- define "tf-model-server.settingValues" -}}
TFMS_HOST: host
TFMS_PORT: port
TFMS_MODEL_BASE_PATH: modelBasePath
TFMS_MODEL_NAME: modelName
TFMS_MODEL_VERSION: modelVersion
TFMS_MODEL_CONFIG_FILE: modelConfigFile
TFMS_FILE_SYSTEM_POLL_WAIT_SECONDS: fileSystemPollWaitSeconds
TFMS_MODEL_CONFIG_FILE_POLL_WAIT_SECONDS: modelConfigFilePollWaitSeconds
TFMS_BATCH_ENABLED: batching.enabled
TFMS_BATCH_MAX_SIZE: batching.maxBatchSize
TFMS_BATCH_MAX_WAIT_MS: batching.maxWaitMs
TFMS_BATCH_QUEUE_SIZE: batching.queueSize
TFMS_DRAIN_DELAY_SECONDS: drain.delaySeconds
TFMS_DRAIN_TIMEOUT_SECONDS: drain.timeoutSeconds
TFMS_MAX_BODY_BYTES: limits.maxBodyBytes
TFMS_REQUEST_TIMEOUT_SECONDS: limits.requestTimeoutSeconds
TFMS_LOG_LEVEL: logLevel
TFMS_INTRA_OP_THREADS: threads.intraOp
TFMS_INTER_OP_THREADS: threads.interOp
TFMS_FAULT_INJECTION: faultInjection
{{- end }}
