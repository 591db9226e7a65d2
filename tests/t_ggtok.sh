#!/usr/bin/env bash
# t_ggtok.sh — ggtok from the command line: help, version, plain and --jsonl
# encoding and decoding (round trips), fields passed through, --no-special,
# --skip-special, --threads, a .gg model as the source, one-line errors that
# name the stdin line, a 10 MB line, NUL bytes and invalid UTF-8; then, when
# node, the fetched tokenizers (tests/fetch-tokenizers.sh) and a reference
# (tests/ref/tokenize_ref.mjs) are available, parity with Hugging Face on
# the corpus of tests/gen_corpus.mjs (and on invalid UTF-8 lines, read as
# String::from_utf8_lossy does) for llama2, llama3, qwen3 and gemma3:
# "# NAME: N/N identical". What is unavailable is skipped ("skip: ...").
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GG_BIN:-bin}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "skip: $*"; }
TOK="$BIN/ggtok"
[ -x "$TOK" ] || fail "$TOK not built"

# find_tok NAME: the folder holding NAME's tokenizer.json, or nothing.
find_tok() {
    local d
    for d in tests/fixtures/tokenizers/$1 ../shared/fixtures/tokenizers/$1 build/npm/tokenizers/$1; do
        if [ -s "$d/tokenizer.json" ]; then echo "$d"; return 0; fi
    done
    return 0
}

# expect_error PATTERN CMD... (stdin from $T/in): exit status 1, exactly one
# line on stderr, matching PATTERN.
expect_error() {
    local pat=$1 rc=0; shift
    "$@" <"$T/in" >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" -eq 1 ] || fail "'$*' exited $rc, expected 1 ($(head -c 300 "$T/err"))"
    [ "$(wc -l <"$T/err")" -eq 1 ] || fail "'$*' printed $(wc -l <"$T/err") lines on stderr: $(head -c 300 "$T/err")"
    grep -q -- "$pat" "$T/err" || fail "'$*': stderr '$(cat "$T/err")' lacks '$pat'"
}
# run_ok NAME CMD... (stdin from $T/in, stdout to $T/NAME)
run_ok() {
    local name=$1; shift
    "$@" <"$T/in" >"$T/$name" 2>"$T/err" || fail "'$*' failed: $(head -c 300 "$T/err")"
}
# same FILE TEXT: FILE holds exactly TEXT and a newline.
same() { [ "$(cat "$1")" = "$2" ] || fail "got '$(head -c 300 "$1")', expected '$2'"; }

{ "$TOK" --help >"$T/o" && grep -q '^usage: ggtok' "$T/o"; } || fail "--help"
{ "$TOK" --version >"$T/o" && grep -q '^ggtok [0-9]' "$T/o"; } || fail "--version"
: >"$T/in"
expect_error 'missing -m' "$TOK"
expect_error 'unknown option' "$TOK" --frobnicate -m x
expect_error 'threads' "$TOK" --threads 0 -m x
expect_error 'needs an argument' "$TOK" -m
expect_error '^ggtok: ' "$TOK" -m "$T/does-not-exist"
echo '{}' >"$T/bad.json"
expect_error '^ggtok: ' "$TOK" -m "$T/bad.json"

L3=$(find_tok llama3); L2=$(find_tok llama2); Q3=$(find_tok qwen3)
if [ -z "$L3" ]; then
    skip "no llama3 tokenizer (tests/fixtures/tokenizers/llama3): nothing more to test"
    exit 0
fi

# Plain mode: a last line without '\n' counts; empty lines stay.
printf 'Hello world\n\nHello world' >"$T/in"
run_ok o "$TOK" -m "$L3"
same "$T/o" "$(printf '9906 1917\n\n9906 1917')"
[ "$(wc -l <"$T/o")" -eq 3 ] || fail "3 lines expected"
"$TOK" -m "$L3" -v <"$T/in" >/dev/null 2>"$T/err" || fail "-v"
grep -q '^ggtok: 3 lines, 4 tokens encoded in .* tokens/s' "$T/err" || fail "-v summary: $(cat "$T/err")"
: >"$T/in"; run_ok o "$TOK" -m "$L3"; [ ! -s "$T/o" ] || fail "empty input gives output"
printf '9906 1917\n128000 9906\n\n  9906\t1917  \n' >"$T/in"
run_ok o "$TOK" -m "$L3" --decode
same "$T/o" "$(printf 'Hello world\n<|begin_of_text|>Hello\n\nHello world')"
run_ok o "$TOK" -m "$L3" --decode --skip-special
same "$T/o" "$(printf 'Hello world\nHello\n\nHello world')"
# Plain --decode writes a newline inside the text as \n.
printf '9906 198 1917\n' >"$T/in"; run_ok o "$TOK" -m "$L3" --decode; same "$T/o" 'Hello\n world'

# --jsonl: "text" -> "ids" in place, other fields in order; an old "ids" is dropped.
printf '%s\n' '{"id":7,"text":"Hello world","meta":{"a":[1,2.5,"é"]},"ids":"old","z":null}' '' >"$T/in"
run_ok o "$TOK" -m "$L3" --jsonl
same "$T/o" "$(printf '%s\n' '{"id":7,"ids":[9906,1917],"meta":{"a":[1,2.5,"é"]},"z":null}' '')"
# Passed-through members are copied byte for byte (spacing, numbers, escapes).
printf '%s\n' ' { "text" : "a" , "x":0.1, "big": 12345678901234567890, "s":"\u00e9\/", "n": { "a" : [1, "}]\"", {}] } } ' >"$T/in"
run_ok o "$TOK" -m "$L3" --jsonl
same "$T/o" '{"ids":[64],"x":0.1,"big":12345678901234567890,"s":"\u00e9\/","n":{ "a" : [1, "}]\"", {}] }}'
printf '%s\n' '{"x":1,"ids":[128000,9906,1917],"text":"old","y":[]}' >"$T/in"
run_ok o "$TOK" -m "$L3" --jsonl --decode
same "$T/o" '{"x":1,"text":"<|begin_of_text|>Hello world","y":[]}'
run_ok o "$TOK" -m "$L3" --jsonl --decode --skip-special
same "$T/o" '{"x":1,"text":"Hello world","y":[]}'
printf '%s\n' '{"text":"a\u0000b\nc\t\"d\" \\ é 😀"}' >"$T/in"
run_ok o "$TOK" -m "$L3" --jsonl
cp "$T/o" "$T/in"; run_ok o2 "$TOK" -m "$L3" --jsonl --decode
same "$T/o2" '{"text":"a\u0000b\nc\t\"d\" \\ é 😀"}'

# Special tokens: llama2 adds <s> (id 1) unless --no-special.
if [ -n "$L2" ]; then
    printf 'Hello world\n' >"$T/in"
    run_ok o "$TOK" -m "$L2"; same "$T/o" '1 22557 1526'
    run_ok o "$TOK" -m "$L2" --no-special; same "$T/o" '22557 1526'
    printf '%s\n' '{"text":"Hello world"}' >"$T/in"
    run_ok o "$TOK" -m "$L2" --jsonl --no-special; same "$T/o" '{"ids":[22557,1526]}'
    printf '1 22557 1526 2\n' >"$T/in"
    run_ok o "$TOK" -m "$L2" --decode --skip-special; same "$T/o" 'Hello world'
else
    skip "no llama2 tokenizer: special-token tests"
fi

# Errors name the stdin line; the lines before it are written.
printf '%s\n' '{"text":"Hello world"}' '{"text": bad}' '{"text":"x"}' >"$T/in"
expect_error '^ggtok: stdin line 2: ' "$TOK" -m "$L3" --jsonl
same "$T/out" '{"ids":[9906,1917]}'
printf '%s\n' '{"text":"a"}' '{"txt":"a"}' >"$T/in"; expect_error 'stdin line 2: no "text" field' "$TOK" -m "$L3" --jsonl
printf '%s\n' '{"text":3}' >"$T/in"; expect_error 'stdin line 1: "text" is not a string' "$TOK" -m "$L3" --jsonl
printf '%s\n' '[1,2]' >"$T/in"; expect_error 'stdin line 1: expected a JSON object' "$TOK" -m "$L3" --jsonl
printf '%s\n' '{"text":"a","text":"b"}' >"$T/in"; expect_error 'stdin line 1: bad JSON.*duplicate' "$TOK" -m "$L3" --jsonl
printf '%s\n' '{"ids":[1,2.5]}' >"$T/in"; expect_error 'stdin line 1: ids\[1\] is not a token id' "$TOK" -m "$L3" --jsonl --decode
printf '%s\n' '{"ids":"1 2"}' >"$T/in"; expect_error 'stdin line 1: "ids" is not an array' "$TOK" -m "$L3" --jsonl --decode
printf '%s\n' '{"ids":[9906]}' '{"ids":[9906,999999999]}' >"$T/in"
expect_error 'stdin line 2: .*999999999' "$TOK" -m "$L3" --jsonl --decode
printf '9906\n\n1917 999999999\n' >"$T/in"; expect_error 'stdin line 3: .*999999999' "$TOK" -m "$L3" --decode
printf '9906 12x\n' >"$T/in"; expect_error "stdin line 1: '12x' is not a token id" "$TOK" -m "$L3" --decode
printf '%s\n' '-5' >"$T/in"; expect_error "stdin line 1: '-5' is not a token id" "$TOK" -m "$L3" --decode

# Plain round trip (byte-level tokenizers give back every line exactly).
{
    printf 'Hello world\n  leading and trailing  \n\ttabs\tand\r\n'
    printf 'café naïve 東京 😀👩‍💻 🇫🇷 ﷽ x\xe2\x80\x8by\n'
    printf 'a\\nb \\\\ backslashes\n<|begin_of_text|> and <|im_start|> as text\n'
    printf '%s\n' "int main(void) { return 0; }" "1234567890 3.14159 -42" "      "
} >"$T/in"
for d in "$L3" "$Q3"; do
    [ -n "$d" ] || continue
    run_ok ids "$TOK" -m "$d" --no-special
    cp "$T/in" "$T/text"; cp "$T/ids" "$T/in"
    run_ok back "$TOK" -m "$d" --decode
    cmp -s "$T/back" "$T/text" || fail "plain round trip through $d: $(diff "$T/back" "$T/text" | head -5)"
    cp "$T/text" "$T/in"
done

# NUL bytes and invalid UTF-8 in plain mode: no crash, one line per line.
if command -v node >/dev/null 2>&1; then
    node tests/gen_corpus.mjs --invalid-utf8 >"$T/bad"
else
    printf 'a\x80b\n\xc3\n\xe2\x82A\n\xed\xa0\x80\n\xff\xfe\n\x00\nHi\x00there\n\xf0\x9f\x98\n' >"$T/bad"
fi
for d in "$L3" "$L2" "$Q3"; do
    [ -n "$d" ] || continue
    cp "$T/bad" "$T/in"
    run_ok o "$TOK" -m "$d"
    [ "$(wc -l <"$T/o")" -eq "$(wc -l <"$T/bad")" ] || fail "invalid UTF-8 through $d: line count"
    cp "$T/o" "$T/in"; run_ok o2 "$TOK" -m "$d" --decode
done

# A 10 MB line, encoded and decoded back.
words=(the quick brown fox jumps over lazy dog tokenizer 2026 "don't" café 東京 "  " "(x)")
for i in $(seq 1 4000); do printf '%s ' "${words[i % 15]}" "${words[i * 7 % 15]}"; done >"$T/chunk"
while [ "$(stat -c %s "$T/chunk")" -lt 10485760 ]; do cat "$T/chunk" "$T/chunk" >"$T/c2"; mv "$T/c2" "$T/chunk"; done
head -c 10485760 "$T/chunk" | tr -d '\n' >"$T/in"
run_ok big "$TOK" -m "$L3" --no-special
[ "$(wc -l <"$T/big")" -eq 1 ] || fail "10 MB line: not one line out"
{ cat "$T/in"; echo; } >"$T/bigtext"; cp "$T/big" "$T/in"
run_ok bigback "$TOK" -m "$L3" --decode
cmp -s "$T/bigback" "$T/bigtext" || fail "10 MB line: round trip differs"

# A .gg model as the source: the tokenizer stored by ggconvert.
if [ -x "$BIN/ggconvert" ] && [ -d tests/fixtures/hf/llama3-gqa ]; then
    cp -r tests/fixtures/hf/llama3-gqa "$T/hf"
    cp "$L3/tokenizer.json" "$L3/tokenizer_config.json" "$T/hf/"
    "$BIN/ggconvert" -q -t q8 -o "$T/m.gg" "$T/hf" 2>"$T/err" || fail "ggconvert: $(cat "$T/err")"
    printf 'Hello world\n' >"$T/in"
    run_ok o "$TOK" -m "$T/m.gg"; same "$T/o" '9906 1917'
    run_ok o "$TOK" -m "$L3/tokenizer.json"; same "$T/o" '9906 1917'
fi

# Everything below needs node.
if ! command -v node >/dev/null 2>&1; then
    skip "node not found: JSONL corpus round trip, --threads and parity with Hugging Face"
    exit 0
fi
node tests/gen_corpus.mjs >"$T/corpus.jsonl"
n=$(wc -l <"$T/corpus.jsonl")
# The invalid UTF-8 lines as Rust's String::from_utf8_lossy (= the WHATWG
# decoder: one U+FFFD per maximal invalid subpart) reads them.
node -e 'const b = require("fs").readFileSync(process.argv[1]); const d = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
let s = 0; for (let i = 0; i < b.length; i++) if (b[i] === 10) { process.stdout.write(JSON.stringify({ text: d.decode(b.subarray(s, i)) }) + "\n"); s = i + 1; }' \
    "$T/bad" >"$T/bad.jsonl"
nb=$(wc -l <"$T/bad.jsonl")

# Compare JSONL files field by field: cmp_jsonl A FIELD_A B FIELD_B [A FIELD_A B FIELD_B]...
# prints "OK/N" (and the first differing lines) for each quadruple, one a line.
cat >"$T/cmp.mjs" <<'EOF'
import fs from 'node:fs';
const argv = process.argv.slice(2);
for (let q = 0; q + 3 < argv.length; q += 4) {
  const [a, fa, b, fb] = argv.slice(q, q + 4);
  const la = fs.readFileSync(a, 'utf8').split('\n'), lb = fs.readFileSync(b, 'utf8').split('\n');
  if (la.length !== lb.length) { console.log(`0/${la.length - 1} (line counts ${la.length - 1} and ${lb.length - 1})`); continue; }
  let ok = 0; const bad = [];
  for (let i = 0; i < la.length - 1; i++) {
    const x = la[i] ? JSON.parse(la[i])[fa] : undefined, y = lb[i] ? JSON.parse(lb[i])[fb] : undefined;
    if (JSON.stringify(x) === JSON.stringify(y)) ok++; else bad.push(i + 1);
  }
  console.log(`${ok}/${la.length - 1}` + (bad.length ? ` (first differing lines: ${bad.slice(0, 8).join(' ')})` : ''));
}
EOF
cmp_jsonl() { node "$T/cmp.mjs" "$@"; }
# Plain ids (one line of ids per line) as JSONL {"ids": [...]}.
plain_to_jsonl() {
    node -e 'for (const l of require("fs").readFileSync(0, "utf8").split("\n").slice(0, -1))
  process.stdout.write(JSON.stringify({ ids: l ? l.split(" ").map(Number) : [] }) + "\n");'
}

# JSONL round trip through llama3 of the whole corpus, and --threads.
cp "$T/corpus.jsonl" "$T/in"
run_ok ids "$TOK" -m "$L3" --jsonl --no-special
run_ok ids4 "$TOK" -m "$L3" --jsonl --no-special --threads 4
cmp -s "$T/ids" "$T/ids4" || fail "--threads 4 output differs from --threads 1"
cp "$T/ids" "$T/in"; run_ok back "$TOK" -m "$L3" --jsonl --decode
r=$(cmp_jsonl "$T/back" text "$T/corpus.jsonl" text)
[ "$r" = "$n/$n" ] || fail "llama3 JSONL round trip: $r"

# Parity with Hugging Face.
bash tests/fetch-tokenizers.sh
# The reference: $GG_TOK_REF_IMPL (rust or js), by default the Rust library
# when its Node bindings are installed, else the JS port.
impl=${GG_TOK_REF_IMPL:-}
if [ -z "$impl" ]; then
    impl=rust
    node tests/ref/tokenize_ref.mjs --impl rust "$L3" </dev/null >/dev/null 2>&1 || impl=js
fi
if ! node tests/ref/tokenize_ref.mjs --impl "$impl" "$L3" </dev/null >/dev/null 2>"$T/err"; then
    skip "no reference tokenizer: $(head -n 1 "$T/err")"
    exit 0
fi
echo "# reference: tokenize_ref.mjs --impl $impl ($n corpus lines)"
names=()
for name in llama2 llama3 qwen3 gemma3; do
    d=$(find_tok "$name")
    if [ -z "$d" ]; then skip "$name: no tokenizer (tests/fetch-tokenizers.sh could not fetch it)"; continue; fi
    names+=("$name")
    { node tests/ref/tokenize_ref.mjs --impl "$impl" "$d" <"$T/corpus.jsonl" >"$T/ref-$name" 2>"$T/referr-$name"
      node tests/ref/tokenize_ref.mjs --impl "$impl" "$d" <"$T/bad.jsonl" >"$T/refbad-$name" 2>>"$T/referr-$name"; } &
done
wait
bad=0
for name in "${names[@]}"; do
    d=$(find_tok "$name")
    [ -s "$T/ref-$name" ] || fail "$name: reference failed: $(head -n 3 "$T/referr-$name")"
    "$TOK" -m "$d" --jsonl --no-special <"$T/corpus.jsonl" >"$T/our-$name" 2>"$T/err" || fail "$name: $(cat "$T/err")"
    "$TOK" -m "$d" --jsonl <"$T/corpus.jsonl" >"$T/ours-$name" 2>"$T/err" || fail "$name: $(cat "$T/err")"
    "$TOK" -m "$d" --jsonl --decode --skip-special <"$T/ref-$name" >"$T/dec-$name" 2>"$T/err" || fail "$name: --decode: $(cat "$T/err")"
    "$TOK" -m "$d" --no-special <"$T/bad" >"$T/ourbad-$name" 2>"$T/err" || fail "$name: $(cat "$T/err")"
    plain_to_jsonl <"$T/ourbad-$name" >"$T/ourbad-$name.jsonl"
    cmp_jsonl "$T/our-$name" ids "$T/ref-$name" ids "$T/ours-$name" ids "$T/ref-$name" ids_special \
        "$T/dec-$name" text "$T/ref-$name" decoded "$T/ourbad-$name.jsonl" ids "$T/refbad-$name" ids >"$T/cmp"
    { read -r a; read -r b; read -r c; read -r u; } <"$T/cmp"
    echo "# $name: $a identical"
    echo "#   with special tokens: $b; decoded: $c; invalid UTF-8 lines (plain mode): $u"
    for r in "$a" "$b" "$c"; do [ "${r%% *}" = "$n/$n" ] || bad=1; done
    [ "${u%% *}" = "$nb/$nb" ] || bad=1
done
[ "$bad" -eq 0 ] || fail "ids differ from the reference"
echo "ok"
