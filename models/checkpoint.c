/* checkpoint.c — state.gg (checkpoint.h): the trainer's buffers as f32
 * tensors (byte blobs padded to a multiple of 4 and stored as f32 words,
 * their exact size in ckpt.bytes.NAME), the run's position and history as
 * metadata. */
#include "models/checkpoint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggfmt/ggfmt.h"

#define MAX_BLOBS 8

int gg_ckpt_save(const char *path, gg_trainer *t, const gg_ckpt_info *info, gg_err *err) {
    gg_trainer_blob b[MAX_BLOBS];
    size_t nb = gg_trainer_state(t, b, MAX_BLOBS), idx[MAX_BLOBS];
    gg_writer *w = gg_writer_new();
    if (!w) return gg_errf(err, "out of memory");
    int rc = -1;
    void *buf = NULL;
    double *hs = NULL;
    size_t nh = info->n_hist;
    if (gg_writer_set_str(w, "gg.kind", "train-state", 11, err) ||
        gg_writer_set_i64(w, "ckpt.step", info->step, err) || gg_writer_set_u64(w, "ckpt.epoch", info->epoch, err) ||
        gg_writer_set_u64(w, "ckpt.cursor", info->cursor, err) || gg_writer_set_u64(w, "ckpt.seed", info->seed, err) ||
        gg_writer_set_u64(w, "ckpt.base_fingerprint", info->base_fingerprint, err) ||
        gg_writer_set_i64(w, "ckpt.total_steps", info->total_steps, err) ||
        gg_writer_set_f64(w, "ckpt.tokens_seen", info->tokens_seen, err))
        goto out;
    hs = malloc((nh ? nh : 1) * 4 * sizeof *hs);
    if (!hs) {
        gg_errf(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nh; i++) {
        hs[4 * i] = info->hist[i].step;
        hs[4 * i + 1] = info->hist[i].loss;
        hs[4 * i + 2] = info->hist[i].lr;
        hs[4 * i + 3] = info->hist[i].is_eval;
    }
    if (gg_writer_set_arr_f64(w, "ckpt.history", hs, 4 * nh, err)) goto out;
    for (size_t i = 0; i < nb; i++) {
        char key[96];
        snprintf(key, sizeof key, "ckpt.bytes.%s", b[i].name);
        uint64_t shape[1] = {(b[i].bytes + 3) / 4};
        if (gg_writer_set_u64(w, key, b[i].bytes, err) ||
            gg_writer_add_tensor(w, b[i].name, GG_TYPE_F32, 1, shape, &idx[i], err))
            goto out;
    }
    if (gg_writer_begin(w, path, 0, err)) goto out;
    for (size_t i = 0; i < nb; i++) {
        size_t padded = (b[i].bytes + 3) & ~(size_t)3;
        buf = calloc(1, padded ? padded : 4);
        if (!buf) {
            gg_errf(err, "out of memory");
            goto out;
        }
        if (gg_trainer_state_get(t, i, buf, err) || gg_writer_write(w, idx[i], buf, padded, err)) goto out;
        free(buf);
        buf = NULL;
    }
    rc = gg_writer_finish(w, err);
out:
    free(buf);
    free(hs);
    gg_writer_free(w);
    return rc ? gg_err_prefix(err, "checkpoint '%s'", path) : 0;
}

int gg_ckpt_load(const char *path, gg_trainer *t, gg_ckpt_info *info, gg_err *err) {
    memset(info, 0, sizeof *info);
    gg_file *f = NULL;
    if (gg_file_open(&f, path, 0, err)) return -1;
    int rc = -1;
    gg_str kind;
    if (gg_meta_get_str(f, "gg.kind", &kind, err)) goto out;
    if (kind.len != 11 || memcmp(kind.ptr, "train-state", 11) != 0) {
        gg_errf(err, "%s: not a training checkpoint (gg.kind is '%.*s')", path, (int)kind.len, kind.ptr);
        goto out;
    }
    if (gg_meta_get_i64(f, "ckpt.step", &info->step, err) || gg_meta_get_u64(f, "ckpt.epoch", &info->epoch, err) ||
        gg_meta_get_u64(f, "ckpt.cursor", &info->cursor, err) || gg_meta_get_u64(f, "ckpt.seed", &info->seed, err) ||
        gg_meta_get_u64(f, "ckpt.base_fingerprint", &info->base_fingerprint, err) ||
        gg_meta_get_i64(f, "ckpt.total_steps", &info->total_steps, err) ||
        gg_meta_get_f64(f, "ckpt.tokens_seen", &info->tokens_seen, err))
        goto out;
    if (info->step < 0) {
        gg_errf(err, "%s: ckpt.step is negative", path);
        goto out;
    }
    const gg_value *hv = gg_meta_find(f, "ckpt.history");
    if (!hv || hv->type != GG_V_ARR || hv->elem != GG_V_F64 || hv->count % 4) {
        gg_errf(err, "%s: ckpt.history is missing or not a list of 4-tuples", path);
        goto out;
    }
    info->n_hist = hv->count / 4;
    info->hist = calloc(info->n_hist ? info->n_hist : 1, sizeof *info->hist);
    if (!info->hist) {
        gg_errf(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < info->n_hist; i++) {
        info->hist[i].step = gg_value_arr_f64(hv, 4 * i);
        info->hist[i].loss = gg_value_arr_f64(hv, 4 * i + 1);
        info->hist[i].lr = gg_value_arr_f64(hv, 4 * i + 2);
        info->hist[i].is_eval = gg_value_arr_f64(hv, 4 * i + 3) != 0;
    }
    gg_trainer_blob b[MAX_BLOBS];
    size_t nb = gg_trainer_state(t, b, MAX_BLOBS);
    for (size_t i = 0; i < nb; i++) {
        char key[96];
        uint64_t bytes;
        snprintf(key, sizeof key, "ckpt.bytes.%s", b[i].name);
        const gg_tensor *tn = gg_tensor_find(f, b[i].name);
        if (gg_meta_get_u64(f, key, &bytes, err)) goto out;
        if (!tn || tn->type != GG_TYPE_F32 || bytes != b[i].bytes || tn->size < bytes) {
            gg_errf(err, "%s: '%s' does not match this run (%s; the checkpoint was made with another adapter "
                         "shape or optimizer)", path, b[i].name, tn ? "size differs" : "missing");
            goto out;
        }
        if (gg_tensor_verify(tn, err) || gg_trainer_state_set(t, i, tn->data, info->step, err)) goto out;
    }
    rc = 0;
out:
    if (rc) {
        free(info->hist);
        info->hist = NULL;
        info->n_hist = 0;
    }
    gg_file_close(f);
    return rc;
}
