"""Prompt building: a validated job → chat messages, from the templates in `templates/`.

Pure functions, no tokenizer: the runtime renders the messages with the tokenizer's chat
template when it has one, or with `render_plain` when it does not. A deployment can use its
own templates (`GREENQ_PROMPT_TEMPLATES_DIR`): a `<job type>.txt` there replaces the bundled
one, with the same `[system]` / `[user]` sections and `$placeholders`; an empty section
is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from string import Template

from shared.jobs import DescriptionJob, Job, JobType, ReplyJob, StoreMetrics, StrategyJob

NONE_GIVEN = "- (none given)"
LANGUAGE_RULES = {
    "en": "Write in English.",
    "zh": "请用简体中文写作。Write in Simplified Chinese.",
}
NO_GREEN_CLAIMS = (
    "The seller stated no sustainability facts: make no environmental, eco-friendly, recycled, "
    "organic or carbon claim of any kind."
)
ONLY_STATED_GREEN_CLAIMS = (
    "Mention sustainability only as stated in the seller's sustainability facts; add no other green claim."
)


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@cache
def _template(job_type: JobType, templates_dir: Path | None = None) -> tuple[Template, Template]:
    custom = templates_dir / f"{job_type.value}.txt" if templates_dir is not None else None
    if custom is not None and custom.exists():
        text = custom.read_text("utf-8")
    else:
        text = resources.files(__package__).joinpath("templates", f"{job_type.value}.txt").read_text("utf-8")
    if "[system]\n" not in text or "[user]\n" not in text:
        raise ValueError(f"prompt template for {job_type.value} needs a [system] and a [user] section")
    _, rest = text.split("[system]\n", 1)
    system, user = rest.split("[user]\n", 1)
    return Template(system.strip()), Template(user.strip())


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines) if lines else NONE_GIVEN


def _join(values: list[str]) -> str:
    return ", ".join(values)


def sustainability_facts(job: DescriptionJob) -> list[str]:
    """Only what the seller stated; an empty list means no green claim may be made."""
    facts = []
    if job.materials:
        facts.append(f"Materials: {_join(job.materials)}")
    if job.packaging:
        facts.append(f"Packaging: {_join(job.packaging)}")
    if job.certifications:
        facts.append(f"Certifications: {_join(job.certifications)}")
    return facts


def _description(job: DescriptionJob) -> dict[str, str]:
    facts = sustainability_facts(job)
    return {
        "max_words": str(job.max_words),
        "tone": job.tone,
        "green_rule": ONLY_STATED_GREEN_CLAIMS if facts else NO_GREEN_CLAIMS,
        "language_rule": LANGUAGE_RULES[job.language],
        "title": job.title,
        "category": job.category,
        "sku": job.sku,
        "attributes": _bullets([f"{k}: {v}" for k, v in job.attributes.items()]),
        "sustainability": _bullets(facts),
    }


def _reply(job: ReplyJob) -> dict[str, str]:
    order_lines: list[str] = []
    if job.order is not None:
        order = job.order
        order_lines.append(f"Order {order.order_id}, status: {order.status}")
        order_lines += [f"{item.quantity} × {item.title} ({item.sku})" for item in order.items]
        if order.shipping is not None:
            ship = order.shipping.model_dump(exclude_none=True)
            order_lines.append("Shipping: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in ship.items()))
    return {
        "language_rule": LANGUAGE_RULES[job.language],
        "policies": _bullets([f"{name}: {text}" for name, text in job.store_policies.items()]),
        "order": _bullets(order_lines),
        "turns": _bullets([f"{turn.role}: {turn.text}" for turn in job.earlier_turns]),
        "message": job.customer_message,
    }


def _ratio(part: int | None, whole: int | None) -> str | None:
    if part is None or not whole:
        return None
    return f"{100 * part / whole:.1f}%"


def strategy_facts(metrics: StoreMetrics) -> tuple[list[str], list[str]]:
    """Split metrics into (waste and emissions, sales) lines; waste comes first in the prompt."""
    waste: list[str] = []
    if metrics.units_returned is not None:
        rate = _ratio(metrics.units_returned, metrics.units_sold)
        waste.append(f"Units returned: {metrics.units_returned}" + (f" ({rate} of units sold)" if rate else ""))
    waste += [f"Return reason '{reason}': {count}" for reason, count in metrics.return_reasons.items()]
    if metrics.overstock_units is not None:
        share = _ratio(metrics.overstock_units, metrics.inventory_units)
        waste.append(f"Overstock units: {metrics.overstock_units}" + (f" ({share} of inventory)" if share else ""))
    if metrics.expired_or_discarded_units is not None:
        waste.append(f"Expired or discarded units: {metrics.expired_or_discarded_units}")
    waste += [f"Packaging {p.material}: {p.weight_kg:g} kg" for p in metrics.packaging]
    total_shipments = sum(s.shipments for s in metrics.shipping)
    for mode in metrics.shipping:
        share = _ratio(mode.shipments, total_shipments)
        distance = f", mean {mode.mean_distance_km:g} km" if mode.mean_distance_km is not None else ""
        waste.append(f"Shipping by {mode.mode}: {mode.shipments} shipments ({share}){distance}")
    waste += [f"Known emissions, {source}: {kg:g} kg CO2e" for source, kg in metrics.known_emissions_kg_co2e.items()]

    sales: list[str] = []
    if metrics.revenue is not None:
        sales.append(f"Revenue: {metrics.revenue:g} {metrics.currency}")
    if metrics.units_sold is not None:
        sales.append(f"Units sold: {metrics.units_sold}")
    if metrics.orders is not None:
        sales.append(f"Orders: {metrics.orders}")
    if metrics.inventory_units is not None:
        sales.append(f"Inventory units: {metrics.inventory_units}")
    return waste, sales


def _strategy(job: StrategyJob) -> dict[str, str]:
    waste, sales = strategy_facts(job.metrics)
    return {
        "language_rule": LANGUAGE_RULES[job.language],
        "period": job.period,
        "waste_metrics": _bullets(waste),
        "sales_metrics": _bullets(sales),
        "goals": _bullets(list(job.goals)),
    }


def build_messages(job_type: JobType, job: Job, templates_dir: Path | None = None) -> list[Message]:
    """The system and user messages for one job (an empty one is left out)."""
    if isinstance(job, DescriptionJob):
        values = _description(job)
    elif isinstance(job, ReplyJob):
        values = _reply(job)
    else:
        values = _strategy(job)
    system, user = _template(job_type, templates_dir)
    messages = [Message("system", system.substitute(values)), Message("user", user.substitute(values))]
    return [m for m in messages if m.content]


def render_plain(messages: list[Message]) -> str:
    """Fallback for tokenizers without a chat template: role-labelled blocks, then the answer cue."""
    blocks = [f"### {m.role.capitalize()}\n{m.content}" for m in messages]
    return "\n\n".join(blocks) + "\n\n### Assistant\n"
