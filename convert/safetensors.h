/* safetensors.h — reading Hugging Face safetensors checkpoints: one file
 * or a sharded set (model.safetensors.index.json), memory-mapped.
 *
 * Owns: header parsing and validation (8-byte length, JSON header, dtypes,
 * shapes, data_offsets: overlaps, holes, out-of-range, truncation, size vs
 * shape, duplicate names, bad UTF-8), shard index resolution. Tensor data is
 * used in place from the mapping.
 *
 * Errors: 0 / -1 with a gg_err naming the file and the tensor/field/byte
 * offset at fault. */
#ifndef GG_SAFETENSORS_H
#define GG_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "ggfmt/err.h"
#include "ggfmt/quant.h"

#define GG_ST_MAX_DIMS 8

typedef struct gg_st_tensor {
    const char *name;  /* NUL-terminated, owned by the set */
    char dtype[16];    /* dtype string as in the file, e.g. "BF16" */
    int type;          /* GG_TYPE_F32 / F16 / BF16, or -1 for any other dtype */
    uint32_t ndim;
    uint64_t shape[GG_ST_MAX_DIMS];
    const void *data;  /* into the mapping of its file */
    uint64_t nbytes;
    const char *file;  /* path of the file holding it */
} gg_st_tensor;

typedef struct gg_st_set gg_st_set;

/* An HF folder: model.safetensors.index.json if present (all shards it
 * names), else model.safetensors. */
int gg_st_open_dir(gg_st_set **out, const char *dir, gg_err *err);
/* One .safetensors file. */
int gg_st_open_file(gg_st_set **out, const char *path, gg_err *err);
/* One safetensors image in memory (fuzzing, tests); buf must outlive it. */
int gg_st_open_mem(gg_st_set **out, const void *buf, size_t len, const char *label, gg_err *err);
void gg_st_close(gg_st_set *s);

size_t gg_st_count(const gg_st_set *s);
const gg_st_tensor *gg_st_at(const gg_st_set *s, size_t i); /* sorted by name */
const gg_st_tensor *gg_st_find(const gg_st_set *s, const char *name);
/* Total bytes of the files mapped (input size for progress/throughput). */
uint64_t gg_st_total_bytes(const gg_st_set *s);

#endif
