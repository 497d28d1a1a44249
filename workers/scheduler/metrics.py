"""What the scheduler exports on /metrics (GREENQ_SCHEDULER_PORT)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from greenq.shared import job_types

RELEASE_REASONS = ("planned", "deadline", "no_forecast")
LATENESS_BUCKETS_S = (0.0, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.deferred = Gauge(
            "greenq_deferred_jobs", "Jobs waiting for their planned release.", ["job_type"], registry=registry
        )
        self.released = Counter(
            "greenq_deferred_released",
            "Deferred jobs released to their queue: as planned, at their latest release time, or with no forecast.",
            ["job_type", "reason"],
            registry=registry,
        )
        self.lateness = Histogram(
            "greenq_deferred_release_lateness_seconds",
            "How long after its latest release time a deferred job was released (0: on time).",
            ["job_type"],
            buckets=LATENESS_BUCKETS_S,
            registry=registry,
        )
        self.late = Counter(
            "greenq_deferred_released_late",
            "Deferred jobs released after their run_by: their deadline cannot hold.",
            ["job_type"],
            registry=registry,
        )
        self.lease_lost = Counter(
            "greenq_deferred_release_lease_lost",
            "Claimed deferred jobs this scheduler did not publish: its release lease ran out and another took them.",
            registry=registry,
        )
        self.forecast_available = Gauge(
            "greenq_scheduler_forecast_available",
            "1 if the last plan had a carbon-intensity forecast, 0 if jobs were released without one.",
            registry=registry,
        )
        self.planned_intensity = Gauge(
            "greenq_scheduler_planned_intensity_grams_per_kwh",
            "Mean forecast grid intensity over the deferred jobs' planned slots.",
            registry=registry,
        )
        self.capacity = Gauge(
            "greenq_scheduler_capacity_jobs_per_hour",
            "Deferred jobs the plan lets the fleet start per hour (set, or measured from the workers).",
            registry=registry,
        )
        for job_type in job_types.names():
            self.deferred.labels(job_type)
            self.lateness.labels(job_type)
            self.late.labels(job_type)
            for reason in RELEASE_REASONS:
                self.released.labels(job_type, reason)
