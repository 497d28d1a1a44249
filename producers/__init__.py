"""Producers: the Python client, the `greenq` CLI and (later) the HTTP gateway."""

from producers.client import Client, JobSpec

__all__ = ["Client", "JobSpec"]
