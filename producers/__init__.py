"""Producers: the Python client, the producer commands of `greenq` and the HTTP gateway; they need shared/ only."""

from greenq.producers.client import Client, JobSpec

__all__ = ["Client", "JobSpec"]
