{{/*
Generated from image/modelserver/settings.py by `make docs` (ops.chart_settings): do not edit.
Each server setting's environment variable, its value under .Values.server and, where a
null value is computed by the chart, the template that computes it. Settings the chart
takes from the pod's own spec (the downward API) are in the Deployment, not here.
*/}}
{{- define "tf-model-server.settingValues" -}}
TFMS_HOST: {value: host}
TFMS_PORT: {value: port}
TFMS_GRPC_PORT: {value: grpcPort}
TFMS_GRPC_MAX_MESSAGE_BYTES: {value: grpc.maxMessageBytes}
TFMS_GRPC_MAX_CONNECTION_AGE_SECONDS: {value: grpc.maxConnectionAgeSeconds}
TFMS_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS: {value: grpc.maxConnectionAgeGraceSeconds}
TFMS_MODEL_BASE_PATH: {value: modelBasePath}
TFMS_MODEL_NAME: {value: modelName}
TFMS_MODEL_VERSION: {value: modelVersion}
TFMS_MODEL_CONFIG_FILE: {value: modelConfigFile}
TFMS_FILE_SYSTEM_POLL_WAIT_SECONDS: {value: fileSystemPollWaitSeconds}
TFMS_MODEL_CONFIG_FILE_POLL_WAIT_SECONDS: {value: modelConfigFilePollWaitSeconds}
TFMS_BATCH_ENABLED: {value: batching.enabled}
TFMS_BATCH_MAX_SIZE: {value: batching.maxBatchSize}
TFMS_BATCH_MAX_WAIT_MS: {value: batching.maxWaitMs}
TFMS_BATCH_QUEUE_SIZE: {value: batching.queueSize}
TFMS_DRAIN_DELAY_SECONDS: {value: drain.delaySeconds}
TFMS_DRAIN_TIMEOUT_SECONDS: {value: drain.timeoutSeconds}
TFMS_MAX_BODY_BYTES: {value: limits.maxBodyBytes}
TFMS_MAX_CONCURRENT_REQUESTS: {value: limits.maxConcurrentRequests, derived: tf-model-server.maxConcurrentRequests}
TFMS_MAX_INFLIGHT_BYTES: {value: limits.maxInflightBytes, derived: tf-model-server.maxInflightBytes}
TFMS_REQUEST_TIMEOUT_SECONDS: {value: limits.requestTimeoutSeconds}
TFMS_LOG_LEVEL: {value: logLevel}
TFMS_HUNG_INFERENCE_SECONDS: {value: limits.hungInferenceSeconds}
TFMS_INTRA_OP_THREADS: {value: threads.intraOp}
TFMS_INTER_OP_THREADS: {value: threads.interOp}
TFMS_FAULT_INJECTION: {value: faultInjection}
{{- end }}
