#!/usr/bin/env bash
# t_ggmerge.sh — `ggmerge -m BASE.gg -a ADAPTER[:SCALE]... -o OUT.gg`: usage
# errors (one line, exit 1, no file); a merge of the PEFT fixture into the f32
# base (summary line, gginfo --verify, provenance keys, new fingerprint) that
# gggen runs with the same greedy output as the adapter applied unmerged;
# -v per-tensor lines; an nf4 base keeps nf4 with a warning giving the lost
# fraction, -t f16 retypes the linear weights without one; an adapter for
# the base is refused on the merged model unless --force; a mismatched
# adapter and unwritable outputs fail with one line and leave no OUT.tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GG_BIN:-bin}
FIX=${GG_FIXTURES:-tests/fixtures}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
for t in ggmerge ggconvert gginfo gggen; do [ -x "$BIN/$t" ] || fail "$BIN/$t not built"; done
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

"$BIN/ggmerge" --help >"$T/o" || fail "--help"
for f in --model --adapter --output --type --force --threads --verbose --quiet --help --version; do
    grep -q -- "$f" "$T/o" || fail "--help lacks $f"
done
"$BIN/ggmerge" --version | grep -q '^ggmerge [0-9]' || fail "--version"

"$BIN/ggconvert" -q -t f32 -o "$T/l2.gg" "$L2" 2>/dev/null || fail "convert llama2 f32"
"$BIN/ggconvert" -q -t nf4 -o "$T/l2-nf4.gg" "$L2" 2>/dev/null || fail "convert llama2 nf4"
"$BIN/ggconvert" -q -t f32 -o "$T/qw.gg" "$QW" 2>/dev/null || fail "convert qwen2"

# Usage errors.
expect_error "$BIN/ggmerge" -a "$L2/lora" -o "$T/m.gg"; err_has "^ggmerge: no base model"
expect_error "$BIN/ggmerge" -m "$T/l2.gg" -o "$T/m.gg"; err_has "^ggmerge: no adapter"
expect_error "$BIN/ggmerge" -m "$T/l2.gg" -a "$L2/lora"; err_has "^ggmerge: no output"
expect_error "$BIN/ggmerge" -m "$T/l2.gg" -a "$L2/lora" -o "$T/m.gg" -t q4; err_has "^ggmerge: -t 'q4'"
expect_error "$BIN/ggmerge" -m "$T/l2.gg" -a "$L2/lora" -o "$T/m.gg" --threads 0; err_has "--threads"
expect_error "$BIN/ggmerge" -m "$T/l2.gg" -a "$L2/lora" -o "$T/m.gg" extra; err_has "unexpected argument 'extra'"
expect_error "$BIN/ggmerge" -m "$T/l2.gg" -a "$T/none.gg" -o "$T/m.gg"; err_has "$T/none.gg"
expect_error "$BIN/ggmerge" -m "$T/none.gg" -a "$L2/lora" -o "$T/m.gg"; err_has "$T/none.gg"
[ ! -e "$T/m.gg" ] && [ ! -e "$T/m.gg.tmp" ] || fail "a usage error left a file"

# Merge into the f32 base: one summary line, a valid file, provenance.
"$BIN/ggmerge" -m "$T/l2.gg" -a "$L2/lora" -o "$T/m.gg" >"$T/out" 2>"$T/log" || fail "merge: $(cat "$T/log")"
[ ! -s "$T/out" ] || fail "printed on stdout"
[ "$(wc -l <"$T/log")" -eq 1 ] || fail "expected one line on stderr: $(cat "$T/log")"
grep -q "^ggmerge: wrote $T/m.gg (21 tensors, 14 merged from 1 adapter, 0 retyped): lost fraction worst 0.0000 .*, mean 0.0000; fingerprint [0-9a-f]\{16\}" "$T/log" ||
    fail "summary line: $(cat "$T/log")"
[ ! -e "$T/m.gg.tmp" ] || fail "m.gg.tmp left behind"
"$BIN/gginfo" --verify "$T/m.gg" >"$T/o" || fail "gginfo --verify: $(cat "$T/o")"
"$BIN/gginfo" --full "$T/m.gg" >"$T/o" || fail "gginfo"
grep -q 'merge.adapters .*llama2-mha/lora:1' "$T/o" || fail "merge.adapters: $(grep merge "$T/o")"
fp_base=$("$BIN/gginfo" "$T/l2.gg" | awk '$1 == "model.fingerprint" {print $2}')
fp_m=$("$BIN/gginfo" "$T/m.gg" | awk '$1 == "model.fingerprint" {print $2}')
[ -n "$fp_base" ] && [ "$fp_base" != "$fp_m" ] || fail "fingerprint unchanged ($fp_base)"
grep -q "merge.base_fingerprint *$fp_base" "$T/o" || fail "merge.base_fingerprint"

# gggen runs the merged model: same greedy ids as the adapter applied unmerged.
ids="1 450 496 173 17"
a=$("$BIN/gggen" -q -m "$T/m.gg" --ids "$ids" -n 12 --temp 0 --ignore-eos --print-ids) || fail "gggen merged"
b=$("$BIN/gggen" -q -m "$T/l2.gg" -a "$L2/lora" --ids "$ids" -n 12 --temp 0 --ignore-eos --print-ids) || fail "gggen -a"
[ -n "$a" ] && [ "$a" = "$b" ] || fail "merged greedy '$a' != unmerged '$b'"

# -v: one line per merged tensor.
"$BIN/ggmerge" -v -m "$T/l2.gg" -a "$L2/lora:0.5" -o "$T/mv.gg" 2>"$T/log" || fail "-v: $(cat "$T/log")"
[ "$(grep -c '^ggmerge: layers\.[01]\.\(attn\|mlp\)\.[a-z]*\.weight *f32 *-> f32 .* lost 0\.0000$' "$T/log")" -eq 14 ] ||
    fail "-v lines: $(cat "$T/log")"

# nf4 base: kept nf4, with a warning; -t f16: retyped, no warning.
"$BIN/ggmerge" -m "$T/l2-nf4.gg" -a "$L2/lora" -o "$T/m4.gg" 2>"$T/log" || fail "nf4: $(cat "$T/log")"
grep -q "^ggmerge: warning: 12 merged tensors kept the base's quantized type and lose a mean [0-9.]*% (worst [0-9.]*%)" "$T/log" ||
    fail "nf4 warning: $(cat "$T/log")"
lost=$(sed -n 's/.*lost fraction worst \([0-9.]*\).*/\1/p' "$T/log")
awk -v x="$lost" 'BEGIN { exit !(x > 0 && x <= 1) }' || fail "nf4 worst lost fraction '$lost'"
"$BIN/gginfo" --tensors "$T/m4.gg" >"$T/info" && grep -q 'layers.0.attn.q.weight *nf4' "$T/info" || fail "nf4 type not kept"
"$BIN/ggmerge" -m "$T/l2-nf4.gg" -a "$L2/lora" -o "$T/m16.gg" -t f16 2>"$T/log" || fail "-t f16: $(cat "$T/log")"
! grep -q warning "$T/log" || fail "-t f16 warned: $(cat "$T/log")"
grep -q "14 retyped" "$T/log" || fail "-t f16 summary: $(cat "$T/log")"
"$BIN/gginfo" --tensors "$T/m16.gg" >"$T/o"
[ "$(grep -c 'layers\.[01]\.\(attn\|mlp\)\.[a-z]*\.weight *f16' "$T/o")" -eq 14 ] || fail "-t f16 types: $(cat "$T/o")"
"$BIN/gggen" -q -m "$T/m4.gg" --ids "$ids" -n 4 --temp 0 --ignore-eos --print-ids >/dev/null || fail "gggen nf4 merged"

# -t nf4 from the f32 base: down (in = 172) cannot be blocked and stays f32, with a note; -q drops notes.
"$BIN/ggmerge" -m "$T/l2.gg" -a "$L2/lora" -o "$T/n4.gg" -t nf4 2>"$T/log" || fail "-t nf4: $(cat "$T/log")"
[ "$(grep -c "^ggmerge: note: layers\.[01]\.mlp\.down\.weight: kept as f32 (nf4 needs" "$T/log")" -eq 2 ] ||
    fail "-t nf4 notes: $(cat "$T/log")"
grep -q "12 retyped" "$T/log" || fail "-t nf4 summary: $(cat "$T/log")"
"$BIN/ggmerge" -q -m "$T/l2.gg" -a "$L2/lora" -o "$T/n4.gg" -t nf4 2>"$T/log" || fail "-q"
[ "$(wc -l <"$T/log")" -eq 1 ] && grep -q "^ggmerge: wrote" "$T/log" || fail "-q: $(cat "$T/log")"

# An adapter for the base, on the merged model: refused unless --force.
"$BIN/ggconvert" -q --lora "$L2/lora" --base "$T/l2.gg" -o "$T/ad.gg" 2>/dev/null || fail "adapter"
expect_error "$BIN/ggmerge" -m "$T/m.gg" -a "$T/ad.gg" -o "$T/mm.gg"; err_has "fingerprint mismatch"; err_has "--force"
[ ! -e "$T/mm.gg" ] || fail "refused merge left a file"
"$BIN/ggmerge" -q --force -m "$T/m.gg" -a "$T/ad.gg:-1" -o "$T/mm.gg" 2>"$T/log" || fail "--force: $(cat "$T/log")"
# Merging +1 then -1 gives back the base's greedy output.
c=$("$BIN/gggen" -q -m "$T/mm.gg" --ids "$ids" -n 12 --temp 0 --ignore-eos --print-ids)
d=$("$BIN/gggen" -q -m "$T/l2.gg" --ids "$ids" -n 12 --temp 0 --ignore-eos --print-ids)
[ "$c" = "$d" ] || fail "+1 then -1: '$c' != base '$d'"
[ "$a" != "$d" ] || fail "the adapter does not change the greedy output: the test above proves nothing"

# A mismatched adapter: one line, no file, even with --force.
expect_error "$BIN/ggmerge" -m "$T/qw.gg" -a "$L2/lora" -o "$T/x.gg"; err_has "shape mismatch"
expect_error "$BIN/ggmerge" --force -m "$T/qw.gg" -a "$T/ad.gg" -o "$T/x.gg"; err_has "shape mismatch"
[ ! -e "$T/x.gg" ] && [ ! -e "$T/x.gg.tmp" ] || fail "mismatch left a file"

# Unwritable outputs: a missing folder, a file as the folder, an existing folder as OUT.
expect_error "$BIN/ggmerge" -m "$T/l2.gg" -a "$L2/lora" -o "$T/nodir/o.gg"; err_has "$T/nodir/o.gg"
touch "$T/afile"
expect_error "$BIN/ggmerge" -m "$T/l2.gg" -a "$L2/lora" -o "$T/afile/o.gg"; err_has "$T/afile/o.gg"
mkdir "$T/adir"
expect_error "$BIN/ggmerge" -m "$T/l2.gg" -a "$L2/lora" -o "$T/adir"; err_has "$T/adir"
[ ! -e "$T/adir.tmp" ] && [ ! -e "$T/nodir" ] || fail "an unwritable output left OUT.tmp"
if [ "$(id -u)" != 0 ]; then # root writes into a read-only folder anyway
    mkdir "$T/ro"; chmod 555 "$T/ro"
    expect_error "$BIN/ggmerge" -m "$T/l2.gg" -a "$L2/lora" -o "$T/ro/o.gg"; err_has "$T/ro/o.gg"
    [ -z "$(ls -A "$T/ro")" ] || fail "a read-only folder got a file"
    chmod 755 "$T/ro"
fi

# --hf-out: the merged model as a Hugging Face checkpoint converts back to the same model (f32: exact)
"$BIN/ggmerge" -q -m "$T/l2.gg" -a "$L2/lora" -o "$T/hfm.gg" --hf-out "$T/hf" --hf-type f32 2>/dev/null
[ -f "$T/hf/config.json" ] && [ -f "$T/hf/model.safetensors" ] || fail "--hf-out wrote no checkpoint"
"$BIN/ggconvert" -q -t f32 -o "$T/hfback.gg" "$T/hf" >/dev/null 2>&1 || fail "the --hf-out checkpoint does not convert back"
for m in hfm hfback; do
    "$BIN/gggen" -q -m "$T/$m.gg" --ids "1 2 3 4" -n 0 --dump-logits "$T/$m.logits" >/dev/null
done
cmp -s "$T/hfm.logits" "$T/hfback.logits" || fail "--hf-out round trip changed the logits"
# --peft-out: a .gg adapter back to a PEFT folder gives the same generation
"$BIN/ggconvert" -q --lora "$L2/lora" --base "$T/l2.gg" -o "$T/l2a.gg" >/dev/null 2>&1
"$BIN/ggmerge" -m "$T/l2.gg" -a "$T/l2a.gg" --peft-out "$T/peftout" 2>/dev/null
[ -f "$T/peftout/adapter_config.json" ] && [ -f "$T/peftout/adapter_model.safetensors" ] || fail "--peft-out"
a=$("$BIN/gggen" -q -m "$T/l2.gg" -a "$T/l2a.gg" --ids "1 2 3 4" -n 8 --temp 0 --ignore-eos --print-ids)
b=$("$BIN/gggen" -q -m "$T/l2.gg" -a "$T/peftout" --ids "1 2 3 4" -n 8 --temp 0 --ignore-eos --print-ids)
[ "$a" = "$b" ] || fail "--peft-out adapter generates differently: $a / $b"
# --gguf-out: a GGUF file for llama.cpp (the format itself is checked by tests/test_gguf.c)
"$BIN/ggmerge" -q -m "$T/l2.gg" -a "$L2/lora" -o "$T/gm.gg" --gguf-out "$T/gm.gguf" --gguf-type q8_0 2>/dev/null
[ "$(head -c 4 "$T/gm.gguf")" = GGUF ] || fail "--gguf-out wrote no GGUF"
expect_error "$BIN/ggmerge" -m "$T/l2.gg" -a "$L2/lora" -o "$T/gm2.gg" --gguf-type q4; err_has "gguf-type 'q4'"
echo "ok t_ggmerge"
