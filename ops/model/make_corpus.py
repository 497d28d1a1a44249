# ruff: noqa: E501  (a table of product data reads best one product a line)
"""Write the bilingual training corpus for the bundled demo model (ops/model/corpus.jsonl).

Each line is {"type", "job", "answer"}: a valid greenq job payload and the answer a good
assistant would give, in English or Chinese. Descriptions mention sustainability only
when the job states it; strategy answers put waste and emission cuts first. Seeded, so the
corpus is the same every time: `python ops/model/make_corpus.py`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("corpus.jsonl")
rng = random.Random(7)

PRODUCTS = [
    # (title en, title zh, category en, category zh, attribute pairs en, attribute pairs zh)
    (
        "Canvas tote bag",
        "帆布托特包",
        "Bags",
        "包袋",
        [("size", "38 x 42 cm"), ("colour", "natural")],
        [("尺寸", "38 x 42 厘米"), ("颜色", "本色")],
    ),
    (
        "Stoneware mug",
        "粗陶马克杯",
        "Kitchen",
        "厨房",
        [("capacity", "350 ml"), ("glaze", "matte")],
        [("容量", "350 毫升"), ("釉面", "哑光")],
    ),
    (
        "Insulated steel bottle",
        "不锈钢保温瓶",
        "Outdoor",
        "户外",
        [("capacity", "750 ml"), ("keeps cold", "24 h")],
        [("容量", "750 毫升"), ("保冷", "24 小时")],
    ),
    (
        "Wool scarf",
        "羊毛围巾",
        "Accessories",
        "配饰",
        [("length", "180 cm"), ("colour", "grey")],
        [("长度", "180 厘米"), ("颜色", "灰色")],
    ),
    (
        "Running shoes",
        "跑步鞋",
        "Shoes",
        "鞋类",
        [("sizes", "36-46"), ("weight", "240 g")],
        [("尺码", "36-46"), ("重量", "240 克")],
    ),
    (
        "Linen shirt",
        "亚麻衬衫",
        "Clothing",
        "服装",
        [("fit", "regular"), ("colour", "white")],
        [("版型", "常规"), ("颜色", "白色")],
    ),
    (
        "Bamboo toothbrush",
        "竹牙刷",
        "Bathroom",
        "浴室",
        [("bristles", "soft"), ("pack", "4 pieces")],
        [("刷毛", "软毛"), ("包装", "4 支")],
    ),
    (
        "Desk lamp",
        "台灯",
        "Home",
        "家居",
        [("light", "warm white"), ("power", "8 W")],
        [("光色", "暖白"), ("功率", "8 瓦")],
    ),
    (
        "Yoga mat",
        "瑜伽垫",
        "Sports",
        "运动",
        [("thickness", "6 mm"), ("length", "183 cm")],
        [("厚度", "6 毫米"), ("长度", "183 厘米")],
    ),
    (
        "Cotton bed sheets",
        "纯棉床单",
        "Home",
        "家居",
        [("size", "double"), ("thread count", "300")],
        [("尺寸", "双人"), ("支数", "300")],
    ),
    (
        "Leather wallet",
        "皮革钱包",
        "Accessories",
        "配饰",
        [("card slots", "8"), ("colour", "brown")],
        [("卡位", "8 个"), ("颜色", "棕色")],
    ),
    (
        "Rain jacket",
        "防雨外套",
        "Clothing",
        "服装",
        [("waterproof", "10,000 mm"), ("hood", "adjustable")],
        [("防水", "10000 毫米"), ("帽子", "可调节")],
    ),
    (
        "Glass food container",
        "玻璃保鲜盒",
        "Kitchen",
        "厨房",
        [("capacity", "1 l"), ("lid", "clip lock")],
        [("容量", "1 升"), ("盖子", "卡扣")],
    ),
    (
        "Kids' wooden puzzle",
        "儿童木制拼图",
        "Toys",
        "玩具",
        [("pieces", "24"), ("age", "3+")],
        [("片数", "24"), ("年龄", "3 岁以上")],
    ),
    (
        "Wireless earbuds",
        "无线耳机",
        "Electronics",
        "电子",
        [("battery", "6 h"), ("case", "charging")],
        [("续航", "6 小时"), ("耳机盒", "充电盒")],
    ),
    (
        "Ceramic plant pot",
        "陶瓷花盆",
        "Garden",
        "园艺",
        [("diameter", "18 cm"), ("drainage", "yes")],
        [("直径", "18 厘米"), ("排水孔", "有")],
    ),
]
MATERIALS = [
    ("organic cotton", "有机棉"),
    ("recycled polyester", "再生聚酯纤维"),
    ("stainless steel", "不锈钢"),
    ("FSC-certified wood", "FSC 认证木材"),
    ("merino wool", "美利奴羊毛"),
    ("recycled glass", "再生玻璃"),
    ("natural rubber", "天然橡胶"),
    ("bamboo", "竹子"),
]
PACKAGING = [
    ("recycled paper sleeve", "再生纸套"),
    ("plastic-free box", "无塑料盒"),
    ("compostable mailer", "可堆肥快递袋"),
]
CERTS = [("GOTS", "GOTS"), ("OEKO-TEX", "OEKO-TEX"), ("FSC", "FSC"), ("Fairtrade", "公平贸易")]
TONES = ["neutral", "friendly", "professional", "playful", "premium"]
OPENERS = {
    "friendly": "Meet your new favourite {t}.",
    "neutral": "This {t} is made for everyday use.",
    "professional": "The {t} is designed for reliable daily use.",
    "playful": "Say hello to the {t} that keeps up with you!",
    "premium": "Crafted with care, this {t} brings quiet quality to every day.",
}


def description(zh: bool) -> dict[str, Any]:
    title, title_zh, cat, cat_zh, attrs, attrs_zh = rng.choice(PRODUCTS)
    tone = rng.choice(TONES)
    green = rng.random() < 0.55
    mats = rng.sample(MATERIALS, rng.randint(1, 2)) if green else []
    pack = [rng.choice(PACKAGING)] if green and rng.random() < 0.6 else []
    certs = [rng.choice(CERTS)] if green and rng.random() < 0.5 else []
    pick = lambda pairs: [p[1] if zh else p[0] for p in pairs]  # noqa: E731
    job = {
        "sku": f"{title.split()[0][:4].upper()}-{rng.randint(100, 999)}",
        "title": title_zh if zh else title,
        "category": cat_zh if zh else cat,
        "attributes": dict(attrs_zh if zh else attrs),
        "materials": pick(mats),
        "packaging": pick(pack),
        "certifications": pick(certs),
        "language": "zh" if zh else "en",
        "tone": tone,
        "max_words": rng.choice([60, 80, 120]),
    }
    if zh:
        parts = [f"这款{title_zh}属于{cat_zh}类，" + "，".join(f"{k}{v}" for k, v in attrs_zh) + "。"]
        if mats:
            parts.append("采用" + "和".join(m[1] for m in mats) + "制成。")
        if pack:
            parts.append(f"使用{pack[0][1]}包装发货。")
        if certs:
            parts.append(f"已获得{certs[0][1]}认证。")
        parts.append("日常使用方便耐用，是送礼和自用的好选择。")
        answer = "".join(parts)
    else:
        parts = [
            OPENERS[tone].format(t=title.lower()),
            "It offers "
            + " and ".join(f"{v} {k}" if k in ("capacity", "length", "size") else f"{k} {v}" for k, v in attrs)
            + ".",
        ]
        if mats:
            parts.append("It is made from " + " and ".join(m[0] for m in mats) + ".")
        if pack:
            parts.append(f"It ships in a {pack[0][0]}.")
        if certs:
            parts.append(f"It is {certs[0][0]} certified.")
        parts.append(
            rng.choice(
                [
                    "Easy to care for and built to last.",
                    "A practical choice for every day.",
                    "Simple, useful and made to be used often.",
                ]
            )
        )
        answer = " ".join(parts)
    return {"type": "description", "job": job, "answer": answer}


STATUS_EN = {
    "pending": "is being prepared",
    "paid": "is paid and will ship within two working days",
    "shipped": "has shipped",
    "delivered": "shows as delivered",
    "returned": "has been returned",
}
STATUS_ZH = {
    "pending": "正在准备中",
    "paid": "已付款，将在两个工作日内发货",
    "shipped": "已经发货",
    "delivered": "显示已签收",
    "returned": "已退货",
}


def reply(zh: bool) -> dict[str, Any]:
    title, title_zh, *_ = rng.choice(PRODUCTS)
    order_id = f"A-{rng.randint(1000, 9999)}"
    scenario = rng.choice(["where", "return", "damaged", "cancel", "refund"])
    status = {
        "where": rng.choice(["paid", "shipped", "pending"]),
        "return": "delivered",
        "damaged": "delivered",
        "cancel": rng.choice(["pending", "paid"]),
        "refund": "returned",
    }[scenario]
    carrier = rng.choice(["PostNL", "DHL", "UPS", "顺丰"])
    eta = f"2026-12-{rng.randint(1, 20):02d}"
    item = title_zh if zh else title
    messages_en = {
        "where": "Hi, where is my order? It has not arrived yet.",
        "return": f"Can I return the {title.lower()}? It does not fit.",
        "damaged": f"My {title.lower()} arrived broken. What can you do?",
        "cancel": "Please cancel my order, I ordered by mistake.",
        "refund": "When will I get my refund?",
    }
    messages_zh = {
        "where": "你好，我的订单到哪里了？还没有收到。",
        "return": f"{title_zh}不合适，可以退货吗？",
        "damaged": f"我收到的{title_zh}坏了，怎么办？",
        "cancel": "请帮我取消订单，我下错单了。",
        "refund": "我的退款什么时候到账？",
    }
    policies_en = {
        "returns": "Unused items can be returned within 30 days for a full refund.",
        "damage": "Damaged items are replaced free of charge within 14 days.",
        "refunds": "Refunds reach the original payment method within 5 working days.",
    }
    policies_zh = {
        "退货": "未使用的商品30天内可退货并全额退款。",
        "损坏": "收到损坏商品14天内免费换新。",
        "退款": "退款在5个工作日内退回原支付方式。",
    }
    job = {
        "customer_message": messages_zh[scenario] if zh else messages_en[scenario],
        "order": {
            "order_id": order_id,
            "status": status,
            "items": [{"sku": f"SKU-{rng.randint(100, 999)}", "title": item, "quantity": rng.randint(1, 3)}],
        },
        "store_policies": policies_zh if zh else policies_en,
        "language": "zh" if zh else "en",
    }
    if status == "shipped":
        job["order"]["shipping"] = {"carrier": carrier, "mode": "ground", "estimated_delivery": eta}
    if rng.random() < 0.3:
        job["earlier_turns"] = (
            [{"role": "customer", "text": "你好？"}, {"role": "agent", "text": "您好！请问有什么可以帮您？"}]
            if zh
            else [{"role": "customer", "text": "Hello?"}, {"role": "agent", "text": "Hi! How can I help?"}]
        )
    if rng.random() < 0.2:  # no order given: ask for it
        del job["order"]
        answer = (
            "您好！请提供您的订单号，我马上为您查询。"
            if zh
            else "Happy to help! Could you share your order number so I can check it for you?"
        )
        return {"type": "reply", "job": job, "answer": answer}
    if zh:
        answers = {
            "where": f"您好！您的订单 {order_id} {STATUS_ZH[status]}。"
            + (f"承运商是{carrier}，预计{eta}送达。" if status == "shipped" else "发货后我们会把物流单号发给您。"),
            "return": f"您好！可以退货。根据我们的政策，未使用的商品30天内可退货并全额退款。请保持{title_zh}未使用，我们会把退货标签发给您。",
            "damaged": f"非常抱歉{title_zh}在运输中损坏了。根据我们的政策，我们会在14天内免费为您换新，无需退回。请发一张照片给我们。",
            "cancel": f"好的，我们正在为您取消订单 {order_id}。订单尚未发货，款项会退回原支付方式。",
            "refund": f"您好！订单 {order_id} 的退货已收到，退款将在5个工作日内退回原支付方式。",
        }
    else:
        answers = {
            "where": f"Thanks for reaching out! Your order {order_id} {STATUS_EN[status]}."
            + (
                f" It is with {carrier} and should arrive by {eta}."
                if status == "shipped"
                else " We will email you the tracking number as soon as it ships."
            ),
            "return": f"Yes, you can return it. Unused items can be returned within 30 days for a full refund. "
            f"Keep the {title.lower()} unused and we will send you a return label.",
            "damaged": f"I am sorry your {title.lower()} arrived damaged. We replace damaged items free of "
            "charge within 14 days, and you do not need to send it back. Could you send us a photo?",
            "cancel": f"No problem. We are cancelling order {order_id} now. It has not shipped yet, so the "
            "payment goes back to your original payment method.",
            "refund": f"We have received your return for order {order_id}. The refund reaches your original "
            "payment method within 5 working days.",
        }
    return {"type": "reply", "job": job, "answer": answers[scenario]}


def strategy(zh: bool) -> dict[str, Any]:
    """Sparse or full metrics; the answer covers the waste and emission items present, then sales."""
    sold = rng.randint(800, 20000)
    metrics: dict[str, Any] = {"units_sold": sold}
    if rng.random() < 0.7:
        metrics["revenue"] = sold * rng.randint(15, 60)
    if rng.random() < 0.5:
        metrics["orders"] = int(sold * 0.7)
    items_en: list[str] = []
    items_zh: list[str] = []
    if rng.random() < 0.7:
        returned = int(sold * rng.uniform(0.03, 0.15))
        metrics["units_returned"] = returned
        if rng.random() < 0.6:
            metrics["return_reasons"] = {"wrong size": int(returned * 0.6)}
        rate = 100 * returned / sold
        items_en.append(
            f"Cut returns: the return rate is {rate:.1f}%. Add a size guide and fit photos (improves units returned)."
        )
        items_zh.append(f"减少退货：退货率为{rate:.1f}%。增加尺码指南和真实试穿照片。")
    if rng.random() < 0.6:
        inventory = rng.randint(2000, 40000)
        overstock = int(inventory * rng.uniform(0.02, 0.25))
        metrics.update(inventory_units=inventory, overstock_units=overstock)
        items_en.append(
            f"Reduce overstock: {overstock} units are overstock. Bundle or discount them early so none are discarded (improves overstock units)."
        )
        items_zh.append(f"减少积压库存：{overstock}件积压库存，可以组合销售或提前打折，避免报废。")
    if rng.random() < 0.35:
        discarded = rng.randint(20, 600)
        metrics["expired_or_discarded_units"] = discarded
        items_en.append(
            f"Stop discarding stock: {discarded} units were thrown away. Sell near-expiry items at a discount or donate them (improves discarded units)."
        )
        items_zh.append(f"减少报废：{discarded}件商品被丢弃。临期商品打折出售或捐赠。")
    if rng.random() < 0.6:
        plastic = rng.randint(50, 900)
        metrics["packaging"] = [
            {"material": "plastic mailer", "weight_kg": plastic},
            {"material": "cardboard", "weight_kg": rng.randint(200, 3000)},
        ]
        items_en.append(
            f"Cut plastic packaging: {plastic} kg of plastic mailers. Switch to recycled paper mailers and right-sized boxes (improves packaging weight)."
        )
        items_zh.append(f"减少塑料包装：塑料快递袋用量{plastic}公斤，改用再生纸袋并按尺寸选箱。")
    fast = rng.choice(["air", "express", None])
    if fast is not None:
        quick = rng.randint(50, 3000)
        ground = rng.randint(1000, 12000)
        metrics["shipping"] = [{"mode": fast, "shipments": quick}, {"mode": "ground", "shipments": ground}]
        share = 100 * quick / (quick + ground)
        items_en.append(
            f"Lower shipping emissions: {share:.0f}% of shipments go by {fast}. Move them to ground where delivery dates allow and consolidate orders (improves shipping emissions)."
        )
        items_zh.append(
            f"降低运输排放：{share:.0f}%的货物走{'空运' if fast == 'air' else '快递'}，在交期允许时改为陆运，合并发货。"
        )
    if rng.random() < 0.4:
        metrics["known_emissions_kg_co2e"] = {"shipping": rng.randint(500, 9000)}
    items_en.append("Grow repeat sales: send refill reminders and a loyalty discount (improves orders).")
    items_zh.append("提高复购：为老客户提供会员折扣和补货提醒。")
    job = {
        "period": rng.choice(["2026-Q1", "2026-Q2", "2026-Q3", "2026-10", "2026-11"]),
        "metrics": metrics,
        "goals": [
            rng.choice(["cut returns", "reduce packaging waste", "lower shipping emissions", "grow repeat sales"])
        ],
        "language": "zh" if zh else "en",
    }
    items = items_zh if zh else items_en
    return {"type": "strategy", "job": job, "answer": "\n".join(f"{i + 1}. {t}" for i, t in enumerate(items))}


DEMO_JOBS = Path(__file__).parents[2] / "producers" / "demo_jobs.jsonl"


def demo_jobs(count: int = 48) -> None:
    """Held-out jobs for `greenq demo`: the same kinds of store traffic, a different seed, never trained on."""
    rng.seed(2026)
    makers = [reply, description, reply, description, reply, strategy, reply, description]
    rows = [makers[i % len(makers)](zh=i % 4 == 3) for i in range(count)]
    DEMO_JOBS.write_text(
        "".join(json.dumps({"type": r["type"], "job": r["job"]}, ensure_ascii=False) + "\n" for r in rows),
        encoding="utf-8",
    )
    print(f"wrote {len(rows)} demo jobs to {DEMO_JOBS}")


def main() -> None:
    rows = []
    for make, count in ((description, 320), (reply, 300), (strategy, 200)):
        for i in range(count):
            rows.append(make(zh=i % 3 == 2))  # one in three in Chinese
    rng.shuffle(rows)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} examples to {OUT}")


if __name__ == "__main__":
    main()
    demo_jobs()
