"""The `reply` job type: an answer to a customer message, given the order context and store policies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from greenq.shared.job_types.fields import Language, LongText, Name, ShippingModeName, ShortText, StrictModel
from greenq.shared.job_types.prompt_text import LANGUAGE_RULES, bullets
from greenq.shared.job_types.registry import register
from greenq.shared.job_types.spec import JobTypeSpec
from greenq.shared.policies import BatchPolicy, GenerationSettings


class Turn(StrictModel):
    role: Literal["customer", "agent"]
    text: LongText


class OrderItem(StrictModel):
    sku: Name
    title: ShortText
    quantity: int = Field(ge=1, le=100_000)


class Shipping(StrictModel):
    carrier: ShortText | None = None
    mode: ShippingModeName | None = None
    tracking_number: Name | None = None
    estimated_delivery: ShortText | None = None


class OrderContext(StrictModel):
    order_id: Name
    status: Literal["pending", "paid", "shipped", "delivered", "returned", "cancelled", "refunded"]
    items: list[OrderItem] = Field(default_factory=list, max_length=50)
    shipping: Shipping | None = None


class ReplyJob(StrictModel):
    """Draft an answer to a customer message, given the order context."""

    schema_version: Literal[1] = 1
    customer_message: LongText
    earlier_turns: list[Turn] = Field(default_factory=list, max_length=20)
    order: OrderContext | None = None
    store_policies: dict[Name, Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        default_factory=dict, max_length=20
    )
    language: Language = "en"


def prompt_values(job: ReplyJob) -> dict[str, str]:
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
        "policies": bullets([f"{name}: {text}" for name, text in job.store_policies.items()]),
        "order": bullets(order_lines),
        "turns": bullets([f"{turn.role}: {turn.text}" for turn in job.earlier_turns]),
        "message": job.customer_message,
    }


SAMPLES = (
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
)

# Interactive: the most urgent type, in small quick batches.
REPLY = register(
    JobTypeSpec(
        name="reply",
        summary="an answer to a customer message, given the order context and store policies",
        payload=ReplyJob,
        prompt_values=prompt_values,
        priority=8,
        latency_objective_s=10,
        batch=BatchPolicy(max_batch_size=16, max_wait_s=0.02),
        generation=GenerationSettings(max_new_tokens=160),
        samples=SAMPLES,
    )
)
