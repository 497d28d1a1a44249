"""The `description` job type: a product description from its attributes.

Green claims are allowed only as the seller stated them: the prompt says so, and a check flags
every claim term in the text that the seller never stated (small models do not always obey), so
the storefront can hold the text for review instead of publishing it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from greenq.shared.job_types.fields import Language, Name, ShortText, StrictModel
from greenq.shared.job_types.prompt_text import LANGUAGE_RULES, bullets, join
from greenq.shared.job_types.registry import register
from greenq.shared.job_types.spec import JobTypeSpec
from greenq.shared.policies import BatchPolicy, GenerationSettings


class DescriptionJob(StrictModel):
    """Write a product description from its attributes."""

    schema_version: Literal[1] = 1
    sku: Name
    title: ShortText
    category: ShortText
    attributes: dict[Name, ShortText] = Field(default_factory=dict, max_length=40)
    materials: list[ShortText] = Field(default_factory=list, max_length=20)
    packaging: list[ShortText] = Field(default_factory=list, max_length=10)
    certifications: list[ShortText] = Field(default_factory=list, max_length=10)
    language: Language = "en"
    tone: Literal["neutral", "friendly", "professional", "playful", "premium"] = "friendly"
    max_words: int = Field(default=120, ge=10, le=600)


NO_GREEN_CLAIMS = (
    "The seller stated no sustainability facts: make no environmental, eco-friendly, recycled, "
    "organic or carbon claim of any kind."
)
ONLY_STATED_GREEN_CLAIMS = (
    "Mention sustainability only as stated in the seller's sustainability facts; add no other green claim."
)


def sustainability_facts(job: DescriptionJob) -> list[str]:
    """Only what the seller stated; an empty list means no green claim may be made."""
    facts = []
    if job.materials:
        facts.append(f"Materials: {join(job.materials)}")
    if job.packaging:
        facts.append(f"Packaging: {join(job.packaging)}")
    if job.certifications:
        facts.append(f"Certifications: {join(job.certifications)}")
    return facts


def prompt_values(job: DescriptionJob) -> dict[str, str]:
    facts = sustainability_facts(job)
    return {
        "max_words": str(job.max_words),
        "tone": job.tone,
        "green_rule": ONLY_STATED_GREEN_CLAIMS if facts else NO_GREEN_CLAIMS,
        "language_rule": LANGUAGE_RULES[job.language],
        "title": job.title,
        "category": job.category,
        "sku": job.sku,
        "attributes": bullets([f"{k}: {v}" for k, v in job.attributes.items()]),
        "sustainability": bullets(facts),
    }


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


def green_claims_check(job: DescriptionJob, text: str) -> list[str]:
    """The result's warning when the text makes green claims the seller did not state."""
    unsupported = unsupported_green_claims(job, text)
    return ["green claims the seller did not state: " + ", ".join(unsupported)] if unsupported else []


SAMPLES = (
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
)

DESCRIPTION = register(
    JobTypeSpec(
        name="description",
        summary="a product description from its attributes; green claims only if the seller stated them",
        payload=DescriptionJob,
        prompt_values=prompt_values,
        priority=5,
        latency_objective_s=900,
        carbon_aware=True,
        batch=BatchPolicy(max_batch_size=16, max_wait_s=0.05),
        generation=GenerationSettings(max_new_tokens=200),
        checks=(green_claims_check,),
        samples=SAMPLES,
    )
)
