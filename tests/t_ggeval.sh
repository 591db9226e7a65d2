#!/usr/bin/env bash
# t_ggeval.sh — ggeval from the command line on the demo model (a random
# Llama with the Llama 2 tokenizer, tests/make_demo_model.sh):
#  ppl: a text longer than 3 × ctx, every token scored once (windows and
#  token count), perplexities recomputed from the printed NLL and counts,
#  --stride, stdin, KL against itself (0) and against an adapted model;
#  harness: the synthetic tasks (multiple choice, mc2, generation, rolling,
#  winogrande style) with --output (configuration, fingerprint, metrics
#  with standard errors), --log-samples (one line per document), --limit,
#  few-shot determinism with --seed, task lookup by name, every shipped
#  task definition on tiny data, --compare and `ggeval compare` deltas
#  between the base and a (briefly trained) adapter; and one-line errors
#  naming FILE:LINE for bad task files and documents.
set -euo pipefail
BIN=${GG_BIN:-bin}
FIX=${GG_FIXTURES:-tests/fixtures}
TASKS="$FIX/tasks"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect_error() { # CMD...: exit 1, one line on stderr containing $PAT, nothing on stdout
    local rc=0
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" -eq 1 ] || fail "'$*' exited $rc, expected 1 ($(cat "$T/err"))"
    [ "$(wc -l <"$T/err")" -eq 1 ] || fail "'$*' printed $(wc -l <"$T/err") lines on stderr: $(cat "$T/err")"
    grep -q -- "$PAT" "$T/err" || fail "'$*': error lacks '$PAT': $(cat "$T/err")"
    [ ! -s "$T/out" ] || fail "'$*' printed on stdout"
}
# jnum FILE KEY: the first number after "KEY":
jnum() { grep -o "\"$2\": *[-0-9.e+]*" "$1" | head -n 1 | sed 's/.*: *//'; }
close() { # A B REL: |A - B| <= REL * |B|
    awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(d <= r * m + 1e-12) }'
}

grep -q 'usage: ggeval ppl' <("$BIN/ggeval" --help) || fail "--help"
grep -q '^ggeval ' <("$BIN/ggeval" --version) || fail "--version"

bash tests/make_demo_model.sh "$T/demo-hf" >/dev/null
"$BIN/ggconvert" -q -t f32 -o "$T/demo.gg" "$T/demo-hf" 2>/dev/null || fail "convert the demo model"
M="$T/demo.gg"

# ---- ppl ----
for i in 1 2 3 4 5 6; do sed -n '1,40p' README.md; done >"$T/text.txt"
"$BIN/ggeval" ppl -q -m "$M" -f "$T/text.txt" --ctx 64 --json >"$T/p.json" || fail "ppl"
n=$(jnum "$T/p.json" tokens); nw=$(jnum "$T/p.json" windows); nll=$(jnum "$T/p.json" nll)
bytes=$(jnum "$T/p.json" bytes); words=$(jnum "$T/p.json" words)
[ "$bytes" -eq "$(stat -c %s "$T/text.txt")" ] || fail "bytes $bytes"
[ "$words" -eq "$(awk 'BEGIN { RS = "\001" } { n = split($0, a, /[ \t\n\r\f\v]+/); print n }' "$T/text.txt")" ] ||
    fail "words $words"
[ "$n" -gt $((3 * 64)) ] || fail "text too short: $n tokens"
[ "$nw" -eq $(((n + 63) / 64)) ] || fail "windows $nw for $n tokens (ctx 64)"
close "$(jnum "$T/p.json" token_perplexity)" "$(awk -v a="$nll" -v n="$n" 'BEGIN { print exp(a / n) }')" 1e-5 ||
    fail "token perplexity is not exp(NLL / tokens)"
close "$(jnum "$T/p.json" bits_per_byte)" "$(awk -v a="$nll" -v b="$bytes" 'BEGIN { print a / b / log(2) }')" 1e-5 ||
    fail "bits per byte"
close "$(jnum "$T/p.json" word_perplexity)" "$(awk -v a="$nll" -v w="$words" 'BEGIN { print exp(a / w) }')" 1e-4 ||
    fail "word perplexity"
"$BIN/ggeval" ppl -q -m "$M" -f - --ctx 64 --json <"$T/text.txt" >"$T/p2.json"
[ "$(jnum "$T/p2.json" nll)" = "$nll" ] || fail "stdin gives another NLL"
"$BIN/ggeval" ppl -q -m "$M" -f "$T/text.txt" --ctx 64 --stride 16 --json >"$T/p3.json"
[ "$(jnum "$T/p3.json" windows)" -eq $((1 + (n - 64 + 15) / 16)) ] || fail "stride windows $(jnum "$T/p3.json" windows)"
[ "$(jnum "$T/p3.json" tokens)" -eq "$n" ] || fail "stride tokens"
"$BIN/ggeval" ppl -q -m "$M" -f "$T/text.txt" --ctx 64 --kl-base "$M" --json >"$T/k.json"
close "$(jnum "$T/k.json" kl_mean)" 0 0 || fail "KL of a model against itself: $(jnum "$T/k.json" kl_mean)"
[ "$(jnum "$T/k.json" top1_agreement)" = "1.000000" ] || fail "top-1 agreement against itself"
[ "$(jnum "$T/k.json" nll)" = "$nll" ] || fail "the KL pass gives another NLL"
"$BIN/ggeval" ppl -m "$M" -f "$T/text.txt" --ctx 64 >"$T/table" 2>"$T/err"
grep -q '^word_perplexity' "$T/table" && grep -q 'tokens/s' "$T/err" || fail "ppl table / stats line"

# ---- an adapter (a few QLoRA steps on the demo task) ----
bash tests/make_task.sh "$T/task"
"$BIN/ggtrain" -m "$M" -d "$T/task/train.jsonl" -o "$T/ad.gg" --max-steps 6 --micro-batch 8 --lr 4e-3 \
    --log-every 100 >/dev/null 2>&1 || fail "ggtrain"
"$BIN/ggeval" ppl -q -m "$M" -a "$T/ad.gg" -f "$T/text.txt" --ctx 64 --kl-base "$M" --json >"$T/k2.json"
awk -v k="$(jnum "$T/k2.json" kl_mean)" 'BEGIN { exit !(k > 0) }' || fail "KL of the adapted model is 0"

# ---- harness ----
"$BIN/ggeval" harness -m "$M" --tasks "$TASKS/synth" --ctx 256 --limit 4 --output "$T/r.json" \
    --log-samples "$T/log.jsonl" >"$T/table" 2>"$T/err" || fail "harness: $(cat "$T/err")"
for k in '"acc,none"' '"acc_norm,none"' '"acc_bytes,none"' '"mc2,none"' '"exact_match,strict-match"' \
    '"exact_match,flexible-extract"' '"word_perplexity,none"' '"bits_per_byte,none"' '"acc_stderr,none"' \
    '"acc_bootstrap_stderr,none"' '"model_fingerprint": "[0-9a-f]\{16\}"' '"bootstrap_iters": 1000' \
    '"synth_wino": 3' '"synth_mc": 4' '"perplexity,none"' '"n-shot"' '"prefix_reuse": true' '"tokens_reused"'; do
    grep -q "$k" "$T/r.json" || fail "results JSON lacks $k"
done
[ "$(wc -l <"$T/log.jsonl")" -eq $((4 + 4 + 4 + 4 + 3 + 3)) ] || fail "log-samples: $(wc -l <"$T/log.jsonl") lines"
grep -q '"task":"synth_mc","doc_id":0' "$T/log.jsonl" && grep -q '"resps":\[\[-[0-9]' "$T/log.jsonl" ||
    fail "log-samples content"
grep -q '^|synth_mc  *|none  *|     0|acc  *| ↑ |' "$T/table" || fail "results table: $(cat "$T/table")"
grep -q '"int8_matmul": false' "$T/r.json" || fail "results JSON lacks int8_matmul"
"$BIN/ggeval" harness -q -m "$M" --tasks "$TASKS/synth/mc.yaml" --ctx 256 --limit 2 --int8-matmul \
    --output "$T/r8.json" >/dev/null || fail "harness --int8-matmul"
grep -q '"int8_matmul": true' "$T/r8.json" || fail "--int8-matmul not in the results JSON"
grep -q 'requests/s' "$T/err" || fail "no requests/s line"
fp=$(grep -o '"model_fingerprint": "[0-9a-f]*"' "$T/r.json" | sed 's/.*: "//; s/"//')
"$BIN/gginfo" "$M" | grep -qi "$fp" || fail "fingerprint $fp is not the model's"

# few-shot draws: the same seed, the same prompts; another seed, others
for s in 7 7 8; do
    "$BIN/ggeval" harness -q -m "$M" --tasks "$TASKS/synth/mc.yaml" --ctx 256 --num-fewshot 3 --seed $s \
        --log-samples "$T/fs$s.jsonl" >/dev/null
    grep -o '"prompt":"[^"]*"' "$T/fs$s.jsonl" >"$T/pr$s"
    cp "$T/pr$s" "$T/pr$s.$RANDOM"
done
cmp -s "$T/pr7" "$(ls "$T"/pr7.* | head -n 1)" || fail "seed 7 twice"
! cmp -s "$T/pr7" "$T/pr8" || fail "seeds 7 and 8 give the same few-shot prompts"
[ "$(grep -o 'Q: ' "$T/pr7" | wc -l)" -eq 40 ] || fail "3-shot prompts: $(grep -o 'Q: ' "$T/pr7" | wc -l) questions"

# a task by name from --task-dir; the Alpaca prompt keeps its final newline (keep_trailing_newline)
"$BIN/ggeval" harness -q -m "$M" --task-dir "$TASKS" --tasks capitals --limit 2 --add-bos --log-samples "$T/c.jsonl" \
    >"$T/table" || fail "task by name"
grep -q '### Response:\\n"' "$T/c.jsonl" || fail "the prompt lost its trailing newline"

# every shipped task definition on tiny data
"$BIN/ggeval" harness -q -m "$M" --tasks tools/tasks --data-dir "$TASKS/shipped" --ctx 512 --limit 1 \
    --output "$T/shipped.json" >"$T/table" || fail "shipped tasks: $(cat "$T/table")"
for t in arc_easy arc_challenge hellaswag mmlu winogrande truthfulqa_mc2 gsm8k wikitext lambada_openai piqa; do
    grep -q "\"$t\": {" "$T/shipped.json" || fail "shipped task $t missing from the results"
done

# compare: base vs adapter on the demo task
"$BIN/ggeval" harness -q -m "$M" --tasks "$TASKS/capitals.yaml" --add-bos --output "$T/base.json" >/dev/null
"$BIN/ggeval" harness -q -m "$M" -a "$T/ad.gg" --tasks "$TASKS/capitals.yaml" --add-bos --output "$T/ft.json" \
    --compare "$T/base.json" >"$T/cmp"
grep -q "compared with $T/base.json" "$T/cmp" || fail "--compare header"
b=$(jnum "$T/base.json" "acc,none"); f=$(jnum "$T/ft.json" "acc,none")
d=$(awk -v a="$b" -v b="$f" 'BEGIN { printf "%+.4f", b - a }')
grep -q "^|capitals  *|acc,none  *| *[0-9.]*| *[0-9.]*| *$d|" "$T/cmp" || fail "--compare delta $d: $(cat "$T/cmp")"
"$BIN/ggeval" compare "$T/base.json" "$T/ft.json" | grep -q -- "$d" || fail "ggeval compare"

# ---- errors ----
PAT="tab.yaml:4: a tab" expect_error "$BIN/ggeval" harness -m "$M" --tasks "$TASKS/bad/tab.yaml"
PAT="unknown_key.yaml:5: unknown key 'doc_to_txet'" expect_error "$BIN/ggeval" harness -m "$M" --tasks "$TASKS/bad/unknown_key.yaml"
PAT="function.yaml:4: " expect_error "$BIN/ggeval" harness -m "$M" --tasks "$TASKS/bad/function.yaml"
PAT="output_type.yaml:3: output_type" expect_error "$BIN/ggeval" harness -m "$M" --tasks "$TASKS/bad/output_type.yaml"
PAT="data/test.jsonl:3: " expect_error "$BIN/ggeval" harness -m "$M" --tasks "$TASKS/bad/bad_doc.yaml"
PAT="'nosuchtask' is not a task" expect_error "$BIN/ggeval" harness -m "$M" --tasks nosuchtask
PAT="unknown command" expect_error "$BIN/ggeval" evaluate -m "$M"
PAT="missing command" expect_error "$BIN/ggeval"
PAT="missing -m" expect_error "$BIN/ggeval" ppl -f "$T/text.txt"
PAT="cuda" expect_error "$BIN/ggeval" ppl -m "$M" -f "$T/text.txt" --device cuda
PAT="larger than the model's context" expect_error "$BIN/ggeval" ppl -m "$M" -f "$T/text.txt" --ctx 100000
PAT="stride" expect_error "$BIN/ggeval" ppl -m "$M" -f "$T/text.txt" --ctx 64 --stride 65
PAT="not a results JSON" expect_error "$BIN/ggeval" compare "$T/p.json" "$T/r.json"
echo "t_ggeval: ok"
