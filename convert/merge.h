/* merge.h — merging LoRA adapters into a base .gg model (behind ggmerge):
 * W' = W + Σᵢ scaleᵢ · sᵢ · Bᵢ Aᵢ for every adapted linear weight, where sᵢ
 * is the module's own alpha/r (or alpha/√r with rslora) and scaleᵢ the
 * user's scale. A quantized weight is dequantized to f32, merged, and
 * quantized again (to its own type, or to the requested one); for every
 * merged tensor the part of the adapter's delta lost to that requantization
 * is measured: lost = ‖Q(W+Δ) − W − Δ‖ / ‖Δ‖, W being the base weight as
 * stored (dequantized) and Q the quantize/dequantize round trip of the
 * output type (0 for f32). It exceeds 1 when requantizing moves the weights
 * by more than the delta (a small delta on an nf4 base: measured 1.06 for
 * a trained-size r = 16 adapter, 0.16 for the fixtures' large random ones).
 *
 * Owns: the adapter checks for merging (shapes always; architecture and
 * fingerprint unless forced), the merged model's metadata (every key of the
 * base copied; model.fingerprint replaced by XXH3-64 over the base's
 * fingerprint and the adapters' scales and A/B values; provenance in
 * merge.adapters and merge.base_fingerprint), and the atomic write.
 *
 * Errors: 0 / -1 with a gg_err naming the file / tensor at fault (one line);
 * on failure no output file is left (OUT.tmp removed, an existing OUT
 * untouched). */
#ifndef GG_MERGE_H
#define GG_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "ggfmt/err.h"
#include "ggfmt/quant.h"

typedef struct gg_merge_adapter {
    const char *path; /* a .gg adapter file or a PEFT folder */
    float scale;      /* the user's scale (1 = as trained) */
} gg_merge_adapter;

/* One tensor whose weights changed (reported in file order). */
typedef struct gg_merge_tensor {
    const char *name;
    gg_type from, to;    /* the base's type, the written type */
    double weight_norm;  /* ‖W‖ (Frobenius), the base as stored */
    double delta_norm;   /* ‖Δ‖ */
    double lost;         /* ‖Q(W+Δ) − W − Δ‖ / ‖Δ‖ (≥ 0, may exceed 1) */
} gg_merge_tensor;

typedef struct gg_merge_opts {
    const char *base_path, *out_path;
    const gg_merge_adapter *adapters;
    size_t n_adapters;
    /* set_type: store every linear weight of the layers (merged or not) as
     * type (when its shape allows; else it keeps its own type, with a note);
     * otherwise every tensor keeps the base's type. */
    int set_type;
    gg_type type;
    /* force: merge an adapter whose architecture or base fingerprint does
     * not match the base when all its shapes do (with a note). */
    int force;
    int threads;        /* >= 1 */
    uint32_t alignment; /* 0 = the base's */
    /* Called on the calling thread, in file order, once per merged tensor
     * after all are done (may be NULL). */
    void (*on_tensor)(void *ctx, const gg_merge_tensor *t);
    /* One line per note: a forced adapter, a kept type (may be NULL). */
    void (*note)(void *ctx, const char *msg);
    void *ctx;
} gg_merge_opts;

typedef struct gg_merge_stats {
    size_t n_tensors;       /* tensors written */
    size_t n_merged;        /* tensors with a non-zero delta */
    size_t n_retyped;       /* tensors stored with another type than the base's */
    size_t n_quantized;     /* merged tensors written in a quantized type */
    double lost_max, lost_mean; /* over merged tensors; 0 when none */
    char worst[128];        /* the (first) tensor with lost_max ("" when none) */
    double qlost_max, qlost_mean; /* over the n_quantized ones; 0 when none */
    uint64_t base_fingerprint, fingerprint;
    uint64_t output_bytes;
} gg_merge_stats;

int gg_merge(const gg_merge_opts *o, gg_merge_stats *stats, gg_err *err);

#endif
