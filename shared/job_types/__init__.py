"""Job types: each declared once, as a `JobTypeSpec`, and found through one registry.

A declaration holds the payload schema, the prompt values, default priority, batch and generation
settings, the latency objective, result checks and sample payloads. Producers read the schema and
defaults; workers read the prompt values and checks (plain functions, no torch). Queue, task and
settings names all derive from the type's name.

The built-in types, registered when this package is imported: `description.py`, `reply.py`,
`strategy.py`. To add one: write `<name>.py` beside them ending in `register(JobTypeSpec(...))`,
import it below, and add its prompt template `workers/model/prompts/templates/<name>.txt`.
"""

from greenq.shared.job_types import description, reply, strategy
from greenq.shared.job_types.registry import JobType, KnownJobType, get, names, register, specs, unregister
from greenq.shared.job_types.spec import JobTypeSpec

BUILT_IN = (description.DESCRIPTION, reply.REPLY, strategy.STRATEGY)

__all__ = [
    "BUILT_IN",
    "JobType",
    "JobTypeSpec",
    "KnownJobType",
    "get",
    "names",
    "register",
    "specs",
    "unregister",
]
