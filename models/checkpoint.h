/* checkpoint.h — a training run's resumable state as one .gg file
 * (state.gg, docs/FORMAT.md §9): the trainer's flat buffers (LoRA
 * parameters, AdamW moments f32 or 8-bit), the optimizer step, the data
 * position (epoch, cursor), the seed, and the loss history the progress
 * plot needs. Written atomically (gg_writer: PATH.tmp, fsync, rename).
 *
 * Resuming restores exactly these bytes, so a run of N steps and a run of
 * k steps + resume + N−k steps produce byte-identical adapters (dropout
 * masks and the data order are functions of the seed, the step and the
 * epoch only). Errors: 0 / -1 with gg_err naming the file and key. */
#ifndef GG_CHECKPOINT_H
#define GG_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "models/train.h"

/* One point of the loss history. */
typedef struct gg_hist {
    double step, loss, lr; /* eval rows: loss = eval loss, lr unused */
    int is_eval;
} gg_hist;

typedef struct gg_ckpt_info {
    int64_t step;           /* optimizer steps done */
    uint64_t epoch, cursor; /* data position (models/data.h gg_batcher_state) */
    uint64_t seed;
    uint64_t base_fingerprint;
    int64_t total_steps;
    double tokens_seen;
    gg_hist *hist; /* load: malloc'd, the caller frees */
    size_t n_hist;
} gg_ckpt_info;

int gg_ckpt_save(const char *path, gg_trainer *t, const gg_ckpt_info *info, gg_err *err);
/* Check the file against the trainer (same buffers and sizes) and restore. */
int gg_ckpt_load(const char *path, gg_trainer *t, gg_ckpt_info *info, gg_err *err);

#endif
