/* ggfmt.h — the .gg container: reader (mmap, bounds-checked) and writer
 * (streaming, atomic: NAME.tmp, fsync, rename).
 *
 * The byte-exact layout is docs/FORMAT.md; this header is the C view of it.
 * Reader: gg_file_open validates the header checksum, the metadata and
 * index sections (checksums, every length/offset/count against the file),
 * tensor types/shapes/sizes/alignment, and UTF-8 of every key and name,
 * before anything is returned. Tensor data checksums are verified on demand
 * (gg_file_verify, gg_tensor_verify) and spot-checked at open (the smallest
 * tensors, cheap) unless GG_OPEN_NO_SPOTCHECK.
 *
 * Writer: declare metadata and tensors, gg_writer_begin, stream each
 * tensor's bytes (any tensor order, each tensor's chunks in order; distinct
 * tensors may be written from different threads), gg_writer_finish. Any
 * failure or gg_writer_free before finish removes NAME.tmp.
 *
 * Errors: 0 / -1 with gg_err (err.h). */
#ifndef GG_GGFMT_H
#define GG_GGFMT_H

#include <stddef.h>
#include <stdint.h>

#include "ggfmt/err.h"
#include "ggfmt/quant.h"

#define GG_VERSION_STRING "0.1.0" /* the gg release; tools print it with --version */
#define GG_MAGIC "\x89GGF\r\n\x1a\n"
#define GG_VERSION 1
#define GG_HEADER_SIZE 128
#define GG_MAX_DIMS 4
#define GG_DEFAULT_ALIGN 64
#define GG_MAX_NAME 4096 /* longest key / tensor name in bytes */

typedef enum gg_vtype {
    GG_V_BOOL = 1,
    GG_V_I64 = 2,
    GG_V_U64 = 3,
    GG_V_F64 = 4,
    GG_V_STR = 5,
    GG_V_ARR = 6,
} gg_vtype;

const char *gg_vtype_name(gg_vtype t);

/* A string inside the mapped file: not NUL-terminated. */
typedef struct gg_str {
    const char *ptr;
    uint64_t len;
} gg_str;

/* One metadata value as read from a file. */
typedef struct gg_value {
    gg_vtype type;
    gg_vtype elem;   /* GG_V_ARR: element type (never GG_V_ARR) */
    uint64_t count;  /* GG_V_ARR: number of elements */
    union {
        int b;
        int64_t i;
        uint64_t u;
        double f;
        gg_str s;
    } v;
    const uint8_t *raw; /* GG_V_ARR of bool/i64/u64/f64: packed LE payload */
    gg_str *strs;       /* GG_V_ARR of str: count entries */
} gg_value;

typedef struct gg_meta {
    const char *key; /* NUL-terminated (owned by the file handle) */
    gg_value val;
} gg_meta;

typedef struct gg_tensor {
    const char *name; /* NUL-terminated (owned by the file handle) */
    gg_type type;
    uint32_t ndim;
    uint64_t shape[GG_MAX_DIMS];
    uint64_t offset; /* from the start of the data section */
    uint64_t size;   /* bytes */
    uint64_t xxh64;  /* of the size bytes at data */
    const void *data;
} gg_tensor;

typedef struct gg_file gg_file;

enum { GG_OPEN_NO_SPOTCHECK = 1 };

int gg_file_open(gg_file **out, const char *path, unsigned flags, gg_err *err);
/* Open from memory (fuzzing, tests). buf must outlive the handle. */
int gg_file_open_mem(gg_file **out, const void *buf, size_t len, const char *label,
                     unsigned flags, gg_err *err);
void gg_file_close(gg_file *f);

const char *gg_file_path(const gg_file *f);
uint32_t gg_file_version(const gg_file *f);
uint32_t gg_file_alignment(const gg_file *f);
uint64_t gg_file_size(const gg_file *f);

size_t gg_meta_count(const gg_file *f);
const gg_meta *gg_meta_at(const gg_file *f, size_t i);
const gg_value *gg_meta_find(const gg_file *f, const char *key);

/* Typed getters: -1 with "metadata 'KEY' is missing" or "metadata 'KEY' is
 * str, expected i64". get_i64 also accepts a u64 that fits. */
int gg_meta_get_i64(const gg_file *f, const char *key, int64_t *out, gg_err *err);
int gg_meta_get_u64(const gg_file *f, const char *key, uint64_t *out, gg_err *err);
int gg_meta_get_f64(const gg_file *f, const char *key, double *out, gg_err *err);
int gg_meta_get_bool(const gg_file *f, const char *key, int *out, gg_err *err);
int gg_meta_get_str(const gg_file *f, const char *key, gg_str *out, gg_err *err);

/* Array element access (caller checks elem type and index < count). */
int64_t gg_value_arr_i64(const gg_value *v, uint64_t i);
uint64_t gg_value_arr_u64(const gg_value *v, uint64_t i);
double gg_value_arr_f64(const gg_value *v, uint64_t i);
int gg_value_arr_bool(const gg_value *v, uint64_t i);

size_t gg_tensor_count(const gg_file *f);
const gg_tensor *gg_tensor_at(const gg_file *f, size_t i);
const gg_tensor *gg_tensor_find(const gg_file *f, const char *name);
uint64_t gg_tensor_nelem(const gg_tensor *t);

int gg_tensor_verify(const gg_tensor *t, gg_err *err);
/* Verify every tensor checksum; on failure names the first bad tensor. */
int gg_file_verify(const gg_file *f, gg_err *err);

/* ---- writer ---- */
typedef struct gg_writer gg_writer;

gg_writer *gg_writer_new(void); /* NULL on out-of-memory */
/* Removes NAME.tmp if finish was not reached. */
void gg_writer_free(gg_writer *w);

/* Metadata (before begin). Keys must be unique, 1..GG_MAX_NAME bytes of
 * valid UTF-8; values are copied. */
int gg_writer_set_bool(gg_writer *w, const char *key, int v, gg_err *err);
int gg_writer_set_i64(gg_writer *w, const char *key, int64_t v, gg_err *err);
int gg_writer_set_u64(gg_writer *w, const char *key, uint64_t v, gg_err *err);
int gg_writer_set_f64(gg_writer *w, const char *key, double v, gg_err *err);
int gg_writer_set_str(gg_writer *w, const char *key, const char *s, size_t len, gg_err *err);
int gg_writer_set_arr_bool(gg_writer *w, const char *key, const int *v, size_t n, gg_err *err);
int gg_writer_set_arr_i64(gg_writer *w, const char *key, const int64_t *v, size_t n, gg_err *err);
int gg_writer_set_arr_u64(gg_writer *w, const char *key, const uint64_t *v, size_t n, gg_err *err);
int gg_writer_set_arr_f64(gg_writer *w, const char *key, const double *v, size_t n, gg_err *err);
/* lens may be NULL (then strlen is used). */
int gg_writer_set_arr_str(gg_writer *w, const char *key, const char *const *s, const size_t *lens,
                          size_t n, gg_err *err);

/* Overwrite the value of a u64 key set earlier (any time before finish):
 * for values known only once the tensors are written, e.g. a fingerprint. */
int gg_writer_patch_u64(gg_writer *w, const char *key, uint64_t v, gg_err *err);

/* Declare a tensor (before begin); returns its index in *idx. Checks the
 * shape against the type (gg_type_check_shape). */
int gg_writer_add_tensor(gg_writer *w, const char *name, gg_type type, uint32_t ndim,
                         const uint64_t *shape, size_t *idx, gg_err *err);

/* Create PATH.tmp and lay the file out. alignment 0 = GG_DEFAULT_ALIGN. */
int gg_writer_begin(gg_writer *w, const char *path, uint32_t alignment, gg_err *err);

/* Append n bytes to tensor idx (chunks of one tensor in order). Thread-safe
 * across distinct tensors. */
int gg_writer_write(gg_writer *w, size_t idx, const void *data, size_t n, gg_err *err);

/* Check every tensor is complete, write index + header, fsync, rename to
 * PATH, fsync the directory. */
int gg_writer_finish(gg_writer *w, gg_err *err);

/* PATH.tmp once begun (NULL before): a signal handler may unlink it. */
const char *gg_writer_tmp_path(const gg_writer *w);

#endif
