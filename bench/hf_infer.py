#!/usr/bin/env python3
"""bench/hf_infer.py — the PyTorch side of bench/infer_gpu.sh: the GPU's HBM
bandwidth, and transformers bf16 prefill / decode speed, on one CUDA GPU.

    python3 bench/hf_infer.py --copy
    python3 bench/hf_infer.py --model DIR --prefill 512 --decode 128

--copy: a device-to-device copy of a 4 GiB tensor (dst.copy_(src)), the best
  of a few timings. Each copy reads 4 GiB and writes 4 GiB, so
  copy_gbps = 2 * 4 GiB / s (bytes moved), and the read bandwidth used for
  the decode bound is read_gbps = copy_gbps / 2 (GB = 1e9 bytes).
--model DIR: the bf16 checkpoint (torch_dtype=torch.bfloat16, moved to
  "cuda", default attention implementation), batch 1, under
  torch.inference_mode():
  --prefill N: one forward of N random token ids with the KV cache on
    (logits of the last position only, where the transformers has
    logits_to_keep / num_logits_to_keep), tokens/s = N / time, best of 3
    after a warm-up.
  --decode N: greedy model.generate() of exactly N new tokens (no
    end-of-sequence token) after a 4-token prompt. As gggen counts it, the first new token comes
    from the prompt's forward, so decode tokens/s = (N - 1) / (t(N) - t(1)),
    t(k) = the time of generate(max_new_tokens=k); best of 3 after a warm-up.

Prints one JSON line: {"copy_gbps", "read_gbps"} and/or {"prefill_tps",
"decode_tps", "weight_bytes"} (weight_bytes: the model's parameter bytes).
"""
import argparse
import inspect
import json
import sys
import time

import torch


def sync_time(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def copy_bandwidth(gib=4, reps=10, rounds=3):
    n = gib << 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda").fill_(1)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)

    def run():
        for _ in range(reps):
            dst.copy_(src)

    best = min(sync_time(run) for _ in range(rounds)) / reps
    del src, dst
    torch.cuda.empty_cache()
    copy = 2.0 * n / best / 1e9
    return {"copy_gbps": copy, "read_gbps": copy / 2}


def hf_speed(args):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.bfloat16)
    model.to("cuda").eval()
    out = {"weight_bytes": sum(p.numel() * p.element_size() for p in model.parameters())}
    vocab = model.config.vocab_size
    gen = torch.Generator(device="cuda").manual_seed(1)
    params = inspect.signature(model.forward).parameters
    keep = {}
    for k in ("logits_to_keep", "num_logits_to_keep"):
        if k in params:
            keep = {k: 1}
            break
    with torch.inference_mode():
        if args.prefill:
            ids = torch.randint(3, vocab, (1, args.prefill), device="cuda", generator=gen)
            fwd = lambda: model(input_ids=ids, use_cache=True, **keep)
            fwd()
            out["prefill_tps"] = args.prefill / min(sync_time(fwd) for _ in range(3))
        if args.decode:
            ids = torch.randint(3, vocab, (1, 4), device="cuda", generator=gen)
            mask = torch.ones_like(ids)

            # No end-of-sequence token: every generate() runs to max_new_tokens (gen_hf's config names
            # eos 128001, outside a 32000 vocabulary, so min_new_tokens could not mask it either).
            model.generation_config.eos_token_id = None
            model.generation_config.pad_token_id = 0

            def gen_k(k):
                return lambda: model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=k,
                                              do_sample=False)

            n = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.decode,
                               do_sample=False).shape[1] - ids.shape[1]  # also the warm-up
            if n != args.decode:
                sys.exit(f"hf_infer: generate gave {n} new tokens, not {args.decode}")
            t1 = min(sync_time(gen_k(1)) for _ in range(3))
            tn = min(sync_time(gen_k(args.decode)) for _ in range(3))
            out["decode_tps"] = (args.decode - 1) / (tn - t1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="HF checkpoint folder (bf16)")
    ap.add_argument("--copy", action="store_true", help="measure the device-to-device copy bandwidth")
    ap.add_argument("--decode", type=int, default=0, metavar="N", help="greedy generate N new tokens")
    ap.add_argument("--prefill", type=int, default=0, metavar="N", help="one forward of N prompt tokens")
    args = ap.parse_args()
    if not args.copy and not (args.model and (args.decode or args.prefill)):
        ap.error("give --copy, or --model DIR with --decode N and/or --prefill N")
    if not torch.cuda.is_available():
        sys.exit("hf_infer: no CUDA device")
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    if args.copy:
        out.update(copy_bandwidth())
    if args.model and (args.decode or args.prefill):
        out.update(hf_speed(args))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
