"""Train the bundled demo model on ops/model/corpus.jsonl, on the CPU, within a time budget.

    python ops/model/train.py [--minutes 14] [--out workers/model/bundled/store-assistant]

A small GPT-2-style model (3 layers, 256 wide) and a BPE tokenizer trained on the corpus
itself. Examples are rendered exactly as workers render jobs (greenq's prompt templates and
the model's chat template); the loss counts only the answer tokens. Writes safetensors,
the tokenizer and `training.json` (time, steps, epochs, final loss).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from greenq.shared.jobs import parse_job, parse_job_type
from greenq.workers.model.model_builder import EOS, train_tokenizer
from greenq.workers.model.prompts import build_messages

HERE = Path(__file__).parent
DEFAULT_OUT = HERE.parents[1] / "workers" / "models" / "store-assistant"


def render(tokenizer, row: dict) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    job_type = parse_job_type(row["type"])
    messages = [m.as_dict() for m in build_messages(job_type, parse_job(job_type, row["job"]))]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt, row["answer"] + EOS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=14.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--vocab", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dry-run", action="store_true", help="print token statistics and stop")
    args = parser.parse_args()
    torch.manual_seed(0)
    random.seed(0)
    torch.set_num_threads(torch.get_num_threads())

    rows = [json.loads(line) for line in (HERE / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    # The tokenizer learns from the rendered prompts too, so the fixed template text costs few tokens.
    bootstrap = train_tokenizer([r["answer"] for r in rows], 1000)
    texts = [p + a for p, a in (render(bootstrap, r) for r in rows)]
    tokenizer = train_tokenizer(texts, args.vocab)
    examples = []
    for row in rows:
        prompt, answer = render(tokenizer, row)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        examples.append((prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids))
    lengths = [len(ids) for ids, _ in examples]
    print(
        f"{len(examples)} examples, {sum(lengths)} tokens, length {min(lengths)}–{max(lengths)}, "
        f"mean {sum(lengths) / len(lengths):.0f}, vocab {len(tokenizer)}"
    )
    if args.dry_run:
        return

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=1024,
        n_embd=256,
        n_layer=3,
        n_head=4,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params / 1e6:.1f}M parameters")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    budget_s = args.minutes * 60
    steps_per_epoch = math.ceil(len(examples) / args.batch)
    start = time.monotonic()
    step, epoch, losses = 0, 0, []
    model.train()
    while time.monotonic() - start < budget_s:
        order = sorted(range(len(examples)), key=lambda i: lengths[i] + random.random() * 40)  # similar lengths
        batches = [order[i : i + args.batch] for i in range(0, len(order), args.batch)]
        random.shuffle(batches)
        for batch in batches:
            elapsed = time.monotonic() - start
            if elapsed >= budget_s:
                break
            for group in optimizer.param_groups:  # warm up, then decay with the time left
                group["lr"] = 2e-3 * min(1.0, (step + 1) / 50) * max(0.05, 1 - elapsed / budget_s)
            width = max(lengths[i] for i in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id)
            labels = torch.full((len(batch), width), -100)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                seq, lab = examples[i]
                ids[row, : len(seq)] = torch.tensor(seq)
                labels[row, : len(lab)] = torch.tensor(lab)
                mask[row, : len(seq)] = 1
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            step += 1
            if step % 20 == 0:
                recent = sum(losses[-20:]) / 20
                print(f"step {step} (epoch {epoch + 1}), {elapsed / 60:.1f} min, loss {recent:.3f}", flush=True)
        epoch += 1
    train_s = time.monotonic() - start
    final_loss = sum(losses[-20:]) / min(20, len(losses))

    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    stats = {
        "train_seconds": round(train_s, 1),
        "steps": step,
        "epochs": round(step / steps_per_epoch, 2),
        "final_loss": round(final_loss, 4),
        "parameters": params,
        "examples": len(examples),
        "tokens_per_epoch": sum(lengths),
        "threads": torch.get_num_threads(),
    }
    (args.out / "training.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
