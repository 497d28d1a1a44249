"""Flag sustainability claims a description makes that the seller never stated (pure).

The prompt already forbids invented green claims; small models do not always obey. Every
description result is checked, and each unsupported claim term is listed in the result's
`warnings`, so a storefront can hold the text for review instead of publishing it.
"""

from __future__ import annotations

from shared.jobs import DescriptionJob

# Terms that amount to an environmental or certification claim, in English and Chinese.
CLAIM_TERMS = (
    "organic",
    "recycled",
    "compostable",
    "biodegradable",
    "eco-friendly",
    "eco friendly",
    "sustainable",
    "carbon neutral",
    "carbon-neutral",
    "plastic-free",
    "fsc",
    "gots",
    "oeko-tex",
    "fairtrade",
    "fair trade",
    "有机",
    "再生",
    "可堆肥",
    "可降解",
    "环保",
    "可持续",
    "碳中和",
    "无塑料",
    "公平贸易",
    "认证",
)


def unsupported_green_claims(job: DescriptionJob, text: str) -> list[str]:
    """Claim terms in `text` that appear nowhere in what the seller stated."""
    stated = " ".join([*job.materials, *job.packaging, *job.certifications]).lower()
    written = text.lower()
    return [term for term in CLAIM_TERMS if term in written and term not in stated]
