"""Random-weight models built on this machine in seconds: no download.

A shape (`tiny`, `gpt2-small`, `gpt2-large`) gets a BPE tokenizer trained on a small store
corpus and a GPT-2-style model with random weights from a fixed seed, saved where
`from_pretrained` loads it like any other local model. `ops/model/train.py` reuses the
tokenizer training for the bundled model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EOS = "<|endoftext|>"
PAD = "<|pad|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True)
class ModelShape:
    n_layer: int
    n_head: int
    n_embd: int
    n_positions: int
    tokenizer_vocab: int
    model_vocab: int | None = None  # None: the tokenizer's size
    # GPT-2's 0.02 makes a tiny random model repeat one token; wider weights give varied text.
    initializer_range: float = 0.02


SHAPES = {
    "tiny": ModelShape(n_layer=2, n_head=2, n_embd=64, n_positions=1024, tokenizer_vocab=800, initializer_range=0.2),
    # GPT-2 small's architecture and parameter count (124M): its 50,257-row embedding is kept
    # even though the locally trained tokenizer uses only the first rows.
    "gpt2-small": ModelShape(
        n_layer=12, n_head=12, n_embd=768, n_positions=1024, tokenizer_vocab=800, model_vocab=50257
    ),
    # GPT-2 large's shape (774M parameters), for GPU benchmarks.
    "gpt2-large": ModelShape(
        n_layer=36, n_head=20, n_embd=1280, n_positions=1024, tokenizer_vocab=800, model_vocab=50257
    ),
}

_CORPUS_LINES = [
    "Organic cotton tote bag, reusable and machine washable, ships in recycled paper packaging.",
    "Stainless steel water bottle keeps drinks cold for 24 hours. Capacity 750 ml.",
    "Handmade ceramic mug with a matte glaze, dishwasher safe, 350 ml.",
    "Hello, where is my order? It was supposed to arrive on Monday.",
    "Thank you for your message. Your order has shipped and should arrive within three days.",
    "I would like to return the shoes because they are too small.",
    "You can return unworn items within 30 days for a full refund.",
    "Return rate rose to 8 percent; most returns cite wrong size. Add a size guide to cut returns.",
    "Switch air shipments to ground where delivery dates allow, to cut shipping emissions.",
    "Overstock of winter jackets is 1,200 units; bundle or discount them before they are discarded.",
    "Use right-sized boxes to reduce packaging weight and void fill.",
    "Revenue grew 12 percent this quarter while orders grew 9 percent.",
    "有机棉购物袋,可重复使用,采用再生纸包装发货。",
    "您好,我的订单什么时候到?物流信息一直没有更新。",
    "感谢您的耐心等待,您的包裹已经发出,预计三天内送达。",
    "退货率上升到百分之八,建议增加尺码指南以减少退货。",
    "将部分空运改为陆运,可以降低运输排放。",
    "Product description: a warm wool scarf, soft and light, in three colours.",
    "Customer reply: we are sorry for the delay and have refunded the shipping fee.",
    "Strategy: consolidate shipments, reduce overstock, and choose recyclable packaging.",
]


def training_corpus() -> list[str]:
    """A few KB of store-flavoured English and Chinese text for the tokenizer."""
    return _CORPUS_LINES * 8


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer (any text encodes) with greenq's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token=EOS, pad_token=PAD, additional_special_tokens=ROLE_TOKENS
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_local_model(shape_name: str, out_dir: Path, seed: int = 0) -> Path:
    """Build a random-weight GPT-2-style model and a BPE tokenizer into `out_dir`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    shape = SHAPES[shape_name]
    tokenizer = train_tokenizer(training_corpus(), shape.tokenizer_vocab)

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=shape.model_vocab or len(tokenizer),
        n_positions=shape.n_positions,
        n_embd=shape.n_embd,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=shape.initializer_range,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        staging.chmod(0o755)
        tokenizer.save_pretrained(staging)
        model.save_pretrained(staging, safe_serialization=True)
        try:
            os.rename(staging, out_dir)  # atomic: concurrent builders never see half a model
        except OSError:
            if not (out_dir / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
