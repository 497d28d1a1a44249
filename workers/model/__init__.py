"""The model: its types (types.py), the runtime that runs it (runtime.py), step decoding for continuous
batching (decoding.py), prompts, the bundled model and the `local:NAME` models built on this machine."""
