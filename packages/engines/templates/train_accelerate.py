#!/usr/bin/env python3
"""Train only the listed tensors of a Hugging Face causal LM with Accelerate.

Emitted by llama-pro (`llama-pro train --engine accelerate --emit <dir>`). Everything about the run lives in
job.json next to this file: the expanded model, the exact trainable tensor names from its expansion manifest,
the corpus and the optimizer settings. `--dry-run` prints the trainable parameter names (read from the
checkpoint's safetensors headers, no torch needed) and exits.
"""
import argparse
import glob
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load_job(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def checkpoint_tensor_names(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            return sorted(json.load(f)["weight_map"])
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return sorted(header)


def dry_run(job):
    names = checkpoint_tensor_names(job["model_dir"])
    trainable = set(job["trainable"])
    missing = sorted(trainable - set(names))
    if missing:
        sys.exit("error: trainable tensors not in the checkpoint: " + ", ".join(missing[:5]))
    for name in names:
        if name in trainable:
            print(name)


def corpus_texts(corpus):
    paths = [corpus["path"]]
    if os.path.isdir(corpus["path"]):
        paths = sorted(p for p in glob.glob(os.path.join(corpus["path"], "**", "*"), recursive=True) if os.path.isfile(p))
    for p in paths:
        with open(p, encoding="utf-8") as f:
            if corpus["format"] == "jsonl":
                for line in f:
                    if line.strip():
                        yield json.loads(line)[corpus.get("field") or "text"]
            else:
                yield f.read()


def packed_blocks(tokenizer, corpus, seq_len):
    buf = []
    eos = tokenizer.eos_token_id
    for text in corpus_texts(corpus):
        buf.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            buf.append(eos)
        while len(buf) >= seq_len:
            yield buf[:seq_len]
            buf = buf[seq_len:]


def train(job, out_dir):
    import torch
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

    s = job["settings"]
    precision = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}[s["precision"]]
    accelerator = Accelerator(gradient_accumulation_steps=s["gradient_accumulation"], mixed_precision=precision)
    torch.manual_seed(s["seed"])
    model = AutoModelForCausalLM.from_pretrained(job["model_dir"], torch_dtype=torch.float32)
    trainable = set(job["trainable"])
    found = set()
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)
        if name in trainable:
            found.add(name)
    if found != trainable:
        sys.exit("error: the model has no parameters named " + ", ".join(sorted(trainable - found)[:5]))
    accelerator.print(json.dumps({"trainable_tensors": len(found), "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}))

    tokenizer = AutoTokenizer.from_pretrained(job["model_dir"])
    blocks = torch.tensor(list(packed_blocks(tokenizer, job["corpus"], s["seq_len"])), dtype=torch.long)
    if len(blocks) == 0:
        sys.exit("error: the corpus is shorter than one sequence of %d tokens" % s["seq_len"])
    loader = torch.utils.data.DataLoader(blocks, batch_size=s["batch_size"], shuffle=True, generator=torch.Generator().manual_seed(s["seed"]))

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=s["learning_rate"],
        betas=(s["beta1"], s["beta2"]),
    )
    kwargs = {"min_lr_rate": s["min_lr_ratio"]} if s["scheduler"] == "cosine_with_min_lr" else {}
    scheduler = get_scheduler(s["scheduler"], optimizer, num_warmup_steps=int(s["warmup_ratio"] * s["max_steps"]), num_training_steps=s["max_steps"], scheduler_specific_kwargs=kwargs)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    step = 0
    model.train()
    while step < s["max_steps"]:
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(input_ids=batch, labels=batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), s["max_grad_norm"])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                step += 1
                if step % s["logging_steps"] == 0:
                    accelerator.print(json.dumps({"step": step, "loss": loss.item(), "lr": scheduler.get_last_lr()[0]}))
                if step >= s["max_steps"]:
                    break

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(out_dir, is_main_process=accelerator.is_main_process, save_function=accelerator.save, safe_serialization=True)
    if accelerator.is_main_process:
        tokenizer.save_pretrained(out_dir)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", default=os.path.join(HERE, "job.json"))
    parser.add_argument("--dry-run", action="store_true", help="print the trainable tensor names and exit")
    args = parser.parse_args()
    job = load_job(args.job)
    if args.dry_run:
        dry_run(job)
    else:
        train(job, job["output_dir"])


if __name__ == "__main__":
    main()
