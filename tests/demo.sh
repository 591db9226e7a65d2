#!/usr/bin/env bash
# tests/demo.sh — the end-to-end demo on the small built-in checkpoint
# (tests/fixtures/hf/llama3-gqa, a tiny random Llama 3 in real HF format).
# convert → inspect → verify → generate (with a LoRA adapter too) → train a
# QLoRA adapter (held-out loss) → generate with it → evaluate base and
# adapter (ggeval harness, with --compare) → serve both (ggserve, curl).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GG_BIN:-bin}
OUT=build/demo
mkdir -p "$OUT"
HF=tests/fixtures/hf/llama3-gqa
echo "== ggconvert -t nf4 $HF"
"$BIN/ggconvert" -t nf4 -o "$OUT/llama3-nf4.gg" "$HF"
echo "== gginfo --verify $OUT/llama3-nf4.gg"
"$BIN/gginfo" --verify "$OUT/llama3-nf4.gg" | grep -v '^  \(source\|tokenizer\)\.'
echo "== ggconvert -t q8 / bf16, sizes"
"$BIN/ggconvert" -q -t q8 -o "$OUT/llama3-q8.gg" "$HF"
"$BIN/ggconvert" -q -t bf16 -o "$OUT/llama3-bf16.gg" "$HF"
for f in "$OUT"/llama3-*.gg; do
    "$BIN/gginfo" --json "$f" | awk -v f="$f" '/"size":/ && !done { gsub(/[ ,]/, ""); sub(/"size":/, ""); print f ": " $0 " bytes"; done = 1 }'
done
TOK=tests/fixtures/tokenizers/llama2
echo "== ggtok: text -> ids -> text ($TOK)"
printf 'Hello world, this is gg.\n' | "$BIN/ggtok" -m "$TOK" | tee "$OUT/ids.txt"
"$BIN/ggtok" -m "$TOK" --decode --skip-special <"$OUT/ids.txt"
echo "== ggtok --chat --template llama2"
echo '{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is NF4?"}]}' |
    "$BIN/ggtok" -m "$TOK" --chat --template llama2
echo "== gggen: greedy decoding on the nf4 model (the tiny model has no tokenizer: ids in, ids out)"
"$BIN/gggen" -m "$OUT/llama3-nf4.gg" --ids "986 48 737 667 360 280 840 525" -n 16 --temp 0 --ignore-eos --print-ids
echo "== gggen: sampling (temp 0.8, top-k 40, seed 1), and --dump-logits of the prompt"
"$BIN/gggen" -m "$OUT/llama3-nf4.gg" --ids "986 48 737 667 360 280 840 525" -n 16 --seed 1 --ignore-eos --print-ids \
    --dump-logits "$OUT/prompt-logits.f32"
echo "$OUT/prompt-logits.f32: $(stat -c %s "$OUT/prompt-logits.f32") bytes = 8 positions x 1000 x float32"
LORA=tests/fixtures/hf/llama2-mha
echo "== ggconvert --lora: a PEFT adapter -> .gg adapter; gggen with it, unmerged"
"$BIN/ggconvert" -q -t q8 -o "$OUT/llama2-q8.gg" "$LORA"
"$BIN/ggconvert" --lora "$LORA/lora" --base "$OUT/llama2-q8.gg" -o "$OUT/llama2-lora.gg"
echo "base:        $("$BIN/gggen" -q -m "$OUT/llama2-q8.gg" --ids "1 2 3 4" -n 12 --temp 0 --ignore-eos --print-ids)"
echo "with adapter: $("$BIN/gggen" -q -m "$OUT/llama2-q8.gg" -a "$OUT/llama2-lora.gg" --ids "1 2 3 4" -n 12 --temp 0 --ignore-eos --print-ids)"
echo "== QLoRA: train an adapter on a small random Llama (nf4) with a generated instruction task"
DM=build/demo-model
bash tests/make_demo_model.sh "$DM"
bash tests/make_task.sh "$OUT/task"
"$BIN/ggconvert" -q -t nf4 -o "$OUT/demo-nf4.gg" "$DM"
head -n 1 "$OUT/task/train.jsonl"
"$BIN/ggtrain" -m "$OUT/demo-nf4.gg" -d "$OUT/task/train.jsonl" --val-data "$OUT/task/val.jsonl" \
    -o "$OUT/capitals.gg" --peft-out "$OUT/capitals-peft" --epochs 30 --micro-batch 8 --lr 4e-3 \
    --metrics "$OUT/train.jsonl" --plot "$OUT/train.svg" --log-every 30
echo "held-out loss: $(grep eval_loss "$OUT/train.jsonl" | sed -n '1p;$p' | sed 's/.*"eval_loss":\([0-9.]*\).*/\1/' | paste -sd' ' | sed 's/ / -> /')"
echo "(loss curves: $OUT/train.svg; PEFT export: $OUT/capitals-peft)"
Q="Below is an instruction that describes a task. Write a response that appropriately completes the request.

### Instruction:
Tell me the capital of Japan.

### Response:
"
echo "== gggen on a held-out phrasing, without and with the adapter"
echo "base:         $("$BIN/gggen" -q -m "$OUT/demo-nf4.gg" -p "$Q" -n 12 --temp 0)"
echo "with adapter: $("$BIN/gggen" -q -m "$OUT/demo-nf4.gg" -a "$OUT/capitals.gg" -p "$Q" -n 12 --temp 0)"
echo "== ggeval: the base and the adapter on the held-out phrasings (4-way choice, and generation)"
TASKS=tests/fixtures/tasks/capitals.yaml,tests/fixtures/tasks/capitals_gen.yaml
"$BIN/ggeval" harness -m "$OUT/demo-nf4.gg" --tasks "$TASKS" --add-bos --output "$OUT/eval-base.json"
"$BIN/ggeval" harness -m "$OUT/demo-nf4.gg" -a "$OUT/capitals.gg" --tasks "$TASKS" --add-bos \
    --output "$OUT/eval-adapter.json" --compare "$OUT/eval-base.json"
echo "== ggserve: the base and the adapter behind one OpenAI-compatible endpoint (Alpaca chat template: the training format)"
"$BIN/ggserve" -m "$OUT/demo-nf4.gg" --lora capitals="$OUT/capitals.gg" --chat-template alpaca --port 0 -q \
    2>"$OUT/serve.log" &
SP=$!
trap 'kill $SP 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$OUT/serve.log" && break; sleep 0.1; done
URL=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$OUT/serve.log" | head -n 1)
[ -n "$URL" ] || { cat "$OUT/serve.log"; exit 1; }
echo "$URL/v1/models: $(curl -s "$URL/v1/models" | tr -d '\n' | sed 's/"created":[0-9]*,//g' | cut -c1-160)..."
for model in demo-nf4 capitals; do
    curl -s "$URL/v1/chat/completions" -H 'Content-Type: application/json' \
        -d "{\"model\": \"$model\", \"max_tokens\": 12, \"temperature\": 0,
             \"messages\": [{\"role\": \"user\", \"content\": \"Tell me the capital of Japan.\"}]}" >"$OUT/chat.json"
    grep -q '"error"' "$OUT/chat.json" && { cat "$OUT/chat.json"; exit 1; }
    echo "$model: $(sed -n 's/.*"content":"\([^"]*\)".*/\1/p' "$OUT/chat.json")"
done
kill "$SP"; wait "$SP" 2>/dev/null || true
echo "(open $URL/ while ggserve runs for a chat page with both side by side)"
