"""The `strategy` job type: operational suggestions from store metrics, waste and emission cuts first."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from greenq.shared.job_types.fields import Amount, Count, Language, Name, ShippingModeName, ShortText, StrictModel
from greenq.shared.job_types.prompt_text import LANGUAGE_RULES, bullets
from greenq.shared.job_types.registry import register
from greenq.shared.job_types.spec import JobTypeSpec
from greenq.shared.policies import BatchPolicy, GenerationSettings


class PackagingUse(StrictModel):
    material: ShortText
    weight_kg: Amount


class ShippingMode(StrictModel):
    mode: ShippingModeName
    shipments: Count
    mean_distance_km: Amount | None = None


class StoreMetrics(StrictModel):
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "USD"
    revenue: Amount | None = None
    units_sold: Count | None = None
    orders: Count | None = None
    units_returned: Count | None = None
    return_reasons: dict[ShortText, Count] = Field(default_factory=dict, max_length=20)
    inventory_units: Count | None = None
    overstock_units: Count | None = None
    expired_or_discarded_units: Count | None = None
    packaging: list[PackagingUse] = Field(default_factory=list, max_length=20)
    shipping: list[ShippingMode] = Field(default_factory=list, max_length=10)
    known_emissions_kg_co2e: dict[ShortText, Amount] = Field(default_factory=dict, max_length=20)


class StrategyJob(StrictModel):
    """Suggest operational improvements from store metrics; waste and emission cuts first."""

    schema_version: Literal[1] = 1
    period: Name
    metrics: StoreMetrics
    goals: list[ShortText] = Field(default_factory=list, max_length=10)
    language: Language = "en"


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


def prompt_values(job: StrategyJob) -> dict[str, str]:
    waste, sales = strategy_facts(job.metrics)
    return {
        "language_rule": LANGUAGE_RULES[job.language],
        "period": job.period,
        "waste_metrics": bullets(waste),
        "sales_metrics": bullets(sales),
        "goals": bullets(list(job.goals)),
    }


SAMPLES = (
    {
        "period": "2026-Q3",
        "metrics": {
            "revenue": 182000,
            "units_sold": 9100,
            "orders": 6400,
            "units_returned": 820,
            "return_reasons": {"wrong size": 510, "damaged": 90},
            "inventory_units": 15000,
            "overstock_units": 2300,
            "packaging": [
                {"material": "plastic mailer", "weight_kg": 410},
                {"material": "cardboard", "weight_kg": 1900},
            ],
            "shipping": [
                {"mode": "air", "shipments": 1400, "mean_distance_km": 2100},
                {"mode": "ground", "shipments": 5000, "mean_distance_km": 380},
            ],
            "known_emissions_kg_co2e": {"shipping": 5200},
        },
        "goals": ["cut returns", "halve plastic packaging"],
    },
    {
        "period": "2026-10",
        "metrics": {"revenue": 40000, "units_sold": 2100, "expired_or_discarded_units": 140},
        "goals": ["grow repeat customers"],
    },
    {
        "period": "2026-11",
        "metrics": {"units_sold": 800, "units_returned": 40, "shipping": [{"mode": "express", "shipments": 300}]},
        "language": "zh",
    },
)

# Long answers that can wait: the least urgent type, in larger-token batches that may wait longer to fill.
STRATEGY = register(
    JobTypeSpec(
        name="strategy",
        summary="operational suggestions from store metrics, waste and emission cuts first",
        payload=StrategyJob,
        prompt_values=prompt_values,
        priority=2,
        latency_objective_s=3600,
        carbon_aware=True,
        batch=BatchPolicy(max_batch_size=8, max_wait_s=0.2),
        generation=GenerationSettings(max_new_tokens=256),
        samples=SAMPLES,
    )
)
