/* fuzz_ggfile.c — libFuzzer harness for the .gg reader: any input must be
 * either rejected with a message or opened, walked and verified without a
 * crash, leak or undefined behaviour. Run with `make fuzz`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ggfmt/ggfmt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gg_file *f;
    gg_err err;
    if (gg_file_open_mem(&f, data, size, "fuzz", 0, &err)) {
        if (!err.msg[0]) __builtin_trap(); /* every rejection must say why */
        return 0;
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
        /* Dequantizing the first row must stay inside the tensor. */
        if (t->ndim >= 1 && t->size <= (1u << 20)) {
            uint64_t cols = t->shape[t->ndim - 1], rows = gg_tensor_nelem(t) / cols;
            float *row = malloc(cols * sizeof *row);
            if (row && rows) gg_dequantize_rows(t->type, t->data, rows, cols, rows - 1, 1, row, &err);
            free(row);
        }
    }
    gg_file_verify(f, &err);
    (void)sink;
    gg_file_close(f);
    return 0;
}
