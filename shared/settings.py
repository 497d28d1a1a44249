"""One typed settings object, read once from `GREENQ_*` environment variables.

Build it at an entry point with `Settings()` and pass it down; nothing else reads the
environment. Nested values use `__`: `GREENQ_BATCH__REPLY__MAX_WAIT_S=0.01`, or give a
whole JSON object: `GREENQ_BATCH='{"reply": {"max_batch_size": 8}}'`. A partial
per-type value is merged onto that type's defaults.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from greenq.shared import job_types
from greenq.shared.delivery import Priority
from greenq.shared.job_types import JobType, KnownJobType
from greenq.shared.jobs import MAX_PAYLOAD_BYTES
from greenq.shared.policies import BACKLOG_GRACE_S, BatchPolicy, GenerationSettings
from greenq.shared.redis_client import DEFAULT_SENTINEL_MASTER, is_sentinel_url


class ChaosSettings(BaseModel):
    """Fault injection for fault tests and game days; everything off by default. Never enable in production."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    crash_marker: str = ""  # a prompt containing it SIGKILLs the worker process
    fail_marker: str = ""  # a prompt containing it makes its batch raise
    oom_above_batch_size: int = Field(default=0, ge=0)  # batches larger than this raise OutOfMemoryError
    batch_delay_s: float = Field(default=0.0, ge=0, le=600)  # added to every batch's compute time
    step_delay_s: float = Field(default=0.0, ge=0, le=60)  # added to every decoding step that adds text
    log_computations: bool = False  # push "<job id> <pid>" to greenq:chaos:computations per computation
    device_fault_file: Path | None = None  # while this file exists, every batch raises a CUDA error
    release_delay_s: float = Field(default=0.0, ge=0, le=600)  # the scheduler waits this between claim and publish

    @property
    def enabled(self) -> bool:
        return bool(
            self.crash_marker
            or self.fail_marker
            or self.oom_above_batch_size
            or self.batch_delay_s
            or self.step_delay_s
            or self.device_fault_file
            or self.release_delay_s
        )


HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def _merge_per_type(defaults: dict[str, Any], given: Any) -> dict[str, Any]:
    """Overlay a partial {type: {...}} mapping onto the job types' declared defaults.

    Keys are checked afterwards (KnownJobType): an unknown type is an error naming the known ones.
    """
    merged: dict[str, Any] = {t: (dict(v) if isinstance(v, dict) else v) for t, v in defaults.items()}
    for key, value in (given or {}).items():
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


class StreamSettings(BaseModel):
    """Each job's text as it decodes, in a Redis Stream per job (shared/token_stream.py)."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True  # GREENQ_STREAM__ENABLED
    flush_interval_s: float = Field(default=0.05, gt=0, le=5)  # a worker writes each job's new text this often
    max_entries: int = Field(default=2000, ge=16, le=100_000)  # per job: older entries are trimmed


class DeadLetterSettings(BaseModel):
    """Bounds of the dead-letter store (shared/deadletter.py): each write drops the oldest beyond them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_records: int = Field(default=10_000, ge=1, le=1_000_000)  # GREENQ_DEAD_LETTERS__MAX_RECORDS
    retention_s: int = Field(default=14 * 86_400, ge=60, le=366 * 86_400)  # records older than this are dropped


# What a structured setting looks like, for the error when its value is not JSON (a BaseModel setting without
# an entry here shows its first field).
FORM_EXAMPLES: dict[str, str] = {
    "gateway_callback_allow": '["10.20.0.0/16", "hooks.internal"]',
    "models": '{"reply": "local:store-assistant"}',
    "batch": '{"reply": {"max_batch_size": 8}}',
    "generation": '{"reply": {"max_new_tokens": 96}}',
    "priority": '{"reply": 9}',
    "latency_objective_s": '{"reply": 5}',
    "chaos": '{"batch_delay_s": 0.5}',
}
_UNPARSED = re.compile(r'error parsing value for field "(\w+)"')


def expected_form(name: str, field: FieldInfo) -> str:
    """How to write setting `name` in the environment: its form and an example."""
    variable = f"GREENQ_{name.upper()}"
    shape = field.annotation
    if isinstance(shape, type) and issubclass(shape, BaseModel):
        first, info = next(iter(shape.model_fields.items()))
        example = FORM_EXAMPLES.get(name, json.dumps({first: info.default}))
        one = f"{variable}__{first.upper()}={json.dumps(info.default)}"
        return f"{variable} takes a JSON object, e.g. {variable}='{example}', or one field at a time, e.g. {one}"
    listed = get_origin(shape) in (list, tuple, set, frozenset)
    kind = "a JSON list" if listed else "a JSON object"
    example = FORM_EXAMPLES.get(name, '["..."]' if listed else '{"...": "..."}')
    return f"{variable} takes {kind}, e.g. {variable}='{example}'"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GREENQ_", env_nested_delimiter="__", extra="ignore", frozen=True, validate_default=True
    )

    def __init__(self, **values: Any) -> None:
        # pydantic-settings reports a structured value that is not JSON only as `error parsing value for field
        # "x"`: say which variable, the form it takes and an example, here where every entry point builds it.
        # The value itself is not repeated: it may be a secret.
        try:
            super().__init__(**values)
        except SettingsError as exc:
            found = _UNPARSED.search(str(exc))
            field = type(self).model_fields.get(found.group(1)) if found else None
            if found is None or field is None:
                raise
            reason = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
            raise SettingsError(
                f"{expected_form(found.group(1), field)}; the value given is not JSON{reason}"
            ) from None

    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend_url: str = ""  # empty: the broker URL
    tls_ca_file: Path | None = None
    # For sentinel:// URLs: the name the sentinels monitor the master under (kombu's `master_name`).
    sentinel_master: str = Field(default=DEFAULT_SENTINEL_MASTER, min_length=1)
    model: str = "local:store-assistant"
    models: dict[KnownJobType, str] = Field(default_factory=dict)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    model_cache_dir: Path = Path.home() / ".cache" / "greenq" / "models"
    # Per job type, merged onto each type's declared defaults (shared/job_types/).
    batch: dict[KnownJobType, BatchPolicy] = Field(default_factory=dict)
    generation: dict[KnownJobType, GenerationSettings] = Field(default_factory=dict)
    priority: dict[KnownJobType, Priority] = Field(default_factory=dict)
    # p95 submission-to-result objective per job type, seconds: the adaptive batch policy holds
    # batches within it, the alerts compare latency against it (greenq_latency_objective_seconds).
    latency_objective_s: dict[KnownJobType, float] = Field(default_factory=dict)
    max_payload_bytes: int = Field(default=MAX_PAYLOAD_BYTES, ge=1024, le=16 * 1024 * 1024)
    prompt_templates_dir: Path | None = None
    max_prompt_tokens: int = Field(default=1024, ge=16, le=131072)
    result_ttl_s: int = Field(default=86400, ge=60)
    visibility_timeout_s: int = Field(default=3600, ge=2)
    # A worker's held jobs go back to the queue once it has missed heartbeats for this long.
    consumer_lease_s: float = Field(default=30.0, ge=1, le=3600)
    idle_poll_s: float = Field(default=0.05, gt=0, le=5)  # how often an idle worker asks for work
    max_batch_compute_s: float = Field(default=600, gt=0)
    # How a worker batches: whole batches (static), jobs joining and leaving between decoding steps
    # (continuous), or whichever measures more tokens/s on the loaded model at start (auto).
    runtime_mode: Literal["static", "continuous", "auto"] = "static"
    worker_threads: int = Field(default=0, ge=0, le=4096)
    torch_threads: int = Field(default=0, ge=0, le=1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_port: int = Field(default=9300, ge=0, le=65535)
    # Every interface by default: Prometheus in another container or pod, and the kubelet's probes, reach it there.
    metrics_host: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address("0.0.0.0")
    exporter_port: int = Field(default=9299, ge=1, le=65535)
    energy_meter: Literal["auto", "nvml", "rapl", "estimate"] = "auto"
    rapl_root: Path = Path("/sys/class/powercap")
    cpu_watts_per_core: float = Field(default=10.0, gt=0, le=1000)
    carbon_intensity_g_per_kwh: float = Field(default=400.0, ge=0, le=2000)
    carbon_intensity_file: Path | None = None
    carbon_intensity_url: str = ""
    carbon_location: str = ""
    carbon_cache_s: float = Field(default=300.0, ge=0)
    # Which API GREENQ_CARBON_INTENSITY_URL speaks (workers/energy/forecasts.py).
    carbon_intensity_api: Literal["carbon-aware-sdk", "uk-carbon-intensity"] = "carbon-aware-sdk"
    # The carbon-aware scheduler (`greenq scheduler`, workers/scheduler/).
    scheduler_tick_s: float = Field(default=15.0, gt=0, le=600)  # how often it plans and releases
    scheduler_slot_s: float = Field(default=300.0, ge=1, le=3600)  # planning granularity
    # Deferred jobs the fleet may start per hour; 0: measured from the workers' learned batch costs.
    scheduler_capacity_jobs_per_hour: float = Field(default=0.0, ge=0)
    scheduler_capacity_share: float = Field(default=0.5, gt=0, le=1)  # of the measured throughput
    scheduler_plan_ahead: bool = True  # keep room in troughs for the jobs expected to be deferred later
    scheduler_release_lease_s: float = Field(default=60.0, ge=1, le=3600)  # a release not confirmed by then is redone
    scheduler_port: int = Field(default=9298, ge=0, le=65535)
    pue: float = Field(default=1.0, ge=1.0, le=3.0)
    max_attempts: int = Field(default=3, ge=1, le=100)
    oom_backoff_s: float = Field(default=60.0, ge=0)
    chaos: ChaosSettings = Field(default_factory=ChaosSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    dead_letters: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    gateway_tenants_file: Path | None = None
    gateway_max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    gateway_max_batch_jobs: int = Field(default=500, ge=1, le=10_000)
    gateway_max_queue_depth: int = Field(default=10_000, ge=1)
    gateway_max_wait_s: float = Field(default=60.0, ge=0, le=600)
    gateway_callback_attempts: int = Field(default=5, ge=1, le=50)
    gateway_callback_timeout_s: float = Field(default=10.0, gt=0, le=300)  # whole attempt: connect, send, answer
    gateway_callback_concurrency: int = Field(default=4, ge=1, le=1000)  # attempts in flight per tenant
    # Callback host lookups: at most this many running per tenant (submits and attempts together), each given
    # up on after the timeout (a 422 at submit, a failed attempt at send).
    gateway_callback_resolve_concurrency: int = Field(default=4, ge=1, le=1000)
    gateway_callback_resolve_timeout_s: float = Field(default=2.0, gt=0, le=60)
    # At submit, that timeout counts from a lookup's start; the wait for a slot first is bounded by this.
    gateway_callback_resolve_queue_s: float = Field(default=60.0, gt=0, le=600)
    gateway_callback_allow: list[str] = Field(default_factory=list)  # CIDRs / host names callbacks may reach
    # A waiting callback's job is looked at again this often, in case its result's notification was missed.
    gateway_callback_sweep_s: float = Field(default=30.0, ge=1, le=3600)
    gateway_max_streams_per_tenant: int = Field(default=50, ge=1, le=100_000)  # open SSE streams, per gateway process

    @field_validator("batch", mode="before")
    @classmethod
    def _batch_defaults(cls, value: Any) -> Any:
        return _merge_per_type({spec.name: spec.batch.model_dump() for spec in job_types.specs()}, value)

    @field_validator("generation", mode="before")
    @classmethod
    def _generation_defaults(cls, value: Any) -> Any:
        return _merge_per_type({spec.name: spec.generation.model_dump() for spec in job_types.specs()}, value)

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_defaults(cls, value: Any) -> Any:
        return _merge_per_type({spec.name: spec.priority for spec in job_types.specs()}, value)

    @field_validator("latency_objective_s", mode="before")
    @classmethod
    def _objective_defaults(cls, value: Any) -> Any:
        return _merge_per_type({spec.name: spec.latency_objective_s for spec in job_types.specs()}, value)

    @field_validator("latency_objective_s")
    @classmethod
    def _objectives_positive(cls, value: dict[str, float]) -> dict[str, float]:
        for job_type, objective_s in value.items():
            if not 0 < objective_s <= 7 * 86_400:
                raise ValueError(f"latency_objective_s.{job_type}: {objective_s} s; use more than 0 and at most a week")
        return value

    @field_validator("gateway_callback_allow")
    @classmethod
    def _allow_entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            text = entry.strip().lower().rstrip(".")
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                if not HOSTNAME.match(text):
                    raise ValueError(
                        f"gateway_callback_allow: {entry!r} is neither a CIDR (10.0.0.0/8, fd00::/8, 127.0.0.1) "
                        "nor a host name"
                    ) from None
        return value

    @model_validator(mode="after")
    def _visibility_covers_work(self) -> Settings:
        longest_s = max(self.longest_hold_s(t) for t in self.batch) + self.max_batch_compute_s
        if self.visibility_timeout_s <= longest_s:
            raise ValueError(
                f"visibility_timeout_s ({self.visibility_timeout_s}) must exceed the longest batch wait plus "
                f"max_batch_compute_s ({longest_s:.0f} s), or Redis redelivers jobs that are still running"
            )
        if self.tls_ca_file is not None and any(map(is_sentinel_url, (self.broker_url, self.backend_url))):
            raise ValueError(
                "GREENQ_TLS_CA_FILE is for rediss:// URLs; greenq does not speak TLS to Sentinel-managed Redis "
                "(sentinel://). Use a private network for Sentinel, or rediss:// to one Redis."
            )
        for job_type, gen in self.generation.items():
            if gen.min_new_tokens > gen.max_new_tokens:
                raise ValueError(f"generation.{job_type}: min_new_tokens exceeds max_new_tokens")
        return self

    def longest_hold_s(self, job_type: JobType) -> float:
        """The longest a worker may hold this type's job before its batch starts."""
        policy = self.batch[job_type]
        if policy.mode == "fixed":
            return policy.max_wait_s + BACKLOG_GRACE_S
        return min(policy.max_hold_s, self.latency_objective_s[job_type])

    @property
    def backend_url(self) -> str:
        return self.result_backend_url or self.broker_url

    def model_for(self, job_type: JobType) -> str:
        return self.models.get(job_type, self.model)
