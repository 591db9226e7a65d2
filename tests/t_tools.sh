#!/usr/bin/env bash
# t_tools.sh — ggconvert and gginfo from the command line: help, flags,
# exit statuses, one-line errors on every kind of bad input, no output left
# behind by a failed conversion, --json and --verify.
set -euo pipefail
BIN=${GG_BIN:-bin}
FIX=${GG_FIXTURES:-tests/fixtures}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# expect_error CMD...: exit status 1, exactly one line on stderr, nothing on stdout.
expect_error() {
    local rc=0
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" -eq 1 ] || fail "'$*' exited $rc, expected 1 ($(cat "$T/err"))"
    [ "$(wc -l <"$T/err")" -eq 1 ] || fail "'$*' printed $(wc -l <"$T/err") lines on stderr: $(cat "$T/err")"
    [ ! -s "$T/out" ] || fail "'$*' printed on stdout"
}

# (Outputs go through files: `cmd | grep -q` can fail on SIGPIPE under pipefail.)
has() { local pat=$1; shift; "$@" >"$T/o" || fail "'$*' failed"; grep -q -- "$pat" "$T/o" || fail "'$*' lacks '$pat'"; }
has 'usage: ggconvert' "$BIN/ggconvert" --help
has 'usage: gginfo' "$BIN/gginfo" --help
has '^ggconvert [0-9]' "$BIN/ggconvert" --version

"$BIN/ggconvert" -q -o "$T/m.gg" "$FIX/hf/qwen2-bias-tied" 2>"$T/log" || fail "convert: $(cat "$T/log")"
grep -q 'ggconvert: wrote .* MB/s' "$T/log" || fail "final line missing: $(cat "$T/log")"
has '^verify: *ok' "$BIN/gginfo" --verify "$T/m.gg"
has 'layers.1.attn.q.bias' "$BIN/gginfo" --tensors "$T/m.gg"
"$BIN/ggconvert" -q -o "$T/l.gg" "$FIX/hf/llama3-gqa" 2>/dev/null || fail "convert llama3"
"$BIN/gginfo" --json "$T/l.gg" >"$T/j"
grep -q '"metadata"' "$T/j" && grep -q '"tensors"' "$T/j" && grep -q '"bits_per_weight"' "$T/j" || fail "--json keys"
if command -v python3 >/dev/null; then
    python3 - "$T/j" <<'PY' || fail "--json content"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["metadata"]["general.architecture"] == "llama"
assert j["metadata"]["model.rope.type"] == "llama3" and j["metadata"]["model.n_kv_heads"] == 2
t = {x["name"]: x for x in j["tensors"]}
assert t["layers.0.attn.k.weight"]["type"] == "nf4" and t["layers.0.attn.k.weight"]["shape"] == [32, 128]
assert t["layers.0.attn_norm.weight"]["type"] == "f32"
assert t["embed.weight"]["type"] == "bf16"
assert abs(j["types"]["nf4"]["bits_per_weight"] - 4.129) < 0.01
assert all(set(x) >= {"name", "type", "shape", "bytes"} for x in j["tensors"])
PY
fi

# Default output name, and the llama2 fixture's 172-wide down_proj falls back.
ABIN=$(cd "$BIN" && pwd); AFIX=$(cd "$FIX" && pwd)
( cd "$T" && "$ABIN/ggconvert" "$AFIX/hf/llama2-mha" 2>log ) || fail "llama2 convert"
[ -f "$T/llama2-mha-nf4.gg" ] || fail "default output name"
grep -q 'note: layers.0.mlp.down.weight: nf4 needs' "$T/log" || fail "fallback note: $(cat "$T/log")"

# Bad command lines.
expect_error "$BIN/ggconvert" -t q3 "$FIX/hf/llama3-gqa"
expect_error "$BIN/ggconvert" --threads 0 "$FIX/hf/llama3-gqa"
expect_error "$BIN/ggconvert" "$T/does-not-exist"
expect_error "$BIN/ggconvert" -o "$T/x.gg" "$FIX/hf/llama3-gqa/config.json"
expect_error "$BIN/gginfo" "$T/does-not-exist.gg"

# Bad checkpoints: no output file may remain.
mkdir -p "$T/bad"; cp "$FIX/hf/llama3-gqa/config.json" "$T/bad/"
expect_error "$BIN/ggconvert" -o "$T/bad.gg" "$T/bad"                      # no safetensors
head -c 5000 "$FIX/hf/llama3-gqa/model.safetensors" >"$T/bad/model.safetensors"
expect_error "$BIN/ggconvert" -o "$T/bad.gg" "$T/bad"                      # truncated
printf 'junk' >"$T/bad/model.safetensors"
expect_error "$BIN/ggconvert" -o "$T/bad.gg" "$T/bad"                      # junk
cp "$FIX/hf/llama3-gqa/model.safetensors" "$T/bad/"
sed 's/LlamaForCausalLM/GPT2LMHeadModel/' "$FIX/hf/llama3-gqa/config.json" >"$T/bad/config.json"
expect_error "$BIN/ggconvert" -o "$T/bad.gg" "$T/bad"                      # unknown architecture
grep -q 'GPT2LMHeadModel' "$T/err" || fail "arch not named: $(cat "$T/err")"
[ ! -e "$T/bad.gg" ] && [ ! -e "$T/bad.gg.tmp" ] || fail "failed conversion left a file"

# Bad .gg files.
: >"$T/empty.gg"; expect_error "$BIN/gginfo" "$T/empty.gg"
head -c 1000 "$T/m.gg" >"$T/trunc.gg"; expect_error "$BIN/gginfo" "$T/trunc.gg"
cp "$FIX/hf/llama3-gqa/config.json" "$T/text.gg"; expect_error "$BIN/gginfo" "$T/text.gg"
grep -q 'bad magic' "$T/err" || fail "magic: $(cat "$T/err")"
size=$(stat -c %s "$T/m.gg")
cp "$T/m.gg" "$T/flip.gg"
printf '\xAA' | dd of="$T/flip.gg" bs=1 seek=$((size - 100)) conv=notrunc status=none
expect_error "$BIN/gginfo" --verify "$T/flip.gg"
grep -q 'checksum mismatch' "$T/err" || fail "flip: $(cat "$T/err")"
cp "$T/m.gg" "$T/flip2.gg"
printf '\x00\x00' | dd of="$T/flip2.gg" bs=1 seek=200 conv=notrunc status=none
expect_error "$BIN/gginfo" "$T/flip2.gg"

# Interrupted conversion leaves no file (SIGTERM while converting a larger model).
echo "ok"
