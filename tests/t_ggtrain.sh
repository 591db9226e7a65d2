#!/usr/bin/env bash
# t_ggtrain.sh — ggtrain end to end on the demo model (tests/make_demo_model.sh)
# and the demo task (tests/make_task.sh):
# - learning: on f32, q8 and nf4 bases the held-out loss falls to under a
#   third of its first value and gggen answers held-out phrasings correctly;
# - resume: 20 steps straight and a resume from the step-10 checkpoint give
#   byte-identical adapters; Ctrl-C writes a checkpoint and exits 130;
# - --estimate within 15% of the measured peak RSS;
# - recipe files (Axolotl keys), --preprocess-only --debug-data, bad lines,
#   --metrics/--plot, and the NaN watchdog.
set -euo pipefail
BIN=${GG_BIN:-bin}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
M=build/demo-model
bash tests/make_demo_model.sh "$M"
bash tests/make_task.sh "$T/task"
PROMPT_HEAD='Below is an instruction that describes a task. Write a response that appropriately completes the request.

### Instruction:
'
ask() { # model adapter instruction → greedy answer
    "$BIN/gggen" -q -m "$1" -a "$2" -n 12 --temp 0 -p "$PROMPT_HEAD$3

### Response:
"
}

# ---- learning on three base types ----
for t in f32 q8 nf4; do
    "$BIN/ggconvert" -q -t "$t" -o "$T/base-$t.gg" "$M"
    "$BIN/ggtrain" -q -m "$T/base-$t.gg" -d "$T/task/train.jsonl" --val-data "$T/task/val.jsonl" \
        -o "$T/a-$t.gg" --epochs 30 --micro-batch 8 --lr 4e-3 --metrics "$T/m-$t.jsonl"
    first=$(grep -m1 eval_loss "$T/m-$t.jsonl" | sed 's/.*"eval_loss":\([0-9.e+-]*\).*/\1/')
    last=$(grep eval_loss "$T/m-$t.jsonl" | tail -n1 | sed 's/.*"eval_loss":\([0-9.e+-]*\).*/\1/')
    echo "# $t: held-out loss $first -> $last"
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a / 3) }' || fail "$t: held-out loss $first -> $last"
    right=0
    for pair in France:Paris Japan:Tokyo Peru:Lima Norway:Oslo; do
        c=${pair%%:*} cap=${pair#*:}
        out=$(ask "$T/base-$t.gg" "$T/a-$t.gg" "Tell me the capital of $c.")
        [ "$out" = " The capital of $c is $cap." ] && right=$((right + 1))
    done
    echo "# $t: $right/4 held-out questions answered exactly"
    [ "$right" -ge 3 ] || fail "$t: $right/4 held-out answers right"
done
# without the adapter the base does not know them
out=$("$BIN/gggen" -q -m "$T/base-f32.gg" -n 12 --temp 0 -p "${PROMPT_HEAD}Tell me the capital of France.

### Response:
")
[ "$out" != " The capital of France is Paris." ] || fail "the base model already knew the answer"

# ---- resume: byte-identical adapters ----
common=(-q -m "$T/base-nf4.gg" -d "$T/task/train.jsonl" --max-steps 20 --micro-batch 4 --grad-accum 2 --lr 3e-3
        --lora-dropout 0.1 --threads 2)
"$BIN/ggtrain" "${common[@]}" -o "$T/straight.gg"
"$BIN/ggtrain" "${common[@]}" -o "$T/saved.gg" --save-every 10 --keep 5
[ -f "$T/saved.gg.ckpt/step-00000010/state.gg" ] || fail "no step-10 checkpoint"
cmp -s "$T/straight.gg" "$T/saved.gg" || fail "checkpointing changed the result"
"$BIN/ggtrain" "${common[@]}" -o "$T/resumed.gg" --resume "$T/saved.gg.ckpt/step-00000010"
cmp "$T/straight.gg" "$T/resumed.gg" || fail "20 steps and 10 + resume 10 differ"
# --keep: only the newest checkpoints stay
[ "$(ls "$T/saved.gg.ckpt" | tr '\n' ' ')" = "step-00000010 step-00000020 " ] || fail "checkpoints: $(ls "$T/saved.gg.ckpt")"
"$BIN/ggtrain" "${common[@]}" -o "$T/k.gg" --save-every 5 --keep 2
[ "$(ls "$T/k.gg.ckpt" | tr '\n' ' ')" = "step-00000015 step-00000020 " ] || fail "--keep 2: $(ls "$T/k.gg.ckpt")"
# 8-bit optimizer state resumes too
"$BIN/ggtrain" "${common[@]}" --optim adamw8bit -o "$T/s8.gg" --save-every 10
"$BIN/ggtrain" "${common[@]}" --optim adamw8bit -o "$T/r8.gg" --resume "$T/s8.gg.ckpt/step-00000010"
cmp "$T/s8.gg" "$T/r8.gg" || fail "8-bit AdamW: 20 steps and 10 + resume 10 differ"
# a checkpoint of another run's shape is refused
if "$BIN/ggtrain" "${common[@]}" --r 8 -o "$T/x.gg" --resume "$T/saved.gg.ckpt" 2>"$T/err"; then
    fail "resumed a checkpoint with another rank"
fi
grep -q "does not match this run" "$T/err" || fail "wrong-shape resume: $(cat "$T/err")"

# ---- Ctrl-C ----
"$BIN/ggtrain" -m "$T/base-f32.gg" -d "$T/task/train.jsonl" -o "$T/int.gg" --max-steps 100000 --threads 1 \
    2>"$T/int.log" &
pid=$!
for _ in $(seq 300); do grep -q "^step" "$T/int.log" 2>/dev/null && break; sleep 0.05; done
kill -INT "$pid"
rc=0; wait "$pid" || rc=$?
[ "$rc" -eq 130 ] || fail "Ctrl-C: exit $rc, expected 130 ($(tail -n2 "$T/int.log"))"
grep -q "continue with --resume" "$T/int.log" || fail "Ctrl-C: no resume hint"
ls "$T/int.gg.ckpt"/step-*/state.gg >/dev/null || fail "Ctrl-C: no checkpoint"
[ ! -e "$T/int.gg" ] || fail "Ctrl-C wrote the final adapter"

# ---- --estimate against the measured peak (not under ASan: it adds its own memory) ----
awk 'BEGIN { srand(3); for (s = 0; s < 64; s++) { printf "{\"input_ids\": [";
      for (i = 0; i < 256; i++) printf "%s%d", (i ? ", " : ""), 3 + int(rand() * 31990); print "]}" } }' >"$T/full.jsonl"
for extra in "--micro-batch 8" "--micro-batch 8 --grad-ckpt" "--micro-batch 4 --optim adamw8bit --r 32"; do
    # shellcheck disable=SC2086
    est=$("$BIN/ggtrain" -m "$T/base-f32.gg" --estimate --seq-len 256 $extra | awk '/total/ { print $2 }')
    # shellcheck disable=SC2086
    peak=$("$BIN/ggtrain" -m "$T/base-f32.gg" -d "$T/full.jsonl" -o "$T/e.gg" --seq-len 256 --max-steps 2 $extra 2>&1 |
        sed -n 's/.*peak RSS \([0-9]*\) MB.*/\1/p')
    echo "# estimate $est MB, measured peak $peak MB ($extra)"
    [ "${GG_SANITIZE:-0}" = 1 ] && { echo "# (sanitizer build: the 15% check is skipped)"; continue; }
    awk -v e="$est" -v p="$peak" 'BEGIN { d = (e - p) / p; exit !(d < 0.15 && d > -0.15) }' ||
        fail "estimate $est MB vs peak $peak MB ($extra)"
done

# ---- recipe file, flags override it ----
cat >"$T/recipe.yml" <<EOF
# an Axolotl-style recipe
base_model: $T/base-f32.gg
lora_r: 4
lora_alpha: 8
learning_rate: 0.001
micro_batch_size: 2
max_steps: 3
lr_scheduler: linear
lora_target_modules:
  - q_proj
  - v_proj
EOF
"$BIN/ggtrain" --config "$T/recipe.yml" -d "$T/task/train.jsonl" -o "$T/cfg.gg" --max-steps 2 2>"$T/cfg.log"
grep -q "LoRA r 4 alpha 8 on q_proj,v_proj" "$T/cfg.log" || fail "recipe not applied: $(cat "$T/cfg.log")"
grep -q "^step 2/2" "$T/cfg.log" || fail "--max-steps did not override the recipe"
printf 'lora_r: 4\nfrobnicate: 1\n' >"$T/bad.yml"
"$BIN/ggtrain" --config "$T/bad.yml" -m "$T/base-f32.gg" -d x -o y 2>"$T/err" && fail "unknown key accepted"
grep -q "bad.yml:2: unknown key 'frobnicate'" "$T/err" || fail "unknown key: $(cat "$T/err")"

# ---- data checks ----
"$BIN/ggtrain" -m "$T/base-f32.gg" -d "$T/task/train.jsonl" --preprocess-only --debug-data 1 >"$T/dbg" 2>"$T/dbg.err"
grep -q ':T' "$T/dbg" && grep -q ':M' "$T/dbg" || fail "--debug-data shows no trained/masked tokens"
grep -q "48 samples" "$T/dbg.err" || fail "--preprocess-only summary: $(cat "$T/dbg.err")"
# chat data with a built-in template and with a Jinja file: only the assistant's reply is trained
echo '{"messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]}' >"$T/chat.jsonl"
for tmpl in llama2 tests/fixtures/chat/mistral.jinja; do
    "$BIN/ggtrain" -m "$T/base-f32.gg" -d "$T/chat.jsonl" --chat-template "$tmpl" --preprocess-only --debug-data 1 >"$T/dbg" 2>/dev/null
    grep -q '"▁Paris":T' "$T/dbg" && ! grep -q '"▁France":T' "$T/dbg" || fail "chat masking ($tmpl): $(cat "$T/dbg")"
done
{ head -n 2 "$T/task/train.jsonl"; echo '{"instruction": "x"'; } >"$T/bad.jsonl"
"$BIN/ggtrain" -m "$T/base-f32.gg" -d "$T/bad.jsonl" -o "$T/x.gg" 2>"$T/err" && fail "bad line accepted"
grep -q "bad.jsonl:3:" "$T/err" || fail "bad line: $(cat "$T/err")"
"$BIN/ggtrain" -q -m "$T/base-f32.gg" -d "$T/bad.jsonl" --skip-bad --preprocess-only 2>"$T/err"
grep -q "1 skipped" "$T/err" || fail "--skip-bad count: $(cat "$T/err")"

# ---- metrics, plot, watchdog ----
"$BIN/ggtrain" -q -m "$T/base-f32.gg" -d "$T/task/train.jsonl" --val-split 8 -o "$T/p.gg" --max-steps 4 \
    --eval-every 2 --metrics "$T/p.jsonl" --plot "$T/p.svg"
[ "$(grep -c '"loss"' "$T/p.jsonl")" -eq 4 ] || fail "--metrics: $(cat "$T/p.jsonl")"
[ "$(grep -c '"eval_loss"' "$T/p.jsonl")" -eq 3 ] || fail "--metrics eval rows: $(cat "$T/p.jsonl")"
grep -q '"grad_norm"' "$T/p.jsonl" && grep -q '"tokens_per_s"' "$T/p.jsonl" || fail "--metrics fields"
head -c 200 "$T/p.svg" | grep -q "<svg" && tail -c 20 "$T/p.svg" | grep -q "</svg>" || fail "--plot is not SVG"
"$BIN/ggtrain" -q -m "$T/base-f32.gg" -d "$T/task/train.jsonl" -o "$T/nan.gg" --max-steps 30 --lr 10 \
    --max-grad-norm 0 --warmup 0 2>"$T/err" && fail "lr 10 did not blow up"
grep -q "is NaN\|is infinite" "$T/err" || fail "watchdog: $(cat "$T/err")"
[ ! -e "$T/nan.gg" ] || fail "watchdog wrote the adapter"
# the loss-spike watchdog (a threshold under 1 trips it on an ordinary run)
"$BIN/ggtrain" -q -m "$T/base-f32.gg" -d "$T/task/train.jsonl" -o "$T/spike.gg" --max-steps 30 \
    --loss-spike 0.5 --spike-steps 3 2>"$T/err" && fail "the spike watchdog did not stop the run"
grep -q "over 0.5 x its earlier mean for 3 steps" "$T/err" || fail "spike watchdog: $(cat "$T/err")"
[ ! -e "$T/spike.gg" ] || fail "the spike watchdog wrote the adapter"
echo ok
