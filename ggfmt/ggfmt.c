/* ggfmt.c — the .gg container reader (mmap + validation) and writer
 * (streaming to NAME.tmp, fsync, rename). Layout: docs/FORMAT.md. */
#include "ggfmt/ggfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "ggfmt/utf8.h"

/* Header field offsets (docs/FORMAT.md §1). */
enum {
    H_MAGIC = 0, H_VERSION = 8, H_HEADER_SIZE = 12, H_ALIGN = 16, H_FLAGS = 20,
    H_FILE_SIZE = 24, H_META_OFF = 32, H_META_SIZE = 40, H_META_COUNT = 48,
    H_INDEX_OFF = 56, H_INDEX_SIZE = 64, H_TENSOR_COUNT = 72, H_DATA_OFF = 80,
    H_DATA_SIZE = 88, H_META_XXH = 96, H_INDEX_XXH = 104, H_RESERVED = 112,
    H_HEADER_XXH = 120,
};

/* Spot check at open: tensors up to this size, up to this many bytes. */
#define SPOT_MAX_TENSOR (64u << 10)
#define SPOT_BUDGET (4u << 20)

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

const char *gg_vtype_name(gg_vtype t) {
    switch (t) {
    case GG_V_BOOL: return "bool";
    case GG_V_I64: return "i64";
    case GG_V_U64: return "u64";
    case GG_V_F64: return "f64";
    case GG_V_STR: return "str";
    case GG_V_ARR: return "array";
    }
    return "?";
}

/* ===================================================================== */
/* Reader                                                                 */
/* ===================================================================== */

struct gg_file {
    char *path;
    const uint8_t *base;
    size_t len;
    int mapped;
    uint32_t version, alignment;
    const uint8_t *data; /* start of the data section */
    uint64_t data_size;
    gg_meta *meta;
    size_t n_meta;
    gg_meta **meta_sorted;
    gg_tensor *tensors;
    size_t n_tensors;
    gg_tensor **tensors_sorted;
    char *names; /* NUL-terminated copies of keys and names */
};

/* A bounds-checked cursor over one section. */
typedef struct cursor {
    const uint8_t *p, *end;
    const uint8_t *file_base;
    const char *what; /* "metadata" / "tensor index" */
    gg_err *err;
    const char *label;
} cursor;

static uint64_t cur_off(const cursor *c) { return (uint64_t)(c->p - c->file_base); }

static int cur_need(cursor *c, uint64_t n, const char *field) {
    if ((uint64_t)(c->end - c->p) < n)
        return gg_errf(c->err, "%s: %s truncated at byte %llu: %s needs %llu bytes, %llu left",
                       c->label, c->what, (unsigned long long)cur_off(c), field,
                       (unsigned long long)n, (unsigned long long)(c->end - c->p));
    return 0;
}
static int cur_u8(cursor *c, uint8_t *v, const char *f) {
    if (cur_need(c, 1, f)) return -1;
    *v = *c->p++;
    return 0;
}
static int cur_u32(cursor *c, uint32_t *v, const char *f) {
    if (cur_need(c, 4, f)) return -1;
    *v = rd32(c->p);
    c->p += 4;
    return 0;
}
static int cur_u64(cursor *c, uint64_t *v, const char *f) {
    if (cur_need(c, 8, f)) return -1;
    *v = rd64(c->p);
    c->p += 8;
    return 0;
}

/* A key or tensor name: u32 length + UTF-8 bytes, no NUL, 1..GG_MAX_NAME. */
static int cur_name(cursor *c, gg_str *out, const char *field) {
    uint64_t at = cur_off(c);
    uint32_t n;
    if (cur_u32(c, &n, field)) return -1;
    if (n == 0 || n > GG_MAX_NAME)
        return gg_errf(c->err, "%s: %s byte %llu: %s length %u is out of range 1..%d", c->label,
                       c->what, (unsigned long long)at, field, n, GG_MAX_NAME);
    if (cur_need(c, n, field)) return -1;
    if (memchr(c->p, 0, n))
        return gg_errf(c->err, "%s: %s byte %llu: %s contains a NUL byte", c->label, c->what,
                       (unsigned long long)at, field);
    size_t bad = gg_utf8_invalid_at((const char *)c->p, n);
    if (bad != (size_t)-1)
        return gg_errf(c->err, "%s: %s byte %llu: %s is not valid UTF-8 (at byte %zu of it)",
                       c->label, c->what, (unsigned long long)at, field, bad);
    out->ptr = (const char *)c->p;
    out->len = n;
    c->p += n;
    return 0;
}

static int cur_str(cursor *c, gg_str *out, const char *key) {
    uint64_t at = cur_off(c);
    uint64_t n;
    if (cur_u64(c, &n, "string length")) return -1;
    if (cur_need(c, n, "string")) return -1;
    size_t bad = gg_utf8_invalid_at((const char *)c->p, n);
    if (bad != (size_t)-1)
        return gg_errf(c->err, "%s: metadata '%s' (byte %llu): string is not valid UTF-8 at byte %zu",
                       c->label, key, (unsigned long long)at, bad);
    out->ptr = (const char *)c->p;
    out->len = n;
    c->p += n;
    return 0;
}

static uint64_t elem_size(gg_vtype t) {
    switch (t) {
    case GG_V_BOOL: return 1;
    case GG_V_I64: case GG_V_U64: case GG_V_F64: return 8;
    default: return 0;
    }
}

static int parse_value(cursor *c, gg_value *v, const char *key) {
    uint64_t at = cur_off(c);
    uint32_t t;
    if (cur_u32(c, &t, "value type")) return -1;
    v->type = (gg_vtype)t;
    switch (t) {
    case GG_V_BOOL: {
        uint8_t b;
        if (cur_u8(c, &b, "bool")) return -1;
        if (b > 1)
            return gg_errf(c->err, "%s: metadata '%s' (byte %llu): bool value %u is not 0 or 1",
                           c->label, key, (unsigned long long)at, b);
        v->v.b = b;
        return 0;
    }
    case GG_V_I64: case GG_V_U64: case GG_V_F64: {
        uint64_t u;
        if (cur_u64(c, &u, gg_vtype_name(v->type))) return -1;
        if (t == GG_V_I64) v->v.i = (int64_t)u;
        else if (t == GG_V_U64) v->v.u = u;
        else memcpy(&v->v.f, &u, 8);
        return 0;
    }
    case GG_V_STR: return cur_str(c, &v->v.s, key);
    case GG_V_ARR: {
        uint32_t et;
        uint64_t n;
        if (cur_u32(c, &et, "array element type") || cur_u64(c, &n, "array count")) return -1;
        if (et < GG_V_BOOL || et > GG_V_STR)
            return gg_errf(c->err, "%s: metadata '%s' (byte %llu): array element type %u is invalid",
                           c->label, key, (unsigned long long)at, et);
        v->elem = (gg_vtype)et;
        v->count = n;
        if (et != GG_V_STR) {
            uint64_t es = elem_size(v->elem);
            if (n > (uint64_t)(c->end - c->p) / es)
                return gg_errf(c->err, "%s: metadata '%s' (byte %llu): array of %llu %s elements "
                               "runs past the end of the metadata", c->label, key,
                               (unsigned long long)at, (unsigned long long)n, gg_vtype_name(v->elem));
            v->raw = c->p;
            if (et == GG_V_BOOL)
                for (uint64_t i = 0; i < n; i++)
                    if (c->p[i] > 1)
                        return gg_errf(c->err, "%s: metadata '%s': bool element %llu is not 0 or 1",
                                       c->label, key, (unsigned long long)i);
            c->p += n * es;
            return 0;
        }
        /* Each string needs at least its 8-byte length. */
        if (n > (uint64_t)(c->end - c->p) / 8)
            return gg_errf(c->err, "%s: metadata '%s' (byte %llu): array of %llu strings runs past "
                           "the end of the metadata", c->label, key, (unsigned long long)at,
                           (unsigned long long)n);
        v->strs = malloc((n ? n : 1) * sizeof *v->strs);
        if (!v->strs) return gg_errf(c->err, "%s: out of memory", c->label);
        for (uint64_t i = 0; i < n; i++)
            if (cur_str(c, &v->strs[i], key)) return -1;
        return 0;
    }
    default:
        return gg_errf(c->err, "%s: metadata '%s' (byte %llu): unknown value type %u", c->label,
                       key, (unsigned long long)at, t);
    }
}

static int cmp_meta(const void *a, const void *b) {
    return strcmp((*(gg_meta *const *)a)->key, (*(gg_meta *const *)b)->key);
}
static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(gg_tensor *const *)a)->name, (*(gg_tensor *const *)b)->name);
}
static int cmp_tensor_off(const void *a, const void *b) {
    const gg_tensor *x = *(gg_tensor *const *)a, *y = *(gg_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

void gg_file_close(gg_file *f) {
    if (!f) return;
    if (f->meta)
        for (size_t i = 0; i < f->n_meta; i++) free(f->meta[i].val.strs);
    free(f->meta);
    free(f->meta_sorted);
    free(f->tensors);
    free(f->tensors_sorted);
    free(f->names);
    if (f->mapped && f->len) munmap((void *)f->base, f->len);
    free(f->path);
    free(f);
}

static int check_header(gg_file *f, const char *L, gg_err *err) {
    const uint8_t *b = f->base;
    if (f->len < GG_HEADER_SIZE) {
        if (f->len >= 8 && memcmp(b, GG_MAGIC, 8) != 0)
            return gg_errf(err, "%s: not a .gg file (bad magic)", L);
        return gg_errf(err, "%s: truncated: %zu bytes, a .gg header alone is %d", L, f->len,
                       GG_HEADER_SIZE);
    }
    if (memcmp(b, GG_MAGIC, 8) != 0) return gg_errf(err, "%s: not a .gg file (bad magic)", L);
    uint64_t hx = XXH64(b, H_HEADER_XXH, 0);
    if (hx != rd64(b + H_HEADER_XXH))
        return gg_errf(err, "%s: header checksum mismatch (header is corrupt)", L);
    f->version = rd32(b + H_VERSION);
    if (f->version != GG_VERSION)
        return gg_errf(err, "%s: format version %u is not supported (this build reads %d)", L,
                       f->version, GG_VERSION);
    if (rd32(b + H_HEADER_SIZE) != GG_HEADER_SIZE)
        return gg_errf(err, "%s: header_size %u, expected %d", L, rd32(b + H_HEADER_SIZE),
                       GG_HEADER_SIZE);
    f->alignment = rd32(b + H_ALIGN);
    if (f->alignment < 8 || f->alignment > (1u << 20) || (f->alignment & (f->alignment - 1)))
        return gg_errf(err, "%s: header alignment %u is not a power of two in 8..1048576", L,
                       f->alignment);
    if (rd32(b + H_FLAGS) != 0)
        return gg_errf(err, "%s: header flags 0x%x are not known to this version", L,
                       rd32(b + H_FLAGS));
    uint64_t file_size = rd64(b + H_FILE_SIZE);
    if (file_size != f->len)
        return gg_errf(err, "%s: file is %zu bytes but its header says %llu (%s)", L, f->len,
                       (unsigned long long)file_size,
                       f->len < file_size ? "truncated" : "trailing bytes");
    uint64_t mo = rd64(b + H_META_OFF), ms = rd64(b + H_META_SIZE);
    uint64_t io = rd64(b + H_INDEX_OFF), is = rd64(b + H_INDEX_SIZE);
    uint64_t dof = rd64(b + H_DATA_OFF), ds = rd64(b + H_DATA_SIZE);
    if (mo != GG_HEADER_SIZE)
        return gg_errf(err, "%s: metadata_offset %llu, expected %d", L, (unsigned long long)mo,
                       GG_HEADER_SIZE);
    if (ms > f->len - mo || io != mo + ms)
        return gg_errf(err, "%s: metadata section [%llu, +%llu) does not fit the file or does not "
                       "end at index_offset %llu", L, (unsigned long long)mo,
                       (unsigned long long)ms, (unsigned long long)io);
    if (is > f->len - io)
        return gg_errf(err, "%s: tensor index [%llu, +%llu) runs past the end of the file", L,
                       (unsigned long long)io, (unsigned long long)is);
    if (dof < io + is || dof > f->len || dof % f->alignment || ds != f->len - dof)
        return gg_errf(err, "%s: data section [%llu, +%llu) is misplaced (index ends at %llu, "
                       "file is %zu bytes, alignment %u)", L, (unsigned long long)dof,
                       (unsigned long long)ds, (unsigned long long)(io + is), f->len, f->alignment);
    if (rd64(b + H_RESERVED) != 0) return gg_errf(err, "%s: reserved header field is not zero", L);
    if (XXH64(b + mo, ms, 0) != rd64(b + H_META_XXH))
        return gg_errf(err, "%s: metadata checksum mismatch (metadata section is corrupt)", L);
    if (XXH64(b + io, is, 0) != rd64(b + H_INDEX_XXH))
        return gg_errf(err, "%s: tensor index checksum mismatch (index section is corrupt)", L);
    return 0;
}

static int parse_sections(gg_file *f, unsigned flags, gg_err *err) {
    const char *L = f->path;
    if (check_header(f, L, err)) return -1;
    const uint8_t *b = f->base;
    uint64_t mo = rd64(b + H_META_OFF), ms = rd64(b + H_META_SIZE), mc = rd64(b + H_META_COUNT);
    uint64_t io = rd64(b + H_INDEX_OFF), is = rd64(b + H_INDEX_SIZE), tc = rd64(b + H_TENSOR_COUNT);
    f->data = b + rd64(b + H_DATA_OFF);
    f->data_size = rd64(b + H_DATA_SIZE);

    /* Smallest entries: metadata 4+1+4+1 bytes, tensor 4+1+4+4+8+8+8+8. */
    if (mc > ms / 10)
        return gg_errf(err, "%s: metadata_count %llu cannot fit in %llu bytes", L,
                       (unsigned long long)mc, (unsigned long long)ms);
    if (tc > is / 45)
        return gg_errf(err, "%s: tensor_count %llu cannot fit in %llu bytes", L,
                       (unsigned long long)tc, (unsigned long long)is);
    f->n_meta = mc;
    f->n_tensors = tc;
    f->meta = calloc(mc ? mc : 1, sizeof *f->meta);
    f->meta_sorted = malloc((mc ? mc : 1) * sizeof *f->meta_sorted);
    f->tensors = calloc(tc ? tc : 1, sizeof *f->tensors);
    f->tensors_sorted = malloc((tc ? tc : 1) * sizeof *f->tensors_sorted);
    /* Names: at most (section size) bytes plus one NUL per entry. */
    f->names = malloc(ms + is + mc + tc + 1);
    if (!f->meta || !f->meta_sorted || !f->tensors || !f->tensors_sorted || !f->names)
        return gg_errf(err, "%s: out of memory", L);
    char *np = f->names;

    cursor c = {b + mo, b + mo + ms, b, "metadata", err, L};
    for (uint64_t i = 0; i < mc; i++) {
        gg_str k;
        if (cur_name(&c, &k, "metadata key")) return -1;
        memcpy(np, k.ptr, k.len);
        np[k.len] = 0;
        f->meta[i].key = np;
        np += k.len + 1;
        if (parse_value(&c, &f->meta[i].val, f->meta[i].key)) return -1;
        f->meta_sorted[i] = &f->meta[i];
    }
    if (c.p != c.end)
        return gg_errf(err, "%s: metadata has %llu unused bytes after its %llu entries", L,
                       (unsigned long long)(c.end - c.p), (unsigned long long)mc);
    qsort(f->meta_sorted, mc, sizeof *f->meta_sorted, cmp_meta);
    for (uint64_t i = 1; i < mc; i++)
        if (!strcmp(f->meta_sorted[i]->key, f->meta_sorted[i - 1]->key))
            return gg_errf(err, "%s: duplicate metadata key '%s'", L, f->meta_sorted[i]->key);

    cursor t = {b + io, b + io + is, b, "tensor index", err, L};
    for (uint64_t i = 0; i < tc; i++) {
        gg_tensor *T = &f->tensors[i];
        gg_str nm;
        uint64_t at = cur_off(&t);
        if (cur_name(&t, &nm, "tensor name")) return -1;
        memcpy(np, nm.ptr, nm.len);
        np[nm.len] = 0;
        T->name = np;
        np += nm.len + 1;
        uint32_t type, ndim;
        if (cur_u32(&t, &type, "tensor type") || cur_u32(&t, &ndim, "tensor ndim")) return -1;
        if (type >= GG_TYPE_COUNT)
            return gg_errf(err, "%s: tensor '%s' (index byte %llu): unknown type %u", L, T->name,
                           (unsigned long long)at, type);
        if (ndim < 1 || ndim > GG_MAX_DIMS)
            return gg_errf(err, "%s: tensor '%s': ndim %u is out of range 1..%d", L, T->name, ndim,
                           GG_MAX_DIMS);
        T->type = (gg_type)type;
        T->ndim = ndim;
        for (uint32_t d = 0; d < ndim; d++)
            if (cur_u64(&t, &T->shape[d], "tensor shape")) return -1;
        if (cur_u64(&t, &T->offset, "tensor offset") || cur_u64(&t, &T->size, "tensor size") ||
            cur_u64(&t, &T->xxh64, "tensor checksum"))
            return -1;
        gg_err se;
        if (gg_type_check_shape(T->type, ndim, T->shape, &se))
            return gg_errf(err, "%s: tensor '%s': %s", L, T->name, se.msg);
        uint64_t rows = 1;
        for (uint32_t d = 0; d + 1 < ndim; d++) {
            if (T->shape[d] && rows > UINT64_MAX / T->shape[d])
                return gg_errf(err, "%s: tensor '%s': shape overflows", L, T->name);
            rows *= T->shape[d];
        }
        uint64_t want = gg_type_nbytes(T->type, rows, T->shape[ndim - 1]);
        if (want == 0 || want != T->size)
            return gg_errf(err, "%s: tensor '%s': size %llu bytes does not match its %s shape "
                           "(%llu bytes)", L, T->name, (unsigned long long)T->size,
                           gg_type_name(T->type), (unsigned long long)want);
        if (T->offset % f->alignment)
            return gg_errf(err, "%s: tensor '%s': offset %llu is not aligned to %u", L, T->name,
                           (unsigned long long)T->offset, f->alignment);
        if (T->offset > f->data_size || T->size > f->data_size - T->offset)
            return gg_errf(err, "%s: tensor '%s': bytes [%llu, +%llu) lie outside the data "
                           "section (%llu bytes)", L, T->name, (unsigned long long)T->offset,
                           (unsigned long long)T->size, (unsigned long long)f->data_size);
        T->data = f->data + T->offset;
        f->tensors_sorted[i] = T;
    }
    if (t.p != t.end)
        return gg_errf(err, "%s: tensor index has %llu unused bytes after its %llu entries", L,
                       (unsigned long long)(t.end - t.p), (unsigned long long)tc);

    qsort(f->tensors_sorted, tc, sizeof *f->tensors_sorted, cmp_tensor_off);
    for (uint64_t i = 1; i < tc; i++) {
        const gg_tensor *p = f->tensors_sorted[i - 1], *q = f->tensors_sorted[i];
        if (q->offset < p->offset + p->size)
            return gg_errf(err, "%s: tensors '%s' and '%s' overlap in the data section", L,
                           p->name, q->name);
    }
    qsort(f->tensors_sorted, tc, sizeof *f->tensors_sorted, cmp_tensor_name);
    for (uint64_t i = 1; i < tc; i++)
        if (!strcmp(f->tensors_sorted[i]->name, f->tensors_sorted[i - 1]->name))
            return gg_errf(err, "%s: duplicate tensor name '%s'", L, f->tensors_sorted[i]->name);

    if (!(flags & GG_OPEN_NO_SPOTCHECK)) {
        uint64_t budget = SPOT_BUDGET;
        for (uint64_t i = 0; i < tc; i++) {
            const gg_tensor *T = &f->tensors[i];
            if (T->size > SPOT_MAX_TENSOR || T->size > budget) continue;
            budget -= T->size;
            if (gg_tensor_verify(T, err)) return gg_err_prefix(err, "%s", L);
        }
    }
    return 0;
}

static int open_common(gg_file *f, unsigned flags, gg_file **out, gg_err *err) {
    if (parse_sections(f, flags, err)) {
        gg_file_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

int gg_file_open(gg_file **out, const char *path, unsigned flags, gg_err *err) {
    *out = NULL;
    gg_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return gg_errf(err, "%s: out of memory", path);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        gg_errf(err, "%s: %s", path, strerror(errno));
        gg_file_close(f);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        gg_errf(err, "%s: not a regular file", path);
        close(fd);
        gg_file_close(f);
        return -1;
    }
    if (st.st_size == 0) {
        close(fd);
        gg_errf(err, "%s: file is empty", path);
        gg_file_close(f);
        return -1;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        gg_errf(err, "%s: mmap: %s", path, strerror(errno));
        gg_file_close(f);
        return -1;
    }
    f->base = m;
    f->len = (size_t)st.st_size;
    f->mapped = 1;
    return open_common(f, flags, out, err);
}

int gg_file_open_mem(gg_file **out, const void *buf, size_t len, const char *label,
                     unsigned flags, gg_err *err) {
    *out = NULL;
    gg_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(label ? label : "<memory>"))) {
        free(f);
        return gg_errf(err, "out of memory");
    }
    f->base = buf;
    f->len = len;
    return open_common(f, flags, out, err);
}

const char *gg_file_path(const gg_file *f) { return f->path; }
uint32_t gg_file_version(const gg_file *f) { return f->version; }
uint32_t gg_file_alignment(const gg_file *f) { return f->alignment; }
uint64_t gg_file_size(const gg_file *f) { return f->len; }

size_t gg_meta_count(const gg_file *f) { return f->n_meta; }
const gg_meta *gg_meta_at(const gg_file *f, size_t i) { return i < f->n_meta ? &f->meta[i] : NULL; }

const gg_value *gg_meta_find(const gg_file *f, const char *key) {
    size_t lo = 0, hi = f->n_meta;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->meta_sorted[mid]->key, key);
        if (c == 0) return &f->meta_sorted[mid]->val;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static const gg_value *meta_typed(const gg_file *f, const char *key, gg_vtype t, gg_err *err) {
    const gg_value *v = gg_meta_find(f, key);
    if (!v) {
        gg_errf(err, "%s: metadata '%s' is missing", f->path, key);
        return NULL;
    }
    if (v->type != t) {
        gg_errf(err, "%s: metadata '%s' is %s, expected %s", f->path, key, gg_vtype_name(v->type),
                gg_vtype_name(t));
        return NULL;
    }
    return v;
}

int gg_meta_get_i64(const gg_file *f, const char *key, int64_t *out, gg_err *err) {
    const gg_value *v = gg_meta_find(f, key);
    if (v && v->type == GG_V_U64) {
        if (v->v.u > INT64_MAX)
            return gg_errf(err, "%s: metadata '%s' = %llu does not fit i64", f->path, key,
                           (unsigned long long)v->v.u);
        *out = (int64_t)v->v.u;
        return 0;
    }
    if (!(v = meta_typed(f, key, GG_V_I64, err))) return -1;
    *out = v->v.i;
    return 0;
}
int gg_meta_get_u64(const gg_file *f, const char *key, uint64_t *out, gg_err *err) {
    const gg_value *v = meta_typed(f, key, GG_V_U64, err);
    if (!v) return -1;
    *out = v->v.u;
    return 0;
}
int gg_meta_get_f64(const gg_file *f, const char *key, double *out, gg_err *err) {
    const gg_value *v = meta_typed(f, key, GG_V_F64, err);
    if (!v) return -1;
    *out = v->v.f;
    return 0;
}
int gg_meta_get_bool(const gg_file *f, const char *key, int *out, gg_err *err) {
    const gg_value *v = meta_typed(f, key, GG_V_BOOL, err);
    if (!v) return -1;
    *out = v->v.b;
    return 0;
}
int gg_meta_get_str(const gg_file *f, const char *key, gg_str *out, gg_err *err) {
    const gg_value *v = meta_typed(f, key, GG_V_STR, err);
    if (!v) return -1;
    *out = v->v.s;
    return 0;
}

int64_t gg_value_arr_i64(const gg_value *v, uint64_t i) { return (int64_t)rd64(v->raw + 8 * i); }
uint64_t gg_value_arr_u64(const gg_value *v, uint64_t i) { return rd64(v->raw + 8 * i); }
double gg_value_arr_f64(const gg_value *v, uint64_t i) {
    double d;
    memcpy(&d, v->raw + 8 * i, 8);
    return d;
}
int gg_value_arr_bool(const gg_value *v, uint64_t i) { return v->raw[i]; }

size_t gg_tensor_count(const gg_file *f) { return f->n_tensors; }
const gg_tensor *gg_tensor_at(const gg_file *f, size_t i) {
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}
const gg_tensor *gg_tensor_find(const gg_file *f, const char *name) {
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors_sorted[mid]->name, name);
        if (c == 0) return f->tensors_sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

uint64_t gg_tensor_nelem(const gg_tensor *t) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

int gg_tensor_verify(const gg_tensor *t, gg_err *err) {
    uint64_t h = XXH64(t->data, t->size, 0);
    if (h != t->xxh64)
        return gg_errf(err, "tensor '%s': checksum mismatch (stored %016llx, computed %016llx): "
                       "its data is corrupt", t->name, (unsigned long long)t->xxh64,
                       (unsigned long long)h);
    return 0;
}

int gg_file_verify(const gg_file *f, gg_err *err) {
    for (size_t i = 0; i < f->n_tensors; i++)
        if (gg_tensor_verify(&f->tensors[i], err)) return gg_err_prefix(err, "%s", f->path);
    return 0;
}

/* ===================================================================== */
/* Writer                                                                 */
/* ===================================================================== */

typedef struct wtensor {
    char *name;
    gg_type type;
    uint32_t ndim;
    uint64_t shape[GG_MAX_DIMS];
    uint64_t size, offset, written;
    XXH64_state_t hash;
} wtensor;

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

struct gg_writer {
    buf meta;
    size_t n_meta;
    char **keys;
    size_t *val_off; /* offset of each key's value in meta */
    size_t n_keys, cap_keys;
    wtensor *t;
    size_t n_t, cap_t;
    char *path, *tmp_path;
    int fd;
    int begun, finished;
    uint32_t alignment;
    uint64_t index_off, index_size, data_off, file_size;
};

static int buf_put(buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}
static int buf_u32(buf *b, uint32_t v) { return buf_put(b, &v, 4); }
static int buf_u64(buf *b, uint64_t v) { return buf_put(b, &v, 8); }

gg_writer *gg_writer_new(void) {
    gg_writer *w = calloc(1, sizeof *w);
    if (w) w->fd = -1;
    return w;
}

void gg_writer_free(gg_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    if (w->begun && !w->finished && w->tmp_path) unlink(w->tmp_path);
    free(w->meta.p);
    for (size_t i = 0; i < w->n_keys; i++) free(w->keys[i]);
    free(w->keys);
    free(w->val_off);
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w->path);
    free(w->tmp_path);
    free(w);
}

static int check_name(const char *s, size_t n, const char *what, gg_err *err) {
    if (n == 0 || n > GG_MAX_NAME)
        return gg_errf(err, "%s length %zu is out of range 1..%d", what, n, GG_MAX_NAME);
    if (gg_utf8_invalid_at(s, n) != (size_t)-1)
        return gg_errf(err, "%s '%.*s' is not valid UTF-8", what, (int)(n > 64 ? 64 : n), s);
    return 0;
}

/* Start a metadata entry: key + type. */
static int meta_key(gg_writer *w, const char *key, gg_vtype t, gg_err *err) {
    if (w->begun) return gg_errf(err, "metadata '%s' set after gg_writer_begin", key);
    size_t n = strlen(key);
    if (check_name(key, n, "metadata key", err)) return -1;
    for (size_t i = 0; i < w->n_keys; i++)
        if (!strcmp(w->keys[i], key)) return gg_errf(err, "duplicate metadata key '%s'", key);
    if (w->n_keys == w->cap_keys) {
        size_t cap = w->cap_keys ? 2 * w->cap_keys : 32;
        char **k = realloc(w->keys, cap * sizeof *k);
        if (!k) return gg_errf(err, "out of memory");
        w->keys = k;
        size_t *vo = realloc(w->val_off, cap * sizeof *vo);
        if (!vo) return gg_errf(err, "out of memory");
        w->val_off = vo;
        w->cap_keys = cap;
    }
    if (!(w->keys[w->n_keys] = strdup(key))) return gg_errf(err, "out of memory");
    w->n_keys++;
    w->n_meta++;
    if (buf_u32(&w->meta, (uint32_t)n) || buf_put(&w->meta, key, n) || buf_u32(&w->meta, t))
        return gg_errf(err, "out of memory");
    w->val_off[w->n_keys - 1] = w->meta.len;
    return 0;
}

int gg_writer_patch_u64(gg_writer *w, const char *key, uint64_t v, gg_err *err) {
    if (w->finished) return gg_errf(err, "metadata '%s' patched after gg_writer_finish", key);
    for (size_t i = 0; i < w->n_keys; i++) {
        if (strcmp(w->keys[i], key)) continue;
        uint32_t t;
        memcpy(&t, w->meta.p + w->val_off[i] - 4, 4);
        if (t != GG_V_U64) return gg_errf(err, "metadata '%s' is %s, cannot patch a u64", key, gg_vtype_name((gg_vtype)t));
        memcpy(w->meta.p + w->val_off[i], &v, 8);
        return 0;
    }
    return gg_errf(err, "metadata '%s' to patch was never set", key);
}

int gg_writer_set_bool(gg_writer *w, const char *key, int v, gg_err *err) {
    uint8_t b = v ? 1 : 0;
    if (meta_key(w, key, GG_V_BOOL, err)) return -1;
    return buf_put(&w->meta, &b, 1) ? gg_errf(err, "out of memory") : 0;
}
int gg_writer_set_i64(gg_writer *w, const char *key, int64_t v, gg_err *err) {
    if (meta_key(w, key, GG_V_I64, err)) return -1;
    return buf_u64(&w->meta, (uint64_t)v) ? gg_errf(err, "out of memory") : 0;
}
int gg_writer_set_u64(gg_writer *w, const char *key, uint64_t v, gg_err *err) {
    if (meta_key(w, key, GG_V_U64, err)) return -1;
    return buf_u64(&w->meta, v) ? gg_errf(err, "out of memory") : 0;
}
int gg_writer_set_f64(gg_writer *w, const char *key, double v, gg_err *err) {
    if (meta_key(w, key, GG_V_F64, err)) return -1;
    return buf_put(&w->meta, &v, 8) ? gg_errf(err, "out of memory") : 0;
}

static int put_str(gg_writer *w, const char *key, const char *s, size_t len, gg_err *err) {
    size_t bad = gg_utf8_invalid_at(s, len);
    if (bad != (size_t)-1)
        return gg_errf(err, "metadata '%s': string is not valid UTF-8 at byte %zu", key, bad);
    if (buf_u64(&w->meta, len) || buf_put(&w->meta, s, len)) return gg_errf(err, "out of memory");
    return 0;
}

int gg_writer_set_str(gg_writer *w, const char *key, const char *s, size_t len, gg_err *err) {
    /* Validate before the key is recorded so a failed call adds nothing. */
    size_t bad = gg_utf8_invalid_at(s, len);
    if (bad != (size_t)-1)
        return gg_errf(err, "metadata '%s': string is not valid UTF-8 at byte %zu", key, bad);
    if (meta_key(w, key, GG_V_STR, err)) return -1;
    return put_str(w, key, s, len, err);
}

static int arr_head(gg_writer *w, const char *key, gg_vtype et, size_t n, gg_err *err) {
    if (meta_key(w, key, GG_V_ARR, err)) return -1;
    if (buf_u32(&w->meta, et) || buf_u64(&w->meta, n)) return gg_errf(err, "out of memory");
    return 0;
}

int gg_writer_set_arr_bool(gg_writer *w, const char *key, const int *v, size_t n, gg_err *err) {
    if (arr_head(w, key, GG_V_BOOL, n, err)) return -1;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = v[i] ? 1 : 0;
        if (buf_put(&w->meta, &b, 1)) return gg_errf(err, "out of memory");
    }
    return 0;
}
int gg_writer_set_arr_i64(gg_writer *w, const char *key, const int64_t *v, size_t n, gg_err *err) {
    if (arr_head(w, key, GG_V_I64, n, err)) return -1;
    return buf_put(&w->meta, v, 8 * n) ? gg_errf(err, "out of memory") : 0;
}
int gg_writer_set_arr_u64(gg_writer *w, const char *key, const uint64_t *v, size_t n, gg_err *err) {
    if (arr_head(w, key, GG_V_U64, n, err)) return -1;
    return buf_put(&w->meta, v, 8 * n) ? gg_errf(err, "out of memory") : 0;
}
int gg_writer_set_arr_f64(gg_writer *w, const char *key, const double *v, size_t n, gg_err *err) {
    if (arr_head(w, key, GG_V_F64, n, err)) return -1;
    return buf_put(&w->meta, v, 8 * n) ? gg_errf(err, "out of memory") : 0;
}
int gg_writer_set_arr_str(gg_writer *w, const char *key, const char *const *s, const size_t *lens,
                          size_t n, gg_err *err) {
    for (size_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(s[i]);
        size_t bad = gg_utf8_invalid_at(s[i], len);
        if (bad != (size_t)-1)
            return gg_errf(err, "metadata '%s': element %zu is not valid UTF-8 at byte %zu", key,
                           i, bad);
    }
    if (arr_head(w, key, GG_V_STR, n, err)) return -1;
    for (size_t i = 0; i < n; i++)
        if (put_str(w, key, s[i], lens ? lens[i] : strlen(s[i]), err)) return -1;
    return 0;
}

int gg_writer_add_tensor(gg_writer *w, const char *name, gg_type type, uint32_t ndim,
                         const uint64_t *shape, size_t *idx, gg_err *err) {
    if (w->begun) return gg_errf(err, "tensor '%s' added after gg_writer_begin", name);
    size_t n = strlen(name);
    if (check_name(name, n, "tensor name", err)) return -1;
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return gg_errf(err, "duplicate tensor name '%s'", name);
    if (gg_type_check_shape(type, ndim, shape, err)) return gg_err_prefix(err, "tensor '%s'", name);
    uint64_t rows = 1;
    for (uint32_t d = 0; d + 1 < ndim; d++) rows *= shape[d];
    uint64_t size = gg_type_nbytes(type, rows, shape[ndim - 1]);
    if (!size) return gg_errf(err, "tensor '%s': size overflows", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) return gg_errf(err, "out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *T = &w->t[w->n_t];
    memset(T, 0, sizeof *T);
    if (!(T->name = strdup(name))) return gg_errf(err, "out of memory");
    T->type = type;
    T->ndim = ndim;
    memcpy(T->shape, shape, ndim * sizeof *shape);
    T->size = size;
    XXH64_reset(&T->hash, 0);
    if (idx) *idx = w->n_t;
    w->n_t++;
    return 0;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static int write_all(int fd, const void *p, size_t n, uint64_t off) {
    const uint8_t *q = p;
    while (n) {
        ssize_t k = pwrite(fd, q, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        q += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

int gg_writer_begin(gg_writer *w, const char *path, uint32_t alignment, gg_err *err) {
    if (w->begun) return gg_errf(err, "%s: writer already begun", path);
    if (alignment == 0) alignment = GG_DEFAULT_ALIGN;
    if (alignment < 8 || alignment > (1u << 20) || (alignment & (alignment - 1)))
        return gg_errf(err, "alignment %u is not a power of two in 8..1048576", alignment);
    w->alignment = alignment;
    if (!(w->path = strdup(path)) || asprintf(&w->tmp_path, "%s.tmp", path) < 0) {
        w->tmp_path = NULL;
        return gg_errf(err, "out of memory");
    }
    w->index_off = GG_HEADER_SIZE + w->meta.len;
    w->index_size = 0;
    for (size_t i = 0; i < w->n_t; i++)
        w->index_size += 4 + strlen(w->t[i].name) + 4 + 4 + 8 * (uint64_t)w->t[i].ndim + 24;
    w->data_off = align_up(w->index_off + w->index_size, alignment);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        off = align_up(off + w->t[i].size, alignment);
    }
    /* The file ends right after the last tensor's bytes (no trailing pad). */
    uint64_t data_size = w->n_t ? w->t[w->n_t - 1].offset + w->t[w->n_t - 1].size : 0;
    w->file_size = w->data_off + data_size;
    w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) return gg_errf(err, "%s: %s", w->tmp_path, strerror(errno));
    w->begun = 1;
    /* Reserve the blocks up front (fails early on a full disk, and makes the
     * writes cheaper); fall back to a sparse file where unsupported. */
    int fe = w->file_size ? posix_fallocate(w->fd, 0, (off_t)w->file_size) : 0;
    if (fe == ENOSPC || fe == EFBIG)
        return gg_errf(err, "%s: cannot reserve %llu bytes: %s", w->tmp_path,
                       (unsigned long long)w->file_size, strerror(fe));
    if (ftruncate(w->fd, (off_t)w->file_size) != 0)
        return gg_errf(err, "%s: cannot size to %llu bytes: %s", w->tmp_path,
                       (unsigned long long)w->file_size, strerror(errno));
    if (write_all(w->fd, w->meta.p, w->meta.len, GG_HEADER_SIZE))
        return gg_errf(err, "%s: write: %s", w->tmp_path, strerror(errno));
    return 0;
}

int gg_writer_write(gg_writer *w, size_t idx, const void *data, size_t n, gg_err *err) {
    if (!w->begun || w->finished) return gg_errf(err, "gg_writer_write outside begin..finish");
    if (idx >= w->n_t) return gg_errf(err, "tensor index %zu out of range", idx);
    wtensor *T = &w->t[idx];
    if (n > T->size - T->written)
        return gg_errf(err, "tensor '%s': %zu more bytes would exceed its size %llu", T->name, n,
                       (unsigned long long)T->size);
    if (write_all(w->fd, data, n, w->data_off + T->offset + T->written))
        return gg_errf(err, "%s: write of tensor '%s': %s", w->tmp_path, T->name, strerror(errno));
    XXH64_update(&T->hash, data, n);
    T->written += n;
    /* A finished tensor starts its writeback now, overlapping the disk with
     * the conversion of the next tensors; the final fsync has less to do. */
    if (T->written == T->size && T->size >= (1u << 20))
        sync_file_range(w->fd, (off64_t)(w->data_off + T->offset), (off64_t)T->size,
                        SYNC_FILE_RANGE_WRITE);
    return 0;
}

int gg_writer_finish(gg_writer *w, gg_err *err) {
    if (!w->begun || w->finished) return gg_errf(err, "gg_writer_finish outside begin..finish");
    buf ix = {0};
    int rc = -1;
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *T = &w->t[i];
        if (T->written != T->size) {
            gg_errf(err, "tensor '%s': %llu of %llu bytes written", T->name,
                    (unsigned long long)T->written, (unsigned long long)T->size);
            goto out;
        }
        size_t n = strlen(T->name);
        int bad = buf_u32(&ix, (uint32_t)n) || buf_put(&ix, T->name, n) || buf_u32(&ix, T->type) ||
                  buf_u32(&ix, T->ndim);
        for (uint32_t d = 0; d < T->ndim; d++) bad = bad || buf_u64(&ix, T->shape[d]);
        bad = bad || buf_u64(&ix, T->offset) || buf_u64(&ix, T->size) ||
              buf_u64(&ix, XXH64_digest(&T->hash));
        if (bad) {
            gg_errf(err, "out of memory");
            goto out;
        }
    }
    uint8_t h[GG_HEADER_SIZE] = {0};
    memcpy(h + H_MAGIC, GG_MAGIC, 8);
    wr32(h + H_VERSION, GG_VERSION);
    wr32(h + H_HEADER_SIZE, GG_HEADER_SIZE);
    wr32(h + H_ALIGN, w->alignment);
    wr32(h + H_FLAGS, 0);
    wr64(h + H_FILE_SIZE, w->file_size);
    wr64(h + H_META_OFF, GG_HEADER_SIZE);
    wr64(h + H_META_SIZE, w->meta.len);
    wr64(h + H_META_COUNT, w->n_meta);
    wr64(h + H_INDEX_OFF, w->index_off);
    wr64(h + H_INDEX_SIZE, ix.len);
    wr64(h + H_TENSOR_COUNT, w->n_t);
    wr64(h + H_DATA_OFF, w->data_off);
    wr64(h + H_DATA_SIZE, w->file_size - w->data_off);
    wr64(h + H_META_XXH, XXH64(w->meta.p, w->meta.len, 0));
    wr64(h + H_INDEX_XXH, XXH64(ix.p, ix.len, 0));
    wr64(h + H_HEADER_XXH, XXH64(h, H_HEADER_XXH, 0));
    /* Metadata again: gg_writer_patch_u64 may have changed it since begin. */
    if (write_all(w->fd, w->meta.p, w->meta.len, GG_HEADER_SIZE) ||
        write_all(w->fd, ix.p, ix.len, w->index_off) || write_all(w->fd, h, sizeof h, 0)) {
        gg_errf(err, "%s: write: %s", w->tmp_path, strerror(errno));
        goto out;
    }
    if (fsync(w->fd) != 0) {
        gg_errf(err, "%s: fsync: %s", w->tmp_path, strerror(errno));
        goto out;
    }
    if (close(w->fd) != 0) {
        w->fd = -1;
        gg_errf(err, "%s: close: %s", w->tmp_path, strerror(errno));
        goto out;
    }
    w->fd = -1;
    if (rename(w->tmp_path, w->path) != 0) {
        gg_errf(err, "%s: rename to %s: %s", w->tmp_path, w->path, strerror(errno));
        goto out;
    }
    w->finished = 1;
    /* Make the rename durable: fsync the directory. */
    char *dir = strdup(w->path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
        int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    rc = 0;
out:
    free(ix.p);
    return rc;
}

const char *gg_writer_tmp_path(const gg_writer *w) { return w->tmp_path; }
