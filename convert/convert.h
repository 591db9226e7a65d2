/* convert.h — Hugging Face checkpoint folder → .gg model file: the whole
 * conversion behind ggconvert (config, tensors, type choice, metadata,
 * multithreaded quantization, atomic write).
 *
 * Errors: 0 / -1 with gg_err; on failure no output file is left (OUT.tmp is
 * removed, an existing OUT is untouched). */
#ifndef GG_CONVERT_H
#define GG_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "ggfmt/err.h"
#include "ggfmt/quant.h"

typedef enum gg_type_rule {
    GG_RULE_DEFAULT, /* embeddings: -t if it is a float type, else the source type */
    GG_RULE_SOURCE,  /* the checkpoint's own float type */
    GG_RULE_TYPE,    /* the given type */
} gg_type_rule;

typedef struct gg_convert_opts {
    const char *hf_dir;
    const char *out_path;
    gg_type type;              /* linear weights */
    gg_type_rule embed_rule;   /* embeddings and lm_head */
    gg_type embed_type;
    gg_type_rule fallback_rule; /* linear weights whose shape does not fit type */
    gg_type fallback_type;
    int threads;               /* >= 1 */
    uint32_t alignment;        /* 0 = default */
    /* Called from the main thread about 5 times a second while tensors
     * convert (may be NULL). */
    void (*progress)(void *ctx, uint64_t done_bytes, uint64_t total_bytes);
    /* Called once per tensor stored with the fallback type (may be NULL). */
    void (*note)(void *ctx, const char *tensor, const char *why, gg_type stored_as);
    void *ctx;
} gg_convert_opts;

typedef struct gg_convert_stats {
    size_t n_tensors;
    uint64_t input_bytes;  /* bytes of the safetensors files */
    uint64_t output_bytes; /* size of the written .gg */
    size_t n_fallback;     /* linear weights stored with the fallback type */
    uint64_t fingerprint;
} gg_convert_stats;

int gg_convert(const gg_convert_opts *o, gg_convert_stats *stats, gg_err *err);

#endif
