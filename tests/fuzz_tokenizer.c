/* fuzz_tokenizer.c — libFuzzer harness for the tokenizer: any bytes must
 * encode (invalid UTF-8 included) without a crash, leak or undefined
 * behaviour; the ids must decode; and the input read as int32 ids must
 * either decode or be refused with a message (out-of-range ids).
 * The tokenizer is loaded once from $GG_FUZZ_TOKENIZER (a tokenizer.json or
 * an HF folder), default tests/fixtures/tokenizers/llama2/tokenizer.json.
 *
 *   clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *     tests/fuzz_tokenizer.c models/tok*.c ggfmt/[a-z]*.c -ljansson -lpcre2-8 -lutf8proc -lm -o /tmp/fz
 *   GG_FUZZ_TOKENIZER=../shared/fixtures/tokenizers/llama3 /tmp/fz -max_len=4096 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gg_tokenizer *tok;

static const gg_tokenizer *get_tokenizer(void) {
    if (tok) return tok;
    const char *path = getenv("GG_FUZZ_TOKENIZER");
    if (!path || !*path) path = "tests/fixtures/tokenizers/llama2/tokenizer.json";
    gg_err err;
    if (gg_tokenizer_load_path(&tok, path, &err)) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        abort();
    }
    return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const gg_tokenizer *t = get_tokenizer();
    gg_err err;
    for (int add_special = 0; add_special < 2; add_special++) {
        int32_t *ids = NULL;
        size_t n = 0;
        err.msg[0] = 0;
        if (gg_tokenizer_encode(t, (const char *)data, size, add_special, &ids, &n, &err)) {
            if (!err.msg[0]) __builtin_trap();
            continue;
        }
        for (int skip = 0; skip < 2; skip++) {
            char *text = NULL;
            size_t len = 0;
            if (gg_tokenizer_decode(t, ids, n, skip, &text, &len, &err)) __builtin_trap(); /* encode's ids are valid */
            if (text[len] != 0) __builtin_trap();
            free(text);
        }
        free(ids);
    }
    /* the bytes as int32 ids: out-of-range ids are an error naming the id */
    size_t nid = size / 4;
    int32_t *ids = malloc((nid ? nid : 1) * sizeof *ids);
    if (!ids) return 0;
    if (nid) memcpy(ids, data, nid * 4);
    size_t vs = gg_tokenizer_vocab_size(t);
    /* fold every other value into range so the decoders see real tokens too */
    for (size_t i = 0; i < nid; i += 2)
        if (vs) ids[i] = (int32_t)((uint32_t)ids[i] % (uint32_t)vs);
    int bad = 0;
    for (size_t i = 0; i < nid; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= vs || !gg_tokenizer_piece(t, ids[i])) bad = 1;
    for (int skip = 0; skip < 2; skip++) {
        char *text = NULL;
        size_t len = 0;
        err.msg[0] = 0;
        int rc = gg_tokenizer_decode(t, ids, nid, skip, &text, &len, &err);
        if (rc != -bad) __builtin_trap();
        if (rc && (!err.msg[0] || text)) __builtin_trap();
        if (!rc && text[len] != 0) __builtin_trap();
        free(text);
    }
    free(ids);
    return 0;
}
