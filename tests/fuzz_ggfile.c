/* fuzz_ggfile.c — libFuzzer harness for the .gg reader: any input must be
 * either rejected with a message or opened, walked and verified without a
 * crash, leak or undefined behaviour. Each input is tried as it is, and
 * again with its header/metadata/index checksums recomputed (and no data
 * spot check), so that mutations reach the structural validation behind the
 * checksums. Run with `make fuzz`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "ggfmt/ggfmt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const uint8_t *data, size_t size, unsigned flags) {
    gg_file *f;
    gg_err err;
    if (gg_file_open_mem(&f, data, size, "fuzz", flags, &err)) {
        if (!err.msg[0]) __builtin_trap(); /* every rejection must say why */
        return;
    }
    volatile uint64_t sink = 0;
    for (size_t i = 0; i < gg_meta_count(f); i++) {
        const gg_meta *m = gg_meta_at(f, i);
        sink += strlen(m->key);
        if (m->val.type == GG_V_STR && m->val.v.s.len) sink += (uint8_t)m->val.v.s.ptr[m->val.v.s.len - 1];
        if (m->val.type == GG_V_ARR && m->val.count) {
            uint64_t last = m->val.count - 1;
            switch (m->val.elem) {
            case GG_V_STR: sink += m->val.strs[last].len; break;
            case GG_V_BOOL: sink += (uint64_t)gg_value_arr_bool(&m->val, last); break;
            default: sink += gg_value_arr_u64(&m->val, last); break;
            }
        }
        if (gg_meta_find(f, m->key) == NULL) __builtin_trap();
    }
    for (size_t i = 0; i < gg_tensor_count(f); i++) {
        const gg_tensor *t = gg_tensor_at(f, i);
        if (gg_tensor_find(f, t->name) != t) __builtin_trap();
        if (t->size) sink += ((const uint8_t *)t->data)[t->size - 1];
        /* Dequantizing the last row must stay inside the tensor. */
        uint64_t cols = t->shape[t->ndim - 1], rows = gg_tensor_nelem(t) / cols;
        if (t->size <= (1u << 20) && rows) {
            float *row = malloc(cols * sizeof *row);
            if (row) gg_dequantize_rows(t->type, t->data, rows, cols, rows - 1, 1, row, &err);
            free(row);
        }
    }
    gg_file_verify(f, &err);
    (void)sink;
    gg_file_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    walk(data, size, 0);
    if (size < GG_HEADER_SIZE) return 0;
    uint8_t *b = malloc(size);
    if (!b) return 0;
    memcpy(b, data, size);
    uint64_t mo, ms, io, is, h;
    memcpy(&mo, b + 32, 8);
    memcpy(&ms, b + 40, 8);
    memcpy(&io, b + 56, 8);
    memcpy(&is, b + 64, 8);
    if (mo <= size && ms <= size - mo) {
        h = XXH64(b + mo, ms, 0);
        memcpy(b + 96, &h, 8);
    }
    if (io <= size && is <= size - io) {
        h = XXH64(b + io, is, 0);
        memcpy(b + 104, &h, 8);
    }
    h = XXH64(b, 120, 0);
    memcpy(b + 120, &h, 8);
    walk(b, size, GG_OPEN_NO_SPOTCHECK);
    free(b);
    return 0;
}
