#!/usr/bin/env bash
# t_ggtok_chat.sh — ggtok --chat: conversations rendered with built-in,
# file and stored chat templates, then tokenized; the tokenizer and template
# read back from a .gg file; errors name the line.
set -euo pipefail
BIN=${GG_BIN:-bin}
FIX=${GG_FIXTURES:-tests/fixtures}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
TOKD="$FIX/tokenizers/llama2"
conv='{"n":1,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello."},{"role":"user","content":"Bye"}]}'

# chatml: exact text, the "n" field passes through, ids = plain encoding of the text.
echo "$conv" | "$BIN/ggtok" -m "$TOKD" --chat --template chatml --add-generation-prompt >"$T/o" || fail "chatml"
want='<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n'
grep -qF "{\"n\":1,\"text\":\"$want\",\"ids\":[" "$T/o" || fail "chatml text: $(cat "$T/o")"
echo "{\"text\":\"$want\"}" | "$BIN/ggtok" -m "$TOKD" --jsonl --no-special >"$T/plain"
[ "$(sed 's/.*"ids"://' "$T/o")" = "$(sed 's/.*"ids"://' "$T/plain")" ] || fail "chat ids differ from the encoding of its text"

# A line's own add_generation_prompt wins over the flag.
echo '{"messages":[{"role":"user","content":"Hi"}],"add_generation_prompt":false}' |
    "$BIN/ggtok" -m "$TOKD" --chat --template chatml --add-generation-prompt >"$T/o"
grep -qF '"text":"<|im_start|>user\nHi<|im_end|>\n",' "$T/o" || fail "per-line add_generation_prompt: $(cat "$T/o")"

# The other built-ins render; llama2 refuses a bad role order with the template's own message.
for t in alpaca llama2 llama3; do
    echo "$conv" | "$BIN/ggtok" -m "$TOKD" --chat --template "$t" >"$T/o" || fail "--template $t"
done
echo '{"messages":[{"role":"assistant","content":"x"},{"role":"assistant","content":"y"}]}' >"$T/bad"
rc=0; "$BIN/ggtok" -m "$TOKD" --chat --template llama2 <"$T/bad" >"$T/o" 2>"$T/e" || rc=$?
[ "$rc" -eq 1 ] && grep -q 'stdin line 1' "$T/e" || fail "bad role order: rc $rc, $(cat "$T/e")"

# A template file.
printf '{%% for m in messages %%}[{{ m.role }}] {{ m.content | trim }}\n{%% endfor %%}' >"$T/t.jinja"
echo '{"messages":[{"role":"user","content":"  padded  "}]}' | "$BIN/ggtok" -m "$TOKD" --chat --template "$T/t.jinja" >"$T/o"
grep -qF '"text":"[user] padded\n"' "$T/o" || fail "template file: $(cat "$T/o")"

# Errors: no chat_template, bad template name, missing messages.
rc=0; echo "$conv" | "$BIN/ggtok" -m "$TOKD" --chat >"$T/o" 2>"$T/e" || rc=$?
[ "$rc" -eq 1 ] && grep -q 'no chat_template' "$T/e" || fail "missing chat_template: $(cat "$T/e")"
rc=0; echo "$conv" | "$BIN/ggtok" -m "$TOKD" --chat --template nosuch >"$T/o" 2>"$T/e" || rc=$?
[ "$rc" -eq 1 ] && grep -q "not a built-in" "$T/e" || fail "bad --template: $(cat "$T/e")"
rc=0; printf '%s\n{"text":"x"}\n' "$conv" | "$BIN/ggtok" -m "$TOKD" --chat --template chatml >"$T/o" 2>"$T/e" || rc=$?
[ "$rc" -eq 1 ] && grep -q 'stdin line 2: no "messages"' "$T/e" || fail "missing messages: $(cat "$T/e")"

# The tokenizer and its chat template travel inside a .gg file: a checkpoint
# folder with the llama2 tokenizer files and a chat_template added.
mkdir -p "$T/hf"
cp "$FIX/hf/llama3-gqa/config.json" "$FIX/hf/llama3-gqa/model.safetensors" "$TOKD/tokenizer.json" "$T/hf/"
if command -v python3 >/dev/null; then
    python3 - "$TOKD/tokenizer_config.json" "$T/hf/tokenizer_config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["chat_template"] = "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
json.dump(c, open(sys.argv[2], "w"))
PY
    "$BIN/ggconvert" -q -o "$T/m.gg" "$T/hf" 2>/dev/null || fail "convert with tokenizer"
    echo '{"messages":[{"role":"user","content":"Hi"}]}' | "$BIN/ggtok" -m "$T/m.gg" --chat --add-generation-prompt >"$T/o" || fail "chat from .gg"
    grep -qF '"text":"<user>Hi</user><assistant>"' "$T/o" || fail ".gg chat template: $(cat "$T/o")"
    echo "Hello world" | "$BIN/ggtok" -m "$T/m.gg" >"$T/a"
    echo "Hello world" | "$BIN/ggtok" -m "$TOKD" >"$T/b"
    cmp -s "$T/a" "$T/b" || fail "tokenizer from .gg differs from the folder's"
fi
echo ok
