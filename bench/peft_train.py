#!/usr/bin/env python3
"""bench/peft_train.py — the Hugging Face baseline of bench/train_gpu.sh:
transformers + peft bf16 LoRA training speed and GPU memory on one CUDA GPU,
and (with --gemm) the GPU's bf16 GEMM rate.

    python3 bench/peft_train.py --model DIR [--grad-ckpt] [--seq-len 1024]
        [--micro-batch 4] [--steps 10] [--warmup 2] [--r 16]
    python3 bench/peft_train.py --gemm          (the GEMM rate only)

Training: the bf16 checkpoint in DIR (torch_dtype=torch.bfloat16, moved to
"cuda"), a peft LoRA of rank r, lora_alpha 16, dropout 0, on every linear
layer (q, k, v, o, gate, up, down), AdamW lr 1e-4 (fused when the torch has
it), gradient clipping at 1.0 (ggtrain's default), random token ids (labels
= the inputs), micro-batch x seq-len tokens per step, one micro-batch per
optimizer step. The first --warmup steps are not timed; tokens/s is the
tokens of the --steps timed steps over their wall time, with
torch.cuda.synchronize() at both ends. --grad-ckpt:
model.gradient_checkpointing_enable() and enable_input_require_grads() (the
way peft's prepare_model_for_kbit_training does it).

--gemm: the best of a few timings of a [8192 x 8192] @ [8192 x 8192] bf16
torch.matmul (2 * 8192^3 FLOP each), in TFLOP/s.

Prints one JSON line, e.g.
  {"tokens_per_s": ..., "max_memory_allocated": ..., "max_memory_reserved": ...,
   "gemm_tflops": ..., ...}
(bytes for the memory figures). A CUDA out-of-memory error gives
{"error": "out of memory", ...} and exit status 0, so the caller can print a
row for it.
"""
import argparse
import json
import sys
import time

import torch


def gemm_tflops(n=8192, reps=20, rounds=5):
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):  # warm-up (cuBLAS handle, heuristics, clocks)
        torch.matmul(a, b, out=c)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b, out=c)
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) / reps)
    del a, b, c
    torch.cuda.empty_cache()
    return 2.0 * n**3 / best / 1e12


def train(args, out):
    from transformers import AutoModelForCausalLM
    from peft import LoraConfig, get_peft_model

    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.bfloat16)
    model.config.use_cache = False
    model.to("cuda")
    out["base_params"] = sum(p.numel() for p in model.parameters())
    if args.grad_ckpt:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    cfg = LoraConfig(
        task_type="CAUSAL_LM",
        r=args.r,
        lora_alpha=args.alpha,
        lora_dropout=0.0,
        bias="none",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    model = get_peft_model(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    out["trainable_params"] = sum(p.numel() for p in params)
    try:
        opt = torch.optim.AdamW(params, lr=args.lr, fused=True)
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(params, lr=args.lr)

    vocab = model.config.vocab_size
    gen = torch.Generator(device="cuda").manual_seed(1)
    shape = (args.micro_batch, args.seq_len)

    def step():
        ids = torch.randint(3, vocab, shape, device="cuda", generator=gen)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    tokens = args.steps * args.micro_batch * args.seq_len
    out["tokens_per_s"] = tokens / dt
    out["step_s"] = dt / args.steps
    out["last_loss"] = float(loss)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="HF checkpoint folder (bf16 Llama)")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing")
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--gemm", action="store_true", help="measure the bf16 8192^3 GEMM rate (TFLOP/s)")
    args = ap.parse_args()
    if not args.model and not args.gemm:
        ap.error("give --model DIR, --gemm, or both")
    if not torch.cuda.is_available():
        sys.exit("peft_train: no CUDA device")

    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    if args.gemm:
        out["gemm_tflops"] = gemm_tflops()
    if args.model:
        out.update(seq_len=args.seq_len, micro_batch=args.micro_batch, steps=args.steps,
                   warmup=args.warmup, grad_ckpt=args.grad_ckpt, r=args.r)
        try:
            train(args, out)
        except torch.cuda.OutOfMemoryError as e:
            out["error"] = "out of memory"
            out["detail"] = str(e).splitlines()[0]
        out["max_memory_allocated"] = torch.cuda.max_memory_allocated()
        out["max_memory_reserved"] = torch.cuda.max_memory_reserved()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
