/* fuzz_safetensors.c — libFuzzer harness for convert/safetensors.c: parse
 * the input as one safetensors image; on success touch the first and last
 * byte of every tensor and look every name up again. Seed corpus:
 * tests/fuzz/corpus/fuzz_safetensors. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "convert/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gg_st_set *s = NULL;
    gg_err err;
    if (gg_st_open_mem(&s, data, size, "fuzz", &err) != 0) {
        /* the message is one non-empty line */
        if (!err.msg[0] || strchr(err.msg, '\n')) __builtin_trap();
        return 0;
    }
    volatile uint8_t sink = 0;
    size_t n = gg_st_count(s);
    for (size_t i = 0; i < n; i++) {
        const gg_st_tensor *t = gg_st_at(s, i);
        const uint8_t *d = t->data;
        if (d < data || d > data + size || t->nbytes > (uint64_t)(data + size - d)) __builtin_trap();
        if (t->nbytes) sink ^= d[0] ^ d[t->nbytes - 1];
        if (t->ndim > GG_ST_MAX_DIMS || !t->name[0]) __builtin_trap();
        if (i && strcmp(gg_st_at(s, i - 1)->name, t->name) >= 0) __builtin_trap();
        if (gg_st_find(s, t->name) != t) __builtin_trap();
    }
    (void)sink;
    if (gg_st_total_bytes(s) != size) __builtin_trap();
    gg_st_close(s);
    return 0;
}
