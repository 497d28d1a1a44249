"""Prompt building: facts only as stated, waste first, language rules."""

from __future__ import annotations

from greenq.shared.job_types import JobType
from greenq.shared.job_types.description import NO_GREEN_CLAIMS, unsupported_green_claims
from greenq.shared.jobs import parse_job
from greenq.workers.model.prompts import build_messages, render_plain


def _text(job_type: JobType, payload: dict[str, object]) -> str:
    return "\n".join(m.content for m in build_messages(job_type, parse_job(job_type, payload)))


def test_description_without_green_facts_forbids_green_claims() -> None:
    text = _text(
        "description", {"sku": "M1", "title": "Mug", "category": "Kitchen", "attributes": {"capacity": "350 ml"}}
    )
    assert NO_GREEN_CLAIMS in text
    assert "capacity: 350 ml" in text
    assert "Certifications" not in text and "Materials:" not in text


def test_description_states_only_given_facts() -> None:
    text = _text(
        "description",
        {"sku": "T1", "title": "Tote", "category": "Bags", "materials": ["organic cotton"], "certifications": ["GOTS"]},
    )
    assert NO_GREEN_CLAIMS not in text
    assert "Materials: organic cotton" in text and "Certifications: GOTS" in text
    assert "Packaging:" not in text


def test_strategy_lists_waste_and_emissions_before_sales() -> None:
    text = _text(
        "strategy",
        {
            "period": "Q3",
            "metrics": {
                "revenue": 1000,
                "units_sold": 100,
                "units_returned": 12,
                "shipping": [{"mode": "air", "shipments": 25}, {"mode": "ground", "shipments": 75}],
                "known_emissions_kg_co2e": {"shipping": 300},
            },
        },
    )
    assert text.index("Units returned: 12 (12.0% of units sold)") < text.index("Revenue: 1000")
    assert "Shipping by air: 25 shipments (25.0%)" in text
    assert "waste or emissions first" in text


def test_reply_carries_order_policies_and_turns() -> None:
    text = _text(
        "reply",
        {
            "customer_message": "Where is it?",
            "earlier_turns": [{"role": "agent", "text": "It shipped."}],
            "order": {"order_id": "A1", "status": "shipped", "items": [{"sku": "S", "title": "Scarf", "quantity": 2}]},
            "store_policies": {"returns": "30 days"},
        },
    )
    for fragment in [
        "Order A1, status: shipped",
        "2 × Scarf (S)",
        "returns: 30 days",
        "agent: It shipped.",
        "Where is it?",
    ]:
        assert fragment in text


def test_chinese_jobs_ask_for_chinese() -> None:
    assert "简体中文" in _text("reply", {"customer_message": "你好", "language": "zh"})


def test_plain_render_ends_with_the_answer_cue() -> None:
    messages = build_messages("reply", parse_job("reply", {"customer_message": "hi"}))
    rendered = render_plain(messages)
    assert rendered.startswith("### System\n") and rendered.endswith("### Assistant\n")


def test_custom_templates_replace_the_bundled_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "reply.txt").write_text("[system]\n\n[user]\nQ: $message\n")
    job = parse_job("reply", {"customer_message": "hi there"})
    messages = build_messages("reply", job, tmp_path)
    assert [(m.role, m.content) for m in messages] == [("user", "Q: hi there")]
    assert build_messages("strategy", parse_job("strategy", {"period": "p", "metrics": {}}), tmp_path)


def test_unsupported_green_claims_are_flagged() -> None:
    stated = parse_job(
        "description",
        {
            "sku": "S",
            "title": "Shirt",
            "category": "Clothing",
            "materials": ["organic cotton"],
            "certifications": ["GOTS"],
        },
    )
    assert unsupported_green_claims(stated, "Made from organic cotton, GOTS certified.") == []
    assert unsupported_green_claims(stated, "Organic cotton, FSC wood, recycled box.") == ["recycled", "fsc"]
    bare = parse_job("description", {"sku": "M", "title": "杯子", "category": "厨房", "language": "zh"})
    assert unsupported_green_claims(bare, "采用FSC 认证木材制成，环保。") == ["fsc", "环保", "认证"]
