#!/usr/bin/env bash
# t_ggconvert_lora.sh — `ggconvert --lora PEFT_DIR --base BASE.gg`: the PEFT
# fixtures convert (final line: modules, r, alpha, size), the output is a
# valid .gg adapter (gginfo --verify, keys and tensors), byte-identical for
# bases of any -t from one checkpoint (same fingerprint), default output
# name; one-line errors and no file left behind for a mismatched base, bad
# flags, an adapter_model.bin, DoRA, a bias, a missing folder or base.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GG_BIN:-bin}
FIX=${GG_FIXTURES:-tests/fixtures}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
[ -x "$BIN/ggconvert" ] || fail "$BIN/ggconvert not built"
[ -x "$BIN/gginfo" ] || fail "$BIN/gginfo not built"
L2=$FIX/hf/llama2-mha; QW=$FIX/hf/qwen2-bias-tied
[ -f "$L2/lora/adapter_model.safetensors" ] || fail "fixture $L2/lora missing"

# expect_error CMD...: exit status 1, exactly one line on stderr, nothing on stdout.
expect_error() {
    local rc=0
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" -eq 1 ] || fail "'$*' exited $rc, expected 1 ($(cat "$T/err"))"
    [ "$(wc -l <"$T/err")" -eq 1 ] || fail "'$*' printed $(wc -l <"$T/err") lines on stderr: $(cat "$T/err")"
    [ ! -s "$T/out" ] || fail "'$*' printed on stdout"
}
err_has() { grep -q -- "$1" "$T/err" || fail "error lacks '$1': $(cat "$T/err")"; }

"$BIN/ggconvert" --help >"$T/o" || fail "--help"
grep -q -- '--lora PEFT_DIR' "$T/o" && grep -q -- '--base BASE.gg' "$T/o" || fail "--help lacks --lora/--base"

# Bases: f32 and nf4 of one checkpoint (same fingerprint), and qwen2.
"$BIN/ggconvert" -q -t f32 -o "$T/l2-f32.gg" "$L2" 2>/dev/null || fail "convert llama2 f32"
"$BIN/ggconvert" -q -o "$T/l2-nf4.gg" "$L2" 2>/dev/null || fail "convert llama2 nf4"
"$BIN/ggconvert" -q -o "$T/qw.gg" "$QW" 2>/dev/null || fail "convert qwen2"

"$BIN/ggconvert" --lora "$L2/lora" --base "$T/l2-f32.gg" -o "$T/a.gg" >"$T/out" 2>"$T/log" || fail "lora: $(cat "$T/log")"
[ ! -s "$T/out" ] || fail "printed on stdout"
[ "$(wc -l <"$T/log")" -eq 1 ] || fail "expected one line on stderr: $(cat "$T/log")"
grep -q "^ggconvert: wrote $T/a.gg (llama adapter, 14 target modules, r 4, alpha 8): output [0-9.]* kB" "$T/log" ||
    fail "final line: $(cat "$T/log")"
"$BIN/gginfo" --verify "$T/a.gg" >"$T/o" || fail "gginfo --verify: $(cat "$T/o")"
grep -q '^verify: *ok' "$T/o" || fail "verify: $(cat "$T/o")"
"$BIN/gginfo" --tensors "$T/a.gg" >"$T/o" || fail "gginfo --tensors"
for t in layers.0.attn.q.lora_a layers.1.mlp.down.lora_b layers.1.mlp.gate.lora_a; do
    grep -q "$t" "$T/o" || fail "tensor $t missing"
done
[ ! -e "$T/a.gg.tmp" ] || fail "a.gg.tmp left behind"

# The same adapter for the nf4 base of the same checkpoint: identical bytes.
"$BIN/ggconvert" -q --lora "$L2/lora/" --base "$T/l2-nf4.gg" -o "$T/a2.gg" 2>"$T/log" || fail "nf4 base: $(cat "$T/log")"
cmp -s "$T/a.gg" "$T/a2.gg" || fail "adapter differs between the f32 and nf4 bases"

if command -v python3 >/dev/null; then
    "$BIN/gginfo" --json "$T/a.gg" >"$T/j" || fail "gginfo --json"
    python3 - "$T/j" "$T/l2-f32.gg" "$BIN/gginfo" <<'PY' || fail "--json content"
import json, subprocess, sys
j = json.load(open(sys.argv[1]))
m = j["metadata"]
base = json.loads(subprocess.run([sys.argv[3], "--json", sys.argv[2]], capture_output=True, check=True).stdout)
assert m["gg.kind"] == "adapter" and m["general.architecture"] == "llama", m
assert m["adapter.r"] == 4 and m["adapter.alpha"] == 8 and m["adapter.rslora"] is False, m
assert m["adapter.targets"] == ["q", "k", "v", "o", "gate", "up", "down"], m["adapter.targets"]
assert m["adapter.base_fingerprint"] == base["metadata"]["model.fingerprint"]
t = {x["name"]: x for x in j["tensors"]}
assert len(t) == 28 and all(x["type"] == "f32" for x in t.values())
assert t["layers.0.mlp.down.lora_a"]["shape"] == [4, 172] and t["layers.0.mlp.down.lora_b"]["shape"] == [64, 4]
assert t["layers.1.mlp.up.lora_b"]["shape"] == [172, 4]
PY
else
    echo "skip: python3 unavailable (--json content not checked)"
fi

# Default output name, and qwen2's adapter on its own base.
BINA=$(cd "$BIN" && pwd); QWA=$(cd "$QW" && pwd)
( cd "$T" && "$BINA/ggconvert" -q --lora "$QWA/lora" --base qw.gg 2>log ) || fail "qwen2: $(cat "$T/log")"
[ -f "$T/lora-adapter.gg" ] || fail "default output name lora-adapter.gg"
grep -q '(qwen2 adapter, 14 target modules, r 4, alpha 8)' "$T/log" || fail "qwen2 line: $(cat "$T/log")"

# Errors: one line, exit 1, nothing left behind, an existing output untouched.
echo keep >"$T/keep.gg"
expect_error "$BIN/ggconvert" --lora "$L2/lora" --base "$T/qw.gg" -o "$T/keep.gg"
err_has 'shape mismatch'; err_has 'qw.gg'
[ "$(cat "$T/keep.gg")" = keep ] && [ ! -e "$T/keep.gg.tmp" ] || fail "failed conversion touched the output"
expect_error "$BIN/ggconvert" --lora "$L2/lora" -o "$T/x.gg"
err_has 'needs --base'
expect_error "$BIN/ggconvert" --base "$T/l2-f32.gg" "$L2"
err_has '--base applies only with --lora'
expect_error "$BIN/ggconvert" --lora "$L2/lora" --base "$T/l2-f32.gg" -t q8 -o "$T/x.gg"
err_has 'does not apply to --lora'
expect_error "$BIN/ggconvert" --lora "$L2/lora" --base "$T/l2-f32.gg" -o "$T/x.gg" "$L2"
err_has 'no HF_DIR'
expect_error "$BIN/ggconvert" --lora "$T/no-such-dir" --base "$T/l2-f32.gg" -o "$T/x.gg"
err_has 'no-such-dir'
expect_error "$BIN/ggconvert" --lora "$L2/lora" --base "$T/no-such.gg" -o "$T/x.gg"
err_has 'no-such.gg'
expect_error "$BIN/ggconvert" --lora "$L2/lora" --base "$T/a.gg" -o "$T/x.gg"   # an adapter is no base
err_has "gg.kind is 'adapter'"
expect_error "$BIN/ggconvert" --lora "$L2" --base "$T/l2-f32.gg" -o "$T/x.gg"  # a model folder
err_has 'no adapter_config.json'

mkdir "$T/bin"; cp "$L2/lora/adapter_config.json" "$T/bin/"; printf 'PK' >"$T/bin/adapter_model.bin"
expect_error "$BIN/ggconvert" --lora "$T/bin" --base "$T/l2-f32.gg" -o "$T/x.gg"
err_has 'convert to safetensors'
mkdir "$T/dora"; ln -s "$(cd "$L2/lora" && pwd)/adapter_model.safetensors" "$T/dora/"
sed 's/"use_dora": false/"use_dora": true/' "$L2/lora/adapter_config.json" >"$T/dora/adapter_config.json"
grep -q '"use_dora": true' "$T/dora/adapter_config.json" || fail "sed use_dora"
expect_error "$BIN/ggconvert" --lora "$T/dora" --base "$T/l2-f32.gg" -o "$T/x.gg"
err_has 'DoRA'
sed 's/"bias": "none"/"bias": "all"/' "$L2/lora/adapter_config.json" >"$T/dora/adapter_config.json"
expect_error "$BIN/ggconvert" --lora "$T/dora" --base "$T/l2-f32.gg" -o "$T/x.gg"
err_has "'bias' is 'all'"
[ ! -e "$T/x.gg" ] && [ ! -e "$T/x.gg.tmp" ] || fail "a failed conversion left a file"
echo "ok"
