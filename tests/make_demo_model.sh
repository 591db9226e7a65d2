#!/usr/bin/env bash
# tests/make_demo_model.sh — the demo's small base model: a random-weight
# Llama (hidden 128, 2 layers, 4 heads / 2 KV heads, 4.5 M parameters) in the
# real Hugging Face format, with the Llama 2 tokenizer (32,000 tokens) from
# tests/fixtures. Random weights know nothing, so what an adapter teaches it
# is plainly the adapter's doing. Deterministic (bench/gen_hf.c's fixed seed).
#
#   bash tests/make_demo_model.sh OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: make_demo_model.sh OUT_DIR}
[ -f "$out/config.json" ] && [ -f "$out/tokenizer.json" ] && exit 0
mkdir -p build/bench
[ -x build/bench/gen_hf ] || cc -std=c11 -O2 -D_GNU_SOURCE bench/gen_hf.c -o build/bench/gen_hf
build/bench/gen_hf "$out" 128 2 4 2 344 32000 100 >/dev/null
cp tests/fixtures/tokenizers/llama2/tokenizer.json tests/fixtures/tokenizers/llama2/tokenizer_config.json "$out/"
cat >"$out/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 128, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 344, "vocab_size": 32000,
 "head_dim": 32, "hidden_act": "silu", "max_position_embeddings": 2048, "rms_norm_eps": 1e-05,
 "rope_theta": 10000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "bos_token_id": 1,
 "eos_token_id": 2}
JSON
