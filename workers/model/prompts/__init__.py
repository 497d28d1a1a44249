"""Prompt building: a validated job → chat messages, from its type's values and template.

Pure functions, no tokenizer: the job type's declaration (shared/job_types/) turns the job into
template values, and `templates/<job type>.txt` places them. The runtime renders the messages with
the tokenizer's chat template when it has one, or with `render_plain` when it does not. A
deployment can use its own templates (`GREENQ_PROMPT_TEMPLATES_DIR`): a `<job type>.txt` there
replaces the bundled one, with the same `[system]` / `[user]` sections and `$placeholders`; an
empty section is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from string import Template

from pydantic import BaseModel

from greenq.shared import job_types
from greenq.shared.job_types import JobType


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@cache
def _template(job_type: JobType, templates_dir: Path | None = None) -> tuple[Template, Template]:
    custom = templates_dir / f"{job_type}.txt" if templates_dir is not None else None
    if custom is not None and custom.exists():
        text = custom.read_text("utf-8")
    else:
        bundled = resources.files(__package__).joinpath("templates", f"{job_type}.txt")
        if not bundled.is_file():
            raise FileNotFoundError(
                f"no prompt template for job type {job_type}: add workers/model/prompts/templates/{job_type}.txt "
                "or put one in GREENQ_PROMPT_TEMPLATES_DIR"
            )
        text = bundled.read_text("utf-8")
    if "[system]\n" not in text or "[user]\n" not in text:
        raise ValueError(f"prompt template for {job_type} needs a [system] and a [user] section")
    _, rest = text.split("[system]\n", 1)
    system, user = rest.split("[user]\n", 1)
    return Template(system.strip()), Template(user.strip())


def build_messages(job_type: JobType, job: BaseModel, templates_dir: Path | None = None) -> list[Message]:
    """The system and user messages for one job (an empty one is left out)."""
    spec = job_types.get(job_type)
    if not isinstance(job, spec.payload):
        raise TypeError(f"a {job_type} job must be a {spec.payload.__name__}, not {type(job).__name__}")
    values = spec.prompt_values(job)
    system, user = _template(job_type, templates_dir)
    messages = [Message("system", system.substitute(values)), Message("user", user.substitute(values))]
    return [m for m in messages if m.content]


def render_plain(messages: list[Message]) -> str:
    """Fallback for tokenizers without a chat template: role-labelled blocks, then the answer cue."""
    blocks = [f"### {m.role.capitalize()}\n{m.content}" for m in messages]
    return "\n\n".join(blocks) + "\n\n### Assistant\n"
