/* train.h — LoRA training of a frozen base model (any weight type: f32,
 * f16, bf16, q8, nf4 = QLoRA): the trainable adapter, the forward pass that
 * keeps what backward needs, the backward pass to the LoRA parameters, the
 * fused LM-head + cross-entropy in row chunks (no [tokens × vocab] tensor),
 * gradient accumulation, AdamW (f32 or 8-bit state), activation
 * checkpointing, and the trainer state a checkpoint needs.
 *
 * A micro-batch is flat: n tokens holding one or more samples back to back
 * (models/data.h builds them): ids, positions restarting per sample, the
 * flat index of each token's sample start (attention sees keys
 * k_lo[t]..t only, so samples never attend each other), and shifted targets
 * (the id the token should predict, or negative = no loss).
 *
 * Everything runs through gg_backend; the same code trains on every
 * backend. Errors: 0 / -1 with gg_err. */
#ifndef GG_TRAIN_H
#define GG_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "models/model.h"

/* Which linear layers get a LoRA module (bit 1 << gg_linear). */
#define GG_TARGETS_ALL ((1u << GG_LIN_COUNT) - 1)

typedef struct gg_train_cfg {
    /* new adapter (ignored for modules given in init) */
    int64_t r;
    double alpha;
    int rslora;
    unsigned targets;     /* bitmask of gg_linear */
    float dropout;        /* LoRA dropout on each module's input, 0 <= p < 1 */
    uint64_t seed;        /* initialisation and dropout masks */
    int64_t max_tokens;   /* most tokens in one micro-batch */
    int grad_ckpt;        /* keep only block inputs; recompute each block in backward */
    int optim_8bit;       /* AdamW moments blockwise-quantized to 8 bits */
} gg_train_cfg;

typedef struct gg_trainer gg_trainer;

/* A trainer for model m. init (may be NULL): start from these modules (an
 * existing adapter; its r and scale per module); else every target of
 * every layer gets a new module initialised as PEFT does (A uniform in
 * ±1/sqrt(in), i.e. Kaiming-uniform with a = sqrt(5); B zero). */
int gg_trainer_new(gg_trainer **out, gg_model *m, const gg_train_cfg *cfg, const gg_lora_module *init,
                   size_t n_init, gg_err *err);
void gg_trainer_free(gg_trainer *t);

/* One micro-batch forward + backward: gradients accumulate (times
 * grad_scale, typically 1 / target tokens of the whole optimizer step).
 * *loss_sum receives Σ cross-entropy over the targets (natural log), and
 * *n_targets their count. dropout_key distinguishes micro-batches (masks
 * are a function of seed, key, layer, module). */
int gg_trainer_micro(gg_trainer *t, const int32_t *ids, const int32_t *pos, const int32_t *k_lo,
                     const int32_t *targets, int64_t n, float grad_scale, uint64_t dropout_key, double *loss_sum,
                     int64_t *n_targets, gg_err *err);
/* Loss only (no dropout, no gradients). */
int gg_trainer_eval(gg_trainer *t, const int32_t *ids, const int32_t *pos, const int32_t *k_lo,
                    const int32_t *targets, int64_t n, double *loss_sum, int64_t *n_targets, gg_err *err);
/* The flat accumulated gradient (backend memory: host memory on the CPU
 * backend) and its length, for summing over data-parallel ranks. */
float *gg_trainer_grad_data(gg_trainer *t, size_t *n);
/* L2 norm of the accumulated gradient. */
int gg_trainer_grad_norm(gg_trainer *t, double *norm, gg_err *err);
/* Optimizer step with these hyper-parameters (hp->step is the trainer's
 * own count + 1 when 0), then zero the gradients. */
int gg_trainer_step(gg_trainer *t, const gg_adamw_hp *hp, gg_err *err);
int64_t gg_trainer_steps_done(const gg_trainer *t);

/* The adapter being trained, for inference sessions (gg_session_set_adapters). */
gg_lora *gg_trainer_lora(gg_trainer *t);

/* Host copies of the modules (parameters or gradients): an array of n
 * modules whose a/b point into one malloc'd block; free with
 * gg_trainer_modules_free. */
int gg_trainer_modules(gg_trainer *t, int grads, gg_lora_module **mods, size_t *n, gg_err *err);
void gg_trainer_modules_free(gg_lora_module *mods);
/* Adapter hyper-parameters as trained (for metadata). */
void gg_trainer_lora_info(const gg_trainer *t, int64_t *r, double *alpha, int *rslora, unsigned *targets);

/* Checkpoint state: the flat buffers (parameters, optimizer moments) as
 * named host blobs. gg_trainer_state lists them (name, bytes); get copies
 * them out, set copies them in (sizes must match). */
typedef struct gg_trainer_blob {
    const char *name;
    size_t bytes;
} gg_trainer_blob;
size_t gg_trainer_state(const gg_trainer *t, gg_trainer_blob *blobs, size_t cap);
int gg_trainer_state_get(gg_trainer *t, size_t i, void *host, gg_err *err);
int gg_trainer_state_set(gg_trainer *t, size_t i, const void *host, int64_t steps_done, gg_err *err);

/* Learning-rate schedules, as transformers' get_scheduler defines them:
 * the rate of optimizer step s (0-based) of total, after warmup steps of
 * linear warmup from 0 (step 0 of a warmup runs at rate 0, as in HF):
 *   constant: 1;  linear: (total − s) / (total − warmup);
 *   cosine: ½·(1 + cos(π·(s − warmup) / (total − warmup))). */
typedef enum gg_lr_schedule { GG_SCHED_CONSTANT, GG_SCHED_LINEAR, GG_SCHED_COSINE } gg_lr_schedule;
double gg_lr_at(gg_lr_schedule k, double base_lr, int64_t s, int64_t total, int64_t warmup);

/* Bytes the trainer holds on its backend, by kind (for --estimate and the
 * memory report): params, grads, optimizer state, activations + scratch. */
typedef struct gg_train_mem {
    double params, grads, optim, acts;
} gg_train_mem;
/* Predicted from the config alone (no allocation). */
void gg_train_mem_predict(gg_train_mem *mem, const gg_model_config *c, const gg_train_cfg *cfg);
void gg_trainer_mem(const gg_trainer *t, gg_train_mem *mem);

#endif
