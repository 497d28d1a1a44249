"""Which folder `from_pretrained` loads for a `local:NAME` model reference.

`local:store-assistant` (the default `GREENQ_MODEL`) is the trained model shipped in
`workers/model/bundled/`. `local:tiny`, `local:gpt2-small` and `local:gpt2-large` resolve to a
directory under the model cache, built once (`workers/model/model_builder.py`) and then loaded
through the normal `from_pretrained` path like any other local model.
"""

from __future__ import annotations

from pathlib import Path

from greenq.shared.errors import ModelLoadError
from greenq.workers.model.model_builder import SHAPES, build_local_model

LOCAL_PREFIX = "local:"

# Trained models shipped inside the package (ops/model/train.py makes them).
BUNDLED = {"store-assistant": Path(__file__).parent / "bundled" / "store-assistant"}


def resolve_model(ref: str, cache_dir: Path) -> str:
    """A `from_pretrained` argument for a model reference: `local:NAME` is a bundled model, or a
    random-weight one built on first use."""
    if not ref.startswith(LOCAL_PREFIX):
        return ref
    shape_name = ref[len(LOCAL_PREFIX) :]
    if shape_name in BUNDLED:
        path = BUNDLED[shape_name]
        if not (path / "config.json").exists():
            raise ModelLoadError(f"the bundled model {ref} is missing from {path}; run ops/model/train.py")
        return str(path)
    if shape_name not in SHAPES:
        choices = [*BUNDLED, *SHAPES]
        raise ModelLoadError(
            f"unknown local model {ref!r}; choose one of: " + ", ".join(LOCAL_PREFIX + s for s in choices)
        )
    out_dir = cache_dir / shape_name
    if not (out_dir / "config.json").exists():
        build_local_model(shape_name, out_dir)
    return str(out_dir)
