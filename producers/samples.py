"""Sample jobs of every type, in English and Chinese, for the demo and the tests."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from shared.jobs import JobType

DESCRIPTIONS: list[dict[str, Any]] = [
    {
        "sku": "TOTE-01",
        "title": "Canvas tote bag",
        "category": "Bags",
        "attributes": {"size": "38 x 42 cm", "colour": "natural"},
        "materials": ["organic cotton"],
        "packaging": ["recycled paper sleeve"],
        "certifications": ["GOTS"],
        "tone": "friendly",
    },
    {
        "sku": "MUG-350",
        "title": "Stoneware mug",
        "category": "Kitchen",
        "attributes": {"capacity": "350 ml", "glaze": "matte"},
        "tone": "premium",
        "max_words": 80,
    },
    {
        "sku": "BOT-750",
        "title": "Insulated steel bottle",
        "category": "Outdoor",
        "attributes": {"capacity": "750 ml", "keeps cold": "24 h"},
        "materials": ["stainless steel"],
    },
    {
        "sku": "SCARF-W",
        "title": "羊毛围巾",
        "category": "配饰",
        "attributes": {"颜色": "灰色"},
        "materials": ["美利奴羊毛"],
        "language": "zh",
    },
]
REPLIES: list[dict[str, Any]] = [
    {
        "customer_message": "Hi, my order hasn't arrived yet. Where is it?",
        "order": {
            "order_id": "A-1042",
            "status": "shipped",
            "items": [{"sku": "TOTE-01", "title": "Canvas tote bag", "quantity": 2}],
            "shipping": {"carrier": "PostNL", "mode": "ground", "estimated_delivery": "2026-12-02"},
        },
        "store_policies": {"delivery": "Ground delivery takes 3-5 working days."},
    },
    {
        "customer_message": "The mug arrived chipped. Can I get a replacement?",
        "order": {
            "order_id": "A-1043",
            "status": "delivered",
            "items": [{"sku": "MUG-350", "title": "Stoneware mug", "quantity": 1}],
        },
        "store_policies": {"damage": "Damaged items are replaced free within 14 days; no return needed."},
    },
    {
        "customer_message": "Can I return the bottle? I changed my mind.",
        "earlier_turns": [
            {"role": "customer", "text": "Do you ship to Belgium?"},
            {"role": "agent", "text": "Yes, we ship to Belgium by ground."},
        ],
        "store_policies": {"returns": "Unused items can be returned within 30 days."},
    },
    {
        "customer_message": "我的订单什么时候发货?",
        "order": {"order_id": "C-88", "status": "paid"},
        "store_policies": {"发货": "付款后两个工作日内发货。"},
        "language": "zh",
    },
]
STRATEGIES: list[dict[str, Any]] = [
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
]

SAMPLES: dict[JobType, list[dict[str, Any]]] = {
    JobType.description: DESCRIPTIONS,
    JobType.reply: REPLIES,
    JobType.strategy: STRATEGIES,
}


def sample_mix(count: int, pattern: tuple[JobType, ...] = tuple(JobType)) -> list[tuple[JobType, dict[str, Any]]]:
    """`count` jobs cycling through `pattern` (job types, repeats allowed) and each type's samples."""
    seen: dict[JobType, int] = {}
    out = []
    for i in range(count):
        job_type = pattern[i % len(pattern)]
        samples = SAMPLES[job_type]
        out.append((job_type, samples[seen.get(job_type, 0) % len(samples)]))
        seen[job_type] = seen.get(job_type, 0) + 1
    return out


def demo_jobs(count: int) -> list[tuple[JobType, dict[str, Any]]]:
    """`count` realistic store jobs (held out from the bundled model's training corpus), cycled."""
    text = resources.files(__package__).joinpath("demo_jobs.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [(JobType(rows[i % len(rows)]["type"]), rows[i % len(rows)]["job"]) for i in range(count)]
