"""One typed settings object, read once from `GREENQ_*` environment variables.

Build it at an entry point with `Settings()` and pass it down; nothing else reads the
environment. Nested values use `__`: `GREENQ_BATCH__REPLY__MAX_WAIT_S=0.01`, or give a
whole JSON object: `GREENQ_BATCH='{"reply": {"max_batch_size": 8}}'`. A partial
per-type value is merged onto that type's defaults.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.jobs import MAX_PAYLOAD_BYTES, JobType
from shared.redis_client import DEFAULT_SENTINEL_MASTER, is_sentinel_url


class BatchPolicy(BaseModel):
    """How a worker forms batches: at most `max_batch_size` jobs and `max_batch_tokens`
    (prompt + new tokens, padded), waiting at most `max_wait_s` after the first job arrives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch_size: int = Field(default=16, ge=1, le=1024)
    max_wait_s: float = Field(default=0.05, ge=0, le=60)
    max_batch_tokens: int = Field(default=32768, ge=16, le=10_000_000)


class GenerationSettings(BaseModel):
    """Generation limits for one job type; jobs share a batch only if all but `max_new_tokens` agree."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(default=160, ge=1, le=8192)
    min_new_tokens: int = Field(default=1, ge=0, le=8192)
    do_sample: bool = False
    temperature: float = Field(default=1.0, gt=0, le=5)
    top_p: float = Field(default=1.0, gt=0, le=1)
    repetition_penalty: float = Field(default=1.0, ge=1, le=5)

    def batch_key(self) -> tuple[object, ...]:
        """What must be equal for two jobs to share one `generate` call."""
        return (self.min_new_tokens, self.do_sample, self.temperature, self.top_p, self.repetition_penalty)


class ChaosSettings(BaseModel):
    """Fault injection for fault tests and game days; everything off by default. Never enable in production."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    crash_marker: str = ""  # a prompt containing it SIGKILLs the worker process
    fail_marker: str = ""  # a prompt containing it makes its batch raise
    oom_above_batch_size: int = Field(default=0, ge=0)  # batches larger than this raise OutOfMemoryError
    batch_delay_s: float = Field(default=0.0, ge=0, le=600)  # added to every batch's compute time
    log_computations: bool = False  # push "<job id> <pid>" to greenq:chaos:computations per computation
    device_fault_file: Path | None = None  # while this file exists, every batch raises a CUDA error

    @property
    def enabled(self) -> bool:
        return bool(
            self.crash_marker
            or self.fail_marker
            or self.oom_above_batch_size
            or self.batch_delay_s
            or self.device_fault_file
        )


DEFAULT_BATCH: dict[JobType, dict[str, Any]] = {
    JobType.reply: {"max_batch_size": 16, "max_wait_s": 0.02},
    JobType.description: {"max_batch_size": 16, "max_wait_s": 0.05},
    JobType.strategy: {"max_batch_size": 8, "max_wait_s": 0.2},
}
DEFAULT_GENERATION: dict[JobType, dict[str, Any]] = {
    JobType.reply: {"max_new_tokens": 160},
    JobType.description: {"max_new_tokens": 200},
    JobType.strategy: {"max_new_tokens": 256},
}
HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
# greenq's scale: 9 is most urgent. Replies are interactive, strategies can wait.
DEFAULT_PRIORITY: dict[JobType, int] = {JobType.reply: 8, JobType.description: 5, JobType.strategy: 2}


def _merge_per_type(defaults: dict[JobType, Any], given: Any) -> dict[JobType, Any]:
    """Overlay a partial {type: {...}} mapping onto per-type defaults."""
    merged: dict[JobType, Any] = {t: (dict(v) if isinstance(v, dict) else v) for t, v in defaults.items()}
    for key, value in (given or {}).items():
        job_type = JobType(key)
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if isinstance(value, dict) and isinstance(merged.get(job_type), dict):
            merged[job_type] = {**merged[job_type], **value}
        else:
            merged[job_type] = value
    return merged


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GREENQ_", env_nested_delimiter="__", extra="ignore", frozen=True, validate_default=True
    )

    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend_url: str = ""  # empty: the broker URL
    tls_ca_file: Path | None = None
    # For sentinel:// URLs: the name the sentinels monitor the master under (kombu's `master_name`).
    sentinel_master: str = Field(default=DEFAULT_SENTINEL_MASTER, min_length=1)
    model: str = "local:store-assistant"
    models: dict[JobType, str] = Field(default_factory=dict)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    model_cache_dir: Path = Path.home() / ".cache" / "greenq" / "models"
    batch: dict[JobType, BatchPolicy] = Field(default_factory=dict)
    generation: dict[JobType, GenerationSettings] = Field(default_factory=dict)
    priority: dict[JobType, int] = Field(default_factory=dict)
    max_payload_bytes: int = Field(default=MAX_PAYLOAD_BYTES, ge=1024, le=16 * 1024 * 1024)
    prompt_templates_dir: Path | None = None
    max_prompt_tokens: int = Field(default=1024, ge=16, le=131072)
    result_ttl_s: int = Field(default=86400, ge=60)
    visibility_timeout_s: int = Field(default=3600, ge=2)
    # A worker's held jobs go back to the queue once it has missed heartbeats for this long.
    consumer_lease_s: float = Field(default=30.0, ge=1, le=3600)
    idle_poll_s: float = Field(default=0.05, gt=0, le=5)  # how often an idle worker asks for work
    max_batch_compute_s: float = Field(default=600, gt=0)
    worker_threads: int = Field(default=0, ge=0, le=4096)
    torch_threads: int = Field(default=0, ge=0, le=1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_port: int = Field(default=9300, ge=0, le=65535)
    exporter_port: int = Field(default=9299, ge=1, le=65535)
    energy_meter: Literal["auto", "nvml", "rapl", "estimate"] = "auto"
    rapl_root: Path = Path("/sys/class/powercap")
    cpu_watts_per_core: float = Field(default=10.0, gt=0, le=1000)
    carbon_intensity_g_per_kwh: float = Field(default=400.0, ge=0, le=2000)
    carbon_intensity_file: Path | None = None
    carbon_intensity_url: str = ""
    carbon_location: str = ""
    carbon_cache_s: float = Field(default=300.0, ge=0)
    pue: float = Field(default=1.0, ge=1.0, le=3.0)
    max_attempts: int = Field(default=3, ge=1, le=100)
    oom_backoff_s: float = Field(default=60.0, ge=0)
    chaos: ChaosSettings = Field(default_factory=ChaosSettings)
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    gateway_tenants_file: Path | None = None
    gateway_max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    gateway_max_batch_jobs: int = Field(default=500, ge=1, le=10_000)
    gateway_max_queue_depth: int = Field(default=10_000, ge=1)
    gateway_max_wait_s: float = Field(default=60.0, ge=0, le=600)
    gateway_callback_attempts: int = Field(default=5, ge=1, le=50)
    gateway_callback_timeout_s: float = Field(default=10.0, gt=0, le=300)  # whole attempt: connect, send, answer
    gateway_callback_concurrency: int = Field(default=4, ge=1, le=1000)  # attempts in flight per tenant
    gateway_callback_allow: list[str] = Field(default_factory=list)  # CIDRs / host names callbacks may reach

    @field_validator("batch", mode="before")
    @classmethod
    def _batch_defaults(cls, value: Any) -> Any:
        return _merge_per_type(DEFAULT_BATCH, value)

    @field_validator("generation", mode="before")
    @classmethod
    def _generation_defaults(cls, value: Any) -> Any:
        return _merge_per_type(DEFAULT_GENERATION, value)

    @field_validator("priority", mode="before")
    @classmethod
    def _priority_defaults(cls, value: Any) -> Any:
        return _merge_per_type(DEFAULT_PRIORITY, value)

    @field_validator("priority")
    @classmethod
    def _priority_range(cls, value: dict[JobType, int]) -> dict[JobType, int]:
        for job_type, level in value.items():
            if not 0 <= level <= 9:
                raise ValueError(f"priority for {job_type.value} is {level}; use 0 (least urgent) to 9 (most urgent)")
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
        longest_s = max(p.max_wait_s for p in self.batch.values()) + self.max_batch_compute_s
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
                raise ValueError(f"generation.{job_type.value}: min_new_tokens exceeds max_new_tokens")
        return self

    @property
    def backend_url(self) -> str:
        return self.result_backend_url or self.broker_url

    def model_for(self, job_type: JobType) -> str:
        return self.models.get(job_type, self.model)
