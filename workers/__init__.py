"""Workers: warm models, micro-batching, energy and metrics, and the per-device launcher."""
