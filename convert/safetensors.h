/* safetensors.h — reading Hugging Face safetensors checkpoints: one file
 * or a sharded set (model.safetensors.index.json), memory-mapped; and
 * writing one .safetensors file (atomically).
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

/* ---- writing ------------------------------------------------------------- */

typedef struct gg_st_wtensor {
    const char *name;  /* non-empty UTF-8, unique, not "__metadata__" */
    const char *dtype; /* a safetensors dtype: "F32", "F16", "BF16", "I64", ... */
    uint32_t ndim;     /* 0..GG_ST_MAX_DIMS (0: a scalar) */
    uint64_t shape[GG_ST_MAX_DIMS];
    const void *data; /* product(shape) x dtype size bytes, little-endian */
} gg_st_wtensor;

/* Write one .safetensors file at path: u64 LE header length, the JSON
 * header ("__metadata__" first when n_meta > 0, then the tensors sorted by
 * name, each {"dtype","shape","data_offsets"}) padded with spaces to a
 * multiple of 8 bytes, then the tensors' bytes contiguous in that order (as
 * the Python and Rust libraries write them). meta holds n_meta key/value
 * pairs: meta[2i] = key, meta[2i+1] = value. Atomic (gg_write_atomic). */
int gg_st_write(const char *path, const gg_st_wtensor *t, size_t n, const char *const *meta, size_t n_meta,
                gg_err *err);

/* Write the n byte ranges parts[i] (lens[i] bytes each) one after another to
 * path atomically: PATH.tmp, fsync, rename, fsync of the directory; on
 * failure PATH.tmp is removed and PATH is untouched. */
int gg_write_atomic(const char *path, const void *const *parts, const size_t *lens, size_t n, gg_err *err);

/* A folder written all or nothing (a Hugging Face checkpoint, a PEFT
 * adapter). gg_dir_stage makes DIR's parent folders if needed and a fresh
 * sibling DIR.tmp-XXXXXX (into stage, cap bytes) to write the files in;
 * gg_dir_commit moves them into DIR only once all are written — renaming
 * the stage to DIR when DIR does not exist, else each file into it,
 * replacing files of the same name (renames need no free space) — and
 * gg_dir_abort removes the stage and what is in it. A failure before the
 * commit leaves DIR as it was. */
int gg_dir_stage(const char *dir, char *stage, size_t cap, gg_err *err);
int gg_dir_commit(const char *stage, const char *dir, gg_err *err);
void gg_dir_abort(const char *stage);
/* The stage folder being written now ("" when none): a tool's signal
 * handler removes it with gg_dir_abort_signal (async-signal-safe: no
 * malloc, only open / getdents / unlinkat / rmdir). */
const char *gg_dir_stage_active(void);
void gg_dir_abort_signal(const char *stage);

#endif
