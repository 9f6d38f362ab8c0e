"""The server's configuration: one typed, frozen object, read once at start.

Every setting has an environment variable (``TFMS_*``, what the Helm chart sets) and a
command-line flag; a flag wins over the environment, the environment over the default.
``python -m modelserver --help`` prints the table below. The table is also the chart's
contract: each row names its Helm value (under ``server.``) and that value's JSON schema,
from which the chart's ConfigMap keys and the ``server`` block of values.schema.json are
generated (``make docs``). Adding a setting is one row here plus its value in values.yaml.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# A request body is counted against TFMS_MAX_INFLIGHT_BYTES as its own bytes plus this many
# times its (decompressed) size: JSON numbers decoded into Python objects and then arrays
# peak at about 16x the text they came from (measured: 8 MiB of float rows -> 129 MiB).
DECODE_EXPANSION = 16
# A gRPC message is counted against the same budget as its bytes plus this many times them:
# the parsed message holds about its own size again, and the arrays made from it once more.
MESSAGE_DECODE_EXPANSION = 2
# TFMS_HUNG_INFERENCE_SECONDS=0: a call is hung after this many request timeouts.
HUNG_INFERENCE_TIMEOUTS = 4


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8501
    grpc_port: int = 8500
    grpc_max_message_bytes: int = 0
    grpc_max_connection_age_seconds: float = 60.0
    grpc_max_connection_age_grace_seconds: float = 0.0
    model_base_path: Path = Path("/models")
    model_names: tuple[str, ...] = ("anomaly",)
    model_version: int | None = None
    model_config_file: Path | None = None
    file_system_poll_wait_seconds: float = 1.0
    model_config_file_poll_wait_seconds: float = 10.0
    batch_enabled: bool = True
    batch_max_size: int = 32
    batch_max_wait_ms: float = 2.0
    batch_queue_size: int = 1024
    drain_delay_seconds: float = 5.0
    drain_timeout_seconds: float = 20.0
    max_body_bytes: int = 8 * 1024 * 1024
    max_concurrent_requests: int = 512
    max_inflight_bytes: int = 256 * 1024 * 1024
    request_timeout_seconds: float = 30.0
    hung_inference_seconds: float = 0.0
    log_level: str = "info"
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    cpu_request_millicores: int = 0
    fault_injection: bool = False

    @property
    def grpc_message_limit_bytes(self) -> int:
        """TFMS_GRPC_MAX_MESSAGE_BYTES, or TFMS_MAX_BODY_BYTES when it is 0 (one bound for both)."""
        return self.grpc_max_message_bytes or self.max_body_bytes

    @property
    def grpc_connection_age_grace_seconds(self) -> float:
        """TFMS_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS, or the request timeout when it is 0."""
        return self.grpc_max_connection_age_grace_seconds or self.request_timeout_seconds

    @property
    def hung_inference_limit_seconds(self) -> float:
        """TFMS_HUNG_INFERENCE_SECONDS, or 4x the request timeout when it is 0."""
        return self.hung_inference_seconds or HUNG_INFERENCE_TIMEOUTS * self.request_timeout_seconds


class SettingsError(ValueError):
    """A setting's value cannot be used; the message names the env var and the flag."""


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if "/" in name or ":" in name or name.startswith("."):
            raise ValueError(f"model name {name!r} may not contain '/' or ':' or start with '.'")
    return names


def parse_version(text: str) -> int | None:
    if not text.strip():
        return None
    version = int(text)
    if version < 0:
        raise ValueError("a model version is a non-negative integer")
    return version


def optional_path(text: str) -> Path | None:
    return Path(text) if text.strip() else None


def positive(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_positive(text: str) -> Any:
        value = parse(text)
        if value <= 0:
            raise ValueError(f"must be greater than 0, got {text!r}")
        return value

    return parse_positive


def non_negative(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_non_negative(text: str) -> Any:
        value = parse(text)
        if value < 0:
            raise ValueError(f"must be 0 or more, got {text!r}")
        return value

    return parse_non_negative


def parse_port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"a TCP port is 1..65535, got {text!r}")
    return port


def parse_optional_port(text: str) -> int:
    port = int(text)
    if not 0 <= port < 65536:
        raise ValueError(f"a TCP port is 1..65535 (0 = off), got {text!r}")
    return port


def parse_log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


@dataclass(frozen=True)
class Option:
    """How one Settings field is spelled on the command line, in the environment and in the chart."""

    field: str
    env: str
    flag: str
    parse: Callable[[str], Any]
    default_text: str
    help: str
    value: str = ""  # the chart's value under `server.`, e.g. "batching.maxBatchSize"
    schema: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # that value's JSON schema
    # The chart template that computes the setting when its value is null (e.g. from the memory limit).
    derived: str = ""
    # Set by the chart from the pod's own spec (downward API) instead of a value: what it is.
    from_pod: str = ""


# JSON schemas of chart values, shared by several rows.
INTEGER = {"type": "integer", "minimum": 0}
POSITIVE_INTEGER = {"type": "integer", "minimum": 1}
NUMBER = {"type": "number", "minimum": 0}
BOOLEAN = {"type": "boolean"}
NULLABLE_POSITIVE_INTEGER = {"type": ["integer", "null"], "minimum": 1}


OPTIONS: tuple[Option, ...] = (
    Option(
        "host",
        "TFMS_HOST",
        "--host",
        str,
        "0.0.0.0",
        "address to listen on",
        "host",
        {"type": "string", "minLength": 1},
    ),
    Option(
        "port",
        "TFMS_PORT",
        "--port",
        parse_port,
        "8501",
        "HTTP port for both APIs, health and /metrics",
        "port",
        {"type": "integer", "minimum": 1, "maximum": 65535},
    ),
    Option(
        "grpc_port",
        "TFMS_GRPC_PORT",
        "--grpc-port",
        parse_optional_port,
        "8500",
        "gRPC port (TF Serving's PredictionService and ModelService, the Open Inference Protocol's "
        "GRPCInferenceService, grpc.health.v1), in the same process as HTTP; 0 = no gRPC",
        "grpcPort",
        {"type": "integer", "minimum": 0, "maximum": 65535},
    ),
    Option(
        "grpc_max_message_bytes",
        "TFMS_GRPC_MAX_MESSAGE_BYTES",
        "--grpc-max-message-bytes",
        non_negative(int),
        "0",
        "largest gRPC request or response message; a larger request gets RESOURCE_EXHAUSTED from gRPC "
        "itself, before it is read; 0 = TFMS_MAX_BODY_BYTES, the HTTP body limit",
        "grpc.maxMessageBytes",
        INTEGER,
    ),
    Option(
        "grpc_max_connection_age_seconds",
        "TFMS_GRPC_MAX_CONNECTION_AGE_SECONDS",
        "--grpc-max-connection-age-seconds",
        non_negative(float),
        "60",
        "a gRPC connection older than this (gRPC adds up to 10 percent jitter) gets a GOAWAY, so "
        "long-lived clients reconnect and a Service spreads them over new pods; 0 = never (gRPC's default)",
        "grpc.maxConnectionAgeSeconds",
        NUMBER,
    ),
    Option(
        "grpc_max_connection_age_grace_seconds",
        "TFMS_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS",
        "--grpc-max-connection-age-grace-seconds",
        non_negative(float),
        "0",
        "RPCs in flight on a connection past its max age get this long to finish before it closes; "
        "0 = the request timeout (TFMS_REQUEST_TIMEOUT_SECONDS), so no RPC the server would answer is cut",
        "grpc.maxConnectionAgeGraceSeconds",
        NUMBER,
    ),
    Option(
        "model_base_path",
        "TFMS_MODEL_BASE_PATH",
        "--model-base-path",
        Path,
        "/models",
        "model repository root, TF Serving layout: <base>/<name>/<version>/saved_model.pb",
        "modelBasePath",
        {"type": "string", "pattern": "^/"},
    ),
    Option(
        "model_names",
        "TFMS_MODEL_NAME",
        "--model-name",
        parse_names,
        "anomaly",
        "model(s) to serve, comma-separated; each must load before the server is ready",
        "modelName",
        {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]*(,[A-Za-z0-9_-][A-Za-z0-9._-]*)*$"},
    ),
    Option(
        "model_version",
        "TFMS_MODEL_VERSION",
        "--model-version",
        parse_version,
        "(empty)",
        "version to serve for every model; empty = the newest version found",
        "modelVersion",
        {"anyOf": [INTEGER, {"type": "string", "pattern": "^[0-9]*$"}]},
    ),
    Option(
        "model_config_file",
        "TFMS_MODEL_CONFIG_FILE",
        "--model-config-file",
        optional_path,
        "(empty)",
        "TF Serving's model config file (ModelServerConfig, text format: models, version policies, "
        "labels); when set, TFMS_MODEL_NAME and TFMS_MODEL_VERSION are ignored",
        "modelConfigFile",
        {"type": "string"},
    ),
    Option(
        "file_system_poll_wait_seconds",
        "TFMS_FILE_SYSTEM_POLL_WAIT_SECONDS",
        "--file-system-poll-wait-seconds",
        non_negative(float),
        "1",
        "seconds between looks at each model's base path for versions to load or unload; "
        "0 = look once, at start (TF Serving's --file_system_poll_wait_seconds)",
        "fileSystemPollWaitSeconds",
        NUMBER,
    ),
    Option(
        "model_config_file_poll_wait_seconds",
        "TFMS_MODEL_CONFIG_FILE_POLL_WAIT_SECONDS",
        "--model-config-file-poll-wait-seconds",
        non_negative(float),
        "10",
        "seconds between re-reads of the model config file (models, policies and labels change "
        "without a restart); 0 = read it once (TF Serving's default)",
        "modelConfigFilePollWaitSeconds",
        NUMBER,
    ),
    Option(
        "batch_enabled",
        "TFMS_BATCH_ENABLED",
        "--batch-enabled",
        parse_bool,
        "true",
        "adaptive batching; false = one TensorFlow call per request",
        "batching.enabled",
        BOOLEAN,
    ),
    Option(
        "batch_max_size",
        "TFMS_BATCH_MAX_SIZE",
        "--batch-max-size",
        positive(int),
        "32",
        "most rows (instances) one TensorFlow call may take",
        "batching.maxBatchSize",
        POSITIVE_INTEGER,
    ),
    Option(
        "batch_max_wait_ms",
        "TFMS_BATCH_MAX_WAIT_MS",
        "--batch-max-wait-ms",
        non_negative(float),
        "2",
        "longest a request waits for others to share its batch (ms)",
        "batching.maxWaitMs",
        NUMBER,
    ),
    Option(
        "batch_queue_size",
        "TFMS_BATCH_QUEUE_SIZE",
        "--batch-queue-size",
        positive(int),
        "1024",
        "requests waiting per model signature; beyond it requests get 429",
        "batching.queueSize",
        POSITIVE_INTEGER,
    ),
    Option(
        "drain_delay_seconds",
        "TFMS_DRAIN_DELAY_SECONDS",
        "--drain-delay-seconds",
        non_negative(float),
        "5",
        "after SIGTERM: seconds to keep serving (readiness 503) before refusing new connections",
        "drain.delaySeconds",
        INTEGER,
    ),
    Option(
        "drain_timeout_seconds",
        "TFMS_DRAIN_TIMEOUT_SECONDS",
        "--drain-timeout-seconds",
        positive(float),
        "20",
        "after SIGTERM: the process exits within this many seconds",
        "drain.timeoutSeconds",
        POSITIVE_INTEGER,
    ),
    Option(
        "max_body_bytes",
        "TFMS_MAX_BODY_BYTES",
        "--max-body-bytes",
        positive(int),
        "8388608",
        "largest request body after decompression (Content-Encoding gzip or deflate); larger gets 413 "
        "(checked while the body streams in and inflates, never buffered past it)",
        "limits.maxBodyBytes",
        POSITIVE_INTEGER,
    ),
    Option(
        "max_concurrent_requests",
        "TFMS_MAX_CONCURRENT_REQUESTS",
        "--max-concurrent-requests",
        positive(int),
        "512",
        "POST requests handled at once; beyond it 429 at once, before the body is read "
        "(GETs: health, metadata, metrics are never refused)",
        "limits.maxConcurrentRequests",
        NULLABLE_POSITIVE_INTEGER,
        derived="tf-model-server.maxConcurrentRequests",
    ),
    Option(
        "max_inflight_bytes",
        "TFMS_MAX_INFLIGHT_BYTES",
        "--max-inflight-bytes",
        positive(int),
        "268435456",
        f"memory budget of the request bodies in flight, each counted as its bytes plus {DECODE_EXPANSION}x "
        "its decompressed size (decoding); a request that would exceed it gets 429 before it is decoded",
        "limits.maxInflightBytes",
        NULLABLE_POSITIVE_INTEGER,
        derived="tf-model-server.maxInflightBytes",
    ),
    Option(
        "request_timeout_seconds",
        "TFMS_REQUEST_TIMEOUT_SECONDS",
        "--request-timeout-seconds",
        positive(float),
        "30",
        "a request not answered within this gets 504",
        "limits.requestTimeoutSeconds",
        {"type": "number", "exclusiveMinimum": 0},
    ),
    Option(
        "log_level",
        "TFMS_LOG_LEVEL",
        "--log-level",
        parse_log_level,
        "info",
        ", ".join(LOG_LEVELS),
        "logLevel",
        {"type": "string", "enum": list(LOG_LEVELS)},
    ),
    Option(
        "hung_inference_seconds",
        "TFMS_HUNG_INFERENCE_SECONDS",
        "--hung-inference-seconds",
        non_negative(float),
        "0",
        "a TensorFlow call running longer is hung: liveness fails (the kubelet restarts the container) "
        f"and its stack is logged; 0 = {HUNG_INFERENCE_TIMEOUTS}x the request timeout",
        "limits.hungInferenceSeconds",
        NUMBER,
    ),
    Option(
        "intra_op_threads",
        "TFMS_INTRA_OP_THREADS",
        "--intra-op-threads",
        non_negative(int),
        "0",
        "TensorFlow threads inside one op; 0 = the container's CPU limit (cgroup v1/v2 quota), "
        "else its CPU request (TFMS_CPU_REQUEST_MILLICORES), else the schedulable CPUs",
        "threads.intraOp",
        INTEGER,
    ),
    Option(
        "inter_op_threads",
        "TFMS_INTER_OP_THREADS",
        "--inter-op-threads",
        non_negative(int),
        "0",
        "TensorFlow ops run in parallel; 0 = auto (min(2, intra-op threads))",
        "threads.interOp",
        INTEGER,
    ),
    Option(
        "cpu_request_millicores",
        "TFMS_CPU_REQUEST_MILLICORES",
        "--cpu-request-millicores",
        non_negative(int),
        "0",
        "the pod's CPU request in millicores (the chart sets it from the downward API); "
        "sizes TensorFlow's threads when there is no CPU limit; 0 = unknown",
        from_pod="resources.requests.cpu (downward API, in millicores)",
    ),
    Option(
        "fault_injection",
        "TFMS_FAULT_INJECTION",
        "--fault-injection",
        parse_bool,
        "false",
        "tests only: enables POST /debug/fault/liveness (liveness answers 503 afterwards) and "
        "POST /debug/fault/hang-inference (the inference thread blocks for good)",
        "faultInjection",
        BOOLEAN,
    ),
)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modelserver",
        description="TensorFlow SavedModel server: TF Serving's REST and gRPC APIs and the Open Inference "
        "Protocol (V2) over REST and gRPC, one port for each transport. Each flag has an environment "
        "variable; a flag wins over the environment.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for option in OPTIONS:
        parser.add_argument(
            option.flag,
            dest=option.field,
            metavar=option.env,
            default=None,
            help=f"{option.help} (env {option.env}, default {option.default_text})",
        )
    return parser


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Flags over environment over defaults; raises SettingsError naming the bad setting."""
    flags = vars(argument_parser().parse_args(list(argv)))
    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw = flags[option.field]
        source = option.flag
        if raw is None:
            raw = environ.get(option.env)
            source = option.env
        if raw is None:
            continue
        try:
            values[option.field] = option.parse(raw)
        except ValueError as error:
            raise SettingsError(f"{source}={raw!r}: {error}") from None
    settings = Settings(**values)
    if settings.drain_delay_seconds >= settings.drain_timeout_seconds:
        raise SettingsError(
            f"TFMS_DRAIN_DELAY_SECONDS ({settings.drain_delay_seconds:g}) must be less than "
            f"TFMS_DRAIN_TIMEOUT_SECONDS ({settings.drain_timeout_seconds:g}): "
            "in-flight requests need time to finish"
        )
    needed = settings.max_body_bytes * (1 + DECODE_EXPANSION)
    if settings.max_inflight_bytes < needed:
        raise SettingsError(
            f"TFMS_MAX_INFLIGHT_BYTES ({settings.max_inflight_bytes}) must be at least "
            f"{1 + DECODE_EXPANSION}x TFMS_MAX_BODY_BYTES ({needed}): a body of the largest size "
            "allowed must fit the budget"
        )
    message_needs = settings.grpc_message_limit_bytes * (1 + MESSAGE_DECODE_EXPANSION)
    if settings.grpc_port and settings.max_inflight_bytes < message_needs:
        raise SettingsError(
            f"TFMS_MAX_INFLIGHT_BYTES ({settings.max_inflight_bytes}) must be at least "
            f"{1 + MESSAGE_DECODE_EXPANSION}x TFMS_GRPC_MAX_MESSAGE_BYTES ({message_needs}): a message of "
            "the largest size allowed must fit the budget"
        )
    if settings.grpc_port and settings.grpc_port == settings.port:
        raise SettingsError(f"TFMS_GRPC_PORT and TFMS_PORT are both {settings.port}: they need a port each")
    if settings.hung_inference_limit_seconds <= settings.request_timeout_seconds:
        raise SettingsError(
            f"TFMS_HUNG_INFERENCE_SECONDS ({settings.hung_inference_seconds:g}) must be more than "
            f"TFMS_REQUEST_TIMEOUT_SECONDS ({settings.request_timeout_seconds:g}): "
            "a slow call is not a hung one"
        )
    return settings


def markdown_table() -> str:
    """The README's configuration table, generated from OPTIONS."""
    rows = ["| Env var | Flag | Default | Meaning |", "|---|---|---|---|"]
    rows += [f"| `{o.env}` | `{o.flag}` | `{o.default_text}` | {o.help} |" for o in OPTIONS]
    return "\n".join(rows)


def settings_fields() -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(Settings))


if __name__ == "__main__":
    print(markdown_table())
