"""gRPC beside HTTP: TF Serving's PredictionService and ModelService, the Open Inference Protocol's
GRPCInferenceService and grpc.health.v1, on one port in the same process and event loop.

By how long their state lives: `server` (the grpc.aio server, its options and drain, for
the process), `calls` (one call: admission, timeout, metrics, errors, trailing
metadata), and one module per API that converts messages to the model service's calls
and back (`tfserving`, `v2`, `health`). They share with HTTP the model lookup, the
batcher, the admission budget, the request timeout and the metrics (app.py wires both).
"""
