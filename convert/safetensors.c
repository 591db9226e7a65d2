/* safetensors.c — reading Hugging Face safetensors checkpoints (one file or
 * a sharded set), memory-mapped, with strict validation of the header; and
 * the writer of one file (gg_st_write) with the atomic file write it uses.
 *
 * Layout of a .safetensors file: u64 LE header length N, N bytes of JSON
 * (an object: optional "__metadata__" {str: str}, every other key a tensor
 * name -> {"dtype", "shape", "data_offsets"}), then the data buffer (rest of
 * the file). Offsets are relative to the data buffer, which the tensors must
 * tile exactly (no overlap, no hole, nothing after the last one), as the
 * reference Rust library requires. */
#include "convert/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ggfmt/utf8.h"

#define ST_MAX_HEADER 100000000ULL /* same limit as the Rust library */
#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

typedef struct st_file {
    char *path;  /* owned; tensors' `file` points here */
    void *map;   /* mmap'd (owned) or caller's memory (not owned) */
    size_t len;
    int mapped;
} st_file;

struct gg_st_set {
    gg_st_tensor *t; /* sorted by name; names owned (malloc'd each) */
    size_t n;
    st_file *files;
    size_t nfiles;
    uint64_t total;
};

/* ---- helpers ------------------------------------------------------------ */

static const struct {
    const char *name;
    uint32_t size;
    int type;
} st_dtypes[] = {
    {"F64", 8, -1},     {"F32", 4, GG_TYPE_F32}, {"F16", 2, GG_TYPE_F16}, {"BF16", 2, GG_TYPE_BF16},
    {"I64", 8, -1},     {"I32", 4, -1},          {"I16", 2, -1},          {"I8", 1, -1},
    {"U8", 1, -1},      {"BOOL", 1, -1},         {"F8_E4M3", 1, -1},      {"F8_E5M2", 1, -1},
    {"U16", 2, -1},     {"U32", 4, -1},          {"U64", 8, -1},
};

/* A printable, bounded, single-line rendering of a (possibly hostile) name
 * for error messages: control bytes become \xNN, long names are cut. */
#define ESC_MAX 120
typedef struct esc_buf {
    char s[ESC_MAX * 4 + 8];
} esc_buf;

static const char *esc(esc_buf *b, const char *s, size_t n) {
    size_t o = 0, i;
    for (i = 0; i < n && o < ESC_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') {
            o += (size_t)snprintf(b->s + o, sizeof b->s - o, "\\x%02x", c);
        } else {
            b->s[o++] = (char)c;
        }
    }
    if (i < n) {
        /* do not leave a partial UTF-8 sequence before the ellipsis */
        while (o > 0 && ((unsigned char)b->s[o - 1] & 0xC0) == 0x80) o--;
        if (o > 0 && ((unsigned char)b->s[o - 1] & 0xC0) == 0xC0) o--;
        memcpy(b->s + o, "...", 4);
    } else {
        b->s[o] = '\0';
    }
    return b->s;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/';
    char *p = malloc(a + (size_t)slash + b + 1);
    if (!p) return NULL;
    memcpy(p, dir, a);
    if (slash) p[a] = '/';
    memcpy(p + a + (size_t)slash, name, b + 1);
    return p;
}

static void free_tensors(gg_st_tensor *t, size_t n) {
    if (!t) return;
    for (size_t i = 0; i < n; i++) free((char *)t[i].name);
    free(t);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const gg_st_tensor *)a)->name, ((const gg_st_tensor *)b)->name);
}

typedef struct span {
    uint64_t begin, end;
    size_t idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* A JSON integer that is >= 0 (jansson already rejects integers beyond
 * the int64 range as a syntax error). */
static int get_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    if (x < 0) return -1;
    *out = (uint64_t)x;
    return 0;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* jansson's "near '...'" may quote raw control bytes from the input: keep
 * the message on one line. Returns -1 for `return one_line(err);`. */
static int one_line(gg_err *err) {
    if (err)
        for (char *p = err->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return -1;
}

static const char *json_hint(const json_error_t *e) {
    switch (json_error_code(e)) {
    case json_error_invalid_utf8: return " (invalid UTF-8)";
    case json_error_duplicate_key: return " (duplicate name)";
    case json_error_null_character:
    case json_error_null_byte_in_key: return " (embedded NUL)";
    default: return "";
    }
}

/* ---- one image ---------------------------------------------------------- */

/* Parse and validate one safetensors image buf[0..len). On success *out is
 * a malloc'd array of *nout tensors (names malloc'd, data into buf, file =
 * label), sorted by name. */
static int parse_image(const uint8_t *buf, size_t len, const char *label, gg_st_tensor **out,
                       size_t *nout, gg_err *err) {
    esc_buf eb;
    *out = NULL;
    *nout = 0;
    if (len < 8)
        return gg_errf(err, "%s: file is truncated: %zu bytes, shorter than the 8-byte header length",
                       label, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > ST_MAX_HEADER)
        return gg_errf(err, "%s: header length %llu at byte 0 is too large (limit %llu bytes)", label,
                       (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > (uint64_t)len - 8)
        return gg_errf(err,
                       "%s: file is truncated: header length %llu at byte 0 reaches beyond the "
                       "end of the file (%zu bytes, %zu after the length)",
                       label, (unsigned long long)hlen, len, len - 8);
    if (hlen == 0) return gg_errf(err, "%s: header length at byte 0 is 0 (no JSON header)", label);

    const uint8_t *data = buf + 8 + hlen;
    uint64_t dlen = (uint64_t)len - 8 - hlen;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        gg_errf(err, "%s: header JSON syntax error at line %d, column %d (file byte %llu): %s%s",
                label, jerr.line, jerr.column,
                (unsigned long long)(jerr.position >= 0 ? 8 + (uint64_t)jerr.position : 8),
                jerr.text, json_hint(&jerr));
        return one_line(err);
    }
    if (!json_is_object(root)) {
        gg_errf(err, "%s: header JSON top level is %s, expected an object", label, json_kind(root));
        json_decref(root);
        return -1;
    }

    size_t cap = json_object_size(root);
    gg_st_tensor *t = cap ? calloc(cap, sizeof *t) : NULL;
    span *sp = cap ? malloc(cap * sizeof *sp) : NULL;
    size_t n = 0;
    if (cap && (!t || !sp)) {
        gg_errf(err, "%s: out of memory for %zu header entries", label, cap);
        goto fail;
    }

    const char *key;
    json_t *val;
    void *it;
    for (it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
        key = json_object_iter_key(it);
        val = json_object_iter_value(it);
        size_t klen = json_object_iter_key_len(it);
        if (klen != strlen(key)) {
            gg_errf(err, "%s: tensor name '%s' contains an embedded NUL byte", label,
                    esc(&eb, key, klen));
            goto fail;
        }
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                gg_errf(err, "%s: \"__metadata__\" is %s, expected an object of strings", label,
                        json_kind(val));
                goto fail;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    gg_errf(err, "%s: \"__metadata__\" field '%s' is %s, expected a string", label,
                            esc(&eb, mk, strlen(mk)), json_kind(mv));
                    goto fail;
                }
            }
            continue;
        }
        if (klen == 0) {
            gg_errf(err, "%s: tensor with an empty name", label);
            goto fail;
        }
        const char *en = esc(&eb, key, klen);
        if (!json_is_object(val)) {
            gg_errf(err, "%s: tensor '%s': entry is %s, expected an object", label, en,
                    json_kind(val));
            goto fail;
        }
        gg_st_tensor *x = &t[n];

        /* dtype */
        json_t *jd = json_object_get(val, "dtype");
        if (!jd) {
            gg_errf(err, "%s: tensor '%s': missing field \"dtype\"", label, en);
            goto fail;
        }
        if (!json_is_string(jd)) {
            gg_errf(err, "%s: tensor '%s': field \"dtype\" is %s, expected a string", label, en,
                    json_kind(jd));
            goto fail;
        }
        const char *ds = json_string_value(jd);
        size_t dsl = json_string_length(jd);
        int di = -1;
        for (size_t k = 0; k < sizeof st_dtypes / sizeof st_dtypes[0]; k++)
            if (dsl == strlen(st_dtypes[k].name) && strcmp(ds, st_dtypes[k].name) == 0) di = (int)k;
        if (di < 0) {
            esc_buf eb2;
            gg_errf(err, "%s: tensor '%s': unknown dtype '%s'", label, en, esc(&eb2, ds, dsl));
            goto fail;
        }
        snprintf(x->dtype, sizeof x->dtype, "%s", st_dtypes[di].name);
        x->type = st_dtypes[di].type;

        /* shape */
        json_t *js = json_object_get(val, "shape");
        if (!js) {
            gg_errf(err, "%s: tensor '%s': missing field \"shape\"", label, en);
            goto fail;
        }
        if (!json_is_array(js)) {
            gg_errf(err, "%s: tensor '%s': field \"shape\" is %s, expected an array of integers",
                    label, en, json_kind(js));
            goto fail;
        }
        size_t nd = json_array_size(js);
        if (nd > GG_ST_MAX_DIMS) {
            gg_errf(err, "%s: tensor '%s': shape has %zu dims, more than the %d supported", label,
                    en, nd, GG_ST_MAX_DIMS);
            goto fail;
        }
        uint64_t nelem = 1;
        int ovf = 0;
        for (size_t d = 0; d < nd; d++) {
            json_t *jv = json_array_get(js, d);
            uint64_t v;
            if (get_u64(jv, &v) != 0) {
                gg_errf(err,
                        "%s: tensor '%s': shape[%zu] is %s, expected a non-negative integer",
                        label, en, d,
                        json_is_integer(jv) ? "a negative integer" : json_kind(jv));
                goto fail;
            }
            x->shape[d] = v;
            if (!ovf && __builtin_mul_overflow(nelem, v, &nelem)) ovf = 1;
        }
        x->ndim = (uint32_t)nd;
        /* a zero dim makes the product 0 regardless of overflow elsewhere */
        for (size_t d = 0; d < nd; d++)
            if (x->shape[d] == 0) ovf = 0, nelem = 0;
        uint64_t want = 0;
        if (ovf || __builtin_mul_overflow(nelem, (uint64_t)st_dtypes[di].size, &want)) {
            gg_errf(err, "%s: tensor '%s': shape size overflows 64 bits (%zu dims, first %llu)",
                    label, en, nd, (unsigned long long)x->shape[0]);
            goto fail;
        }

        /* data_offsets */
        json_t *jo = json_object_get(val, "data_offsets");
        if (!jo) {
            gg_errf(err, "%s: tensor '%s': missing field \"data_offsets\"", label, en);
            goto fail;
        }
        uint64_t b, e;
        if (!json_is_array(jo) || json_array_size(jo) != 2 ||
            get_u64(json_array_get(jo, 0), &b) != 0 || get_u64(json_array_get(jo, 1), &e) != 0) {
            gg_errf(err,
                    "%s: tensor '%s': field \"data_offsets\" must be [begin, end], two "
                    "non-negative integers",
                    label, en);
            goto fail;
        }
        if (b > e) {
            gg_errf(err, "%s: tensor '%s': data_offsets [%llu, %llu] have begin > end", label, en,
                    (unsigned long long)b, (unsigned long long)e);
            goto fail;
        }
        if (e > dlen) {
            gg_errf(err,
                    "%s: tensor '%s': data_offsets [%llu, %llu] end beyond the data buffer "
                    "(%llu bytes, starting at file byte %llu): file truncated?",
                    label, en, (unsigned long long)b, (unsigned long long)e,
                    (unsigned long long)dlen, (unsigned long long)(8 + hlen));
            goto fail;
        }
        if (e - b != want) {
            gg_errf(err,
                    "%s: tensor '%s': data_offsets [%llu, %llu] span %llu bytes but dtype %s "
                    "and shape (%llu elements) need %llu: size mismatch",
                    label, en, (unsigned long long)b, (unsigned long long)e,
                    (unsigned long long)(e - b), x->dtype, (unsigned long long)nelem,
                    (unsigned long long)want);
            goto fail;
        }
        x->name = xstrdup(key);
        if (!x->name) {
            gg_errf(err, "%s: out of memory", label);
            goto fail;
        }
        x->data = data + b;
        x->nbytes = want;
        x->file = label;
        sp[n].begin = b;
        sp[n].end = e;
        sp[n].idx = n;
        n++;
    }

    /* The tensors must tile the data buffer exactly. */
    if (n) qsort(sp, n, sizeof *sp, cmp_span);
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (sp[i].begin != pos) {
            esc_buf ea;
            const char *cur = esc(&eb, t[sp[i].idx].name, strlen(t[sp[i].idx].name));
            if (i == 0) {
                gg_errf(err,
                        "%s: hole in the data buffer: bytes [0, %llu) belong to no tensor "
                        "(first tensor '%s' begins at %llu)",
                        label, (unsigned long long)sp[i].begin, cur,
                        (unsigned long long)sp[i].begin);
            } else {
                const char *prev = esc(&ea, t[sp[i - 1].idx].name, strlen(t[sp[i - 1].idx].name));
                if (sp[i].begin < pos)
                    gg_errf(err,
                            "%s: tensors overlap: '%s' [%llu, %llu] and '%s' [%llu, %llu]", label,
                            prev, (unsigned long long)sp[i - 1].begin,
                            (unsigned long long)sp[i - 1].end, cur,
                            (unsigned long long)sp[i].begin, (unsigned long long)sp[i].end);
                else
                    gg_errf(err,
                            "%s: hole in the data buffer: bytes [%llu, %llu) between '%s' and "
                            "'%s' belong to no tensor",
                            label, (unsigned long long)pos, (unsigned long long)sp[i].begin, prev,
                            cur);
            }
            goto fail;
        }
        pos = sp[i].end;
    }
    if (pos != dlen) {
        if (n)
            gg_errf(err,
                    "%s: hole in the data buffer: %llu trailing bytes [%llu, %llu) after the last "
                    "tensor '%s' belong to no tensor",
                    label, (unsigned long long)(dlen - pos), (unsigned long long)pos,
                    (unsigned long long)dlen,
                    esc(&eb, t[sp[n - 1].idx].name, strlen(t[sp[n - 1].idx].name)));
        else
            gg_errf(err, "%s: hole in the data buffer: %llu bytes but no tensors", label,
                    (unsigned long long)dlen);
        goto fail;
    }

    if (n) qsort(t, n, sizeof *t, cmp_name);
    free(sp);
    json_decref(root);
    if (n == 0) {
        free(t);
        t = NULL;
    }
    *out = t;
    *nout = n;
    return 0;

fail:
    free_tensors(t, n);
    free(sp);
    json_decref(root);
    return -1;
}

/* ---- sets --------------------------------------------------------------- */

void gg_st_close(gg_st_set *s) {
    if (!s) return;
    free_tensors(s->t, s->n);
    for (size_t i = 0; i < s->nfiles; i++) {
        if (s->files[i].mapped && s->files[i].map) munmap(s->files[i].map, s->files[i].len);
        free(s->files[i].path);
    }
    free(s->files);
    free(s);
}

static gg_st_set *set_new(size_t nfiles, gg_err *err) {
    gg_st_set *s = calloc(1, sizeof *s);
    if (s) s->files = calloc(nfiles ? nfiles : 1, sizeof *s->files);
    if (!s || !s->files) {
        free(s);
        gg_errf(err, "out of memory");
        return NULL;
    }
    return s;
}

/* mmap a whole file read-only; the fd is closed before returning. */
static int map_file(st_file *f, gg_err *err) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return gg_errf(err, "%s: cannot open: %s", f->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return gg_errf(err, "%s: cannot stat: %s", f->path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return gg_errf(err, "%s: not a regular file", f->path);
    }
    if (st.st_size < 8) {
        close(fd);
        return gg_errf(err,
                       "%s: file is truncated: %lld bytes, shorter than the 8-byte header length",
                       f->path, (long long)st.st_size);
    }
    if ((unsigned long long)st.st_size > (unsigned long long)SIZE_MAX) {
        close(fd);
        return gg_errf(err, "%s: file too large to map (%lld bytes)", f->path,
                       (long long)st.st_size);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return gg_errf(err, "%s: cannot mmap: %s", f->path, strerror(e));
    f->map = p;
    f->len = (size_t)st.st_size;
    f->mapped = 1;
    return 0;
}

int gg_st_open_mem(gg_st_set **out, const void *buf, size_t len, const char *label, gg_err *err) {
    *out = NULL;
    if (!label) label = "<memory>";
    if (!buf && len) return gg_errf(err, "%s: NULL buffer", label);
    if (len < 8)
        return gg_errf(err, "%s: file is truncated: %zu bytes, shorter than the 8-byte header length",
                       label, len);
    gg_st_set *s = set_new(1, err);
    if (!s) return -1;
    s->nfiles = 1;
    s->files[0].path = xstrdup(label);
    if (!s->files[0].path) {
        gg_st_close(s);
        return gg_errf(err, "%s: out of memory", label);
    }
    s->files[0].map = (void *)buf;
    s->files[0].len = len;
    s->total = len;
    if (parse_image(buf, len, s->files[0].path, &s->t, &s->n, err) != 0) {
        gg_st_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

int gg_st_open_file(gg_st_set **out, const char *path, gg_err *err) {
    *out = NULL;
    gg_st_set *s = set_new(1, err);
    if (!s) return -1;
    s->nfiles = 1;
    s->files[0].path = xstrdup(path);
    if (!s->files[0].path) {
        gg_st_close(s);
        return gg_errf(err, "%s: out of memory", path);
    }
    if (map_file(&s->files[0], err) != 0 ||
        parse_image(s->files[0].map, s->files[0].len, s->files[0].path, &s->t, &s->n, err) != 0) {
        gg_st_close(s);
        return -1;
    }
    s->total = s->files[0].len;
    *out = s;
    return 0;
}

static int valid_shard_name(const json_t *v) {
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n != strlen(s)) return 0;
    if (strchr(s, '/')) return 0;
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return 0;
    return 1;
}

static int open_index(gg_st_set **out, const char *dir, const char *ipath, gg_err *err) {
    esc_buf eb, eb2;
    json_error_t jerr;
    json_t *root = json_load_file(ipath, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        gg_errf(err, "%s: JSON error at line %d, column %d: %s%s", ipath, jerr.line, jerr.column,
                jerr.text, json_hint(&jerr));
        return one_line(err);
    }
    gg_st_set *s = NULL;
    json_t *shard_ids = json_object(); /* filename -> index into s->files */
    gg_st_tensor **per = NULL;         /* per-shard parsed tensors */
    size_t *per_n = NULL;
    size_t nshards = 0;
    if (!shard_ids) {
        gg_errf(err, "%s: out of memory", ipath);
        goto fail;
    }
    if (!json_is_object(root)) {
        gg_errf(err, "%s: top level is %s, expected an object", ipath, json_kind(root));
        goto fail;
    }
    json_t *wm = json_object_get(root, "weight_map");
    if (!wm) {
        gg_errf(err, "%s: missing field \"weight_map\"", ipath);
        goto fail;
    }
    if (!json_is_object(wm)) {
        gg_errf(err, "%s: field \"weight_map\" is %s, expected an object", ipath, json_kind(wm));
        goto fail;
    }
    if (json_object_size(wm) == 0) {
        gg_errf(err, "%s: \"weight_map\" is empty", ipath);
        goto fail;
    }

    /* Validate entries and collect the distinct shard file names. */
    void *it;
    for (it = json_object_iter(wm); it; it = json_object_iter_next(wm, it)) {
        const char *k = json_object_iter_key(it);
        size_t kl = json_object_iter_key_len(it);
        json_t *v = json_object_iter_value(it);
        if (kl == 0 || kl != strlen(k)) {
            gg_errf(err, "%s: \"weight_map\" has an empty or NUL-containing tensor name '%s'",
                    ipath, esc(&eb, k, kl));
            goto fail;
        }
        if (!json_is_string(v)) {
            gg_errf(err, "%s: \"weight_map\" entry for tensor '%s' is %s, expected a file name",
                    ipath, esc(&eb, k, kl), json_kind(v));
            goto fail;
        }
        if (!valid_shard_name(v)) {
            gg_errf(err,
                    "%s: \"weight_map\" entry for tensor '%s' names '%s', not a plain file name "
                    "in the same folder",
                    ipath, esc(&eb, k, kl), esc(&eb2, json_string_value(v), json_string_length(v)));
            goto fail;
        }
        const char *fn = json_string_value(v);
        if (!json_object_get(shard_ids, fn)) {
            if (json_object_set_new(shard_ids, fn, json_integer((json_int_t)nshards)) != 0) {
                gg_errf(err, "%s: out of memory", ipath);
                goto fail;
            }
            nshards++;
        }
    }

    s = set_new(nshards, err);
    per = calloc(nshards, sizeof *per);
    per_n = calloc(nshards, sizeof *per_n);
    if (!s || !per || !per_n) {
        gg_errf(err, "%s: out of memory", ipath);
        goto fail;
    }
    const char *fn;
    json_t *idv;
    s->nfiles = nshards; /* files[] is zeroed: gg_st_close copes with a partial fill */
    json_object_foreach(shard_ids, fn, idv) {
        size_t i = (size_t)json_integer_value(idv);
        s->files[i].path = path_join(dir, fn);
        if (!s->files[i].path) {
            gg_errf(err, "%s: out of memory", ipath);
            goto fail;
        }
    }
    for (size_t i = 0; i < nshards; i++) {
        if (map_file(&s->files[i], err) != 0) {
            if (err) {
                size_t ml = strlen(err->msg);
                snprintf(err->msg + ml, sizeof err->msg - ml, " (shard named by %s)",
                         ST_INDEX_NAME);
            }
            goto fail;
        }
        s->total += s->files[i].len;
        if (parse_image(s->files[i].map, s->files[i].len, s->files[i].path, &per[i], &per_n[i],
                        err) != 0)
            goto fail;
    }

    /* Every tensor of every shard must be mapped by the index to that shard. */
    size_t total_n = 0;
    for (size_t i = 0; i < nshards; i++) {
        for (size_t j = 0; j < per_n[i]; j++) {
            const gg_st_tensor *x = &per[i][j];
            json_t *v = json_object_get(wm, x->name);
            if (!v) {
                gg_errf(err, "%s: tensor '%s' is not in the index %s (inconsistent checkpoint)",
                        s->files[i].path, esc(&eb, x->name, strlen(x->name)), ST_INDEX_NAME);
                goto fail;
            }
            size_t id = (size_t)json_integer_value(json_object_get(shard_ids, json_string_value(v)));
            if (id != i) {
                gg_errf(err,
                        "%s: tensor '%s' is also present here, but the index maps it to %s "
                        "(inconsistent checkpoint)",
                        s->files[i].path, esc(&eb, x->name, strlen(x->name)),
                        esc(&eb2, json_string_value(v), json_string_length(v)));
                goto fail;
            }
        }
        total_n += per_n[i];
    }
    /* ...and every tensor the index names must be in its shard. */
    if (total_n != json_object_size(wm)) {
        const char *k;
        json_t *v;
        json_object_foreach(wm, k, v) {
            size_t id = (size_t)json_integer_value(json_object_get(shard_ids, json_string_value(v)));
            gg_st_tensor key;
            memset(&key, 0, sizeof key);
            key.name = k;
            if (!per_n[id] || !bsearch(&key, per[id], per_n[id], sizeof key, cmp_name)) {
                gg_errf(err, "%s: tensor '%s' named by the index is missing", s->files[id].path,
                        esc(&eb, k, strlen(k)));
                goto fail;
            }
        }
        gg_errf(err, "%s: index and shards disagree on the tensor count", ipath); /* unreachable */
        goto fail;
    }

    /* Merge. */
    s->t = total_n ? calloc(total_n, sizeof *s->t) : NULL;
    if (total_n && !s->t) {
        gg_errf(err, "%s: out of memory", ipath);
        goto fail;
    }
    for (size_t i = 0; i < nshards; i++) {
        if (per_n[i]) memcpy(s->t + s->n, per[i], per_n[i] * sizeof *s->t);
        s->n += per_n[i];
        free(per[i]); /* names now owned by s->t */
        per[i] = NULL;
        per_n[i] = 0;
    }
    if (s->n) qsort(s->t, s->n, sizeof *s->t, cmp_name);
    for (size_t i = 1; i < s->n; i++) {
        if (strcmp(s->t[i - 1].name, s->t[i].name) == 0) { /* cannot happen: checked above */
            gg_errf(err, "%s: duplicate tensor '%s' across shards", ipath,
                    esc(&eb, s->t[i].name, strlen(s->t[i].name)));
            goto fail;
        }
    }
    free(per);
    free(per_n);
    json_decref(shard_ids);
    json_decref(root);
    *out = s;
    return 0;

fail:
    if (per)
        for (size_t i = 0; i < nshards; i++) free_tensors(per[i], per_n[i]);
    free(per);
    free(per_n);
    gg_st_close(s);
    json_decref(shard_ids);
    json_decref(root);
    return -1;
}

int gg_st_open_dir(gg_st_set **out, const char *dir, gg_err *err) {
    *out = NULL;
    char *ipath = path_join(dir, ST_INDEX_NAME);
    if (!ipath) return gg_errf(err, "%s: out of memory", dir);
    struct stat st;
    if (stat(ipath, &st) == 0) {
        int rc = open_index(out, dir, ipath, err);
        free(ipath);
        return rc;
    }
    if (errno != ENOENT && errno != ENOTDIR) {
        gg_errf(err, "%s: cannot stat: %s", ipath, strerror(errno));
        free(ipath);
        return -1;
    }
    free(ipath);
    char *spath = path_join(dir, ST_SINGLE_NAME);
    if (!spath) return gg_errf(err, "%s: out of memory", dir);
    if (stat(spath, &st) != 0) {
        int e = errno;
        free(spath);
        if (e == ENOENT || e == ENOTDIR)
            return gg_errf(err, "%s: no %s or %s", dir, ST_SINGLE_NAME, ST_INDEX_NAME);
        return gg_errf(err, "%s/%s: cannot stat: %s", dir, ST_SINGLE_NAME, strerror(e));
    }
    int rc = gg_st_open_file(out, spath, err);
    free(spath);
    return rc;
}

size_t gg_st_count(const gg_st_set *s) { return s ? s->n : 0; }

const gg_st_tensor *gg_st_at(const gg_st_set *s, size_t i) {
    return s && i < s->n ? &s->t[i] : NULL;
}

const gg_st_tensor *gg_st_find(const gg_st_set *s, const char *name) {
    if (!s || !name) return NULL;
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->t[mid].name, name);
        if (c == 0) return &s->t[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

uint64_t gg_st_total_bytes(const gg_st_set *s) { return s ? s->total : 0; }

/* ---- writing ------------------------------------------------------------ */

int gg_write_atomic(const char *path, const void *const *parts, const size_t *lens, size_t n, gg_err *err) {
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 5);
    if (!tmp) return gg_errf(err, "%s: out of memory", path);
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        gg_errf(err, "%s: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *q = parts[i];
        size_t left = lens[i];
        while (left) {
            ssize_t k = write(fd, q, left > (1u << 30) ? (1u << 30) : left);
            if (k < 0) {
                if (errno == EINTR) continue;
                gg_errf(err, "%s: write: %s", tmp, strerror(errno));
                goto fail;
            }
            q += k;
            left -= (size_t)k;
        }
    }
    if (fsync(fd) != 0) {
        gg_errf(err, "%s: fsync: %s", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        gg_errf(err, "%s: close: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        gg_errf(err, "%s: rename to %s: %s", tmp, path, strerror(errno));
        goto fail;
    }
    /* make the rename durable */
    char *slash = strrchr(tmp, '/');
    const char *d = slash ? (slash == tmp ? "/" : (*slash = 0, tmp)) : ".";
    int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(tmp);
    return 0;
fail:
    if (fd >= 0) close(fd);
    unlink(tmp);
    free(tmp);
    return -1;
}

/* mkdir -p of the folders above path's last component. */
static int make_parents(const char *path, gg_err *err) {
    size_t n = strlen(path);
    char *p = strdup(path);
    if (!p) return gg_errf(err, "%s: out of memory", path);
    while (n > 1 && p[n - 1] == '/') p[--n] = 0;
    char *last = strrchr(p, '/');
    if (last && last != p) {
        *last = 0;
        for (char *q = p + 1;; q++) {
            if (*q != '/' && *q) continue;
            char c = *q;
            *q = 0;
            struct stat sb;
            int bad = 0;
            if (stat(p, &sb) != 0) bad = mkdir(p, 0755) != 0 && errno != EEXIST;
            else if (!S_ISDIR(sb.st_mode)) bad = 1, errno = ENOTDIR;
            if (bad) {
                if (errno == ENOTDIR) gg_errf(err, "%s: exists and is not a directory", p);
                else gg_errf(err, "%s: cannot create the folder: %s", p, strerror(errno));
                free(p);
                return -1;
            }
            if (!c) break;
            *q = c;
        }
    }
    free(p);
    return 0;
}

static char active_stage[4096];

const char *gg_dir_stage_active(void) { return active_stage; }

void gg_dir_abort_signal(const char *stage) {
    static char buf[8192]; /* static: no stack growth in a handler */
    int fd = open(stage, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        long k;
        while ((k = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0)
            for (long off = 0; off < k;) {
                struct linux_dirent64_ {
                    uint64_t ino;
                    int64_t off;
                    unsigned short reclen;
                    unsigned char type;
                    char name[];
                } *e = (void *)(buf + off);
                if (strcmp(e->name, ".") && strcmp(e->name, "..")) unlinkat(fd, e->name, 0);
                off += e->reclen;
            }
        close(fd);
    }
    rmdir(stage);
}

int gg_dir_stage(const char *dir, char *stage, size_t cap, gg_err *err) {
    struct stat sb;
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) return gg_errf(err, "%s: exists and is not a directory", dir);
    if ((size_t)snprintf(stage, cap, "%s.tmp-XXXXXX", dir) >= cap) return gg_errf(err, "%s: path too long", dir);
    if (make_parents(dir, err)) return -1;
    if (!mkdtemp(stage)) return gg_errf(err, "%s: cannot create: %s", stage, strerror(errno));
    chmod(stage, 0755);
    if (strlen(stage) < sizeof active_stage) memcpy(active_stage, stage, strlen(stage) + 1);
    return 0;
}

void gg_dir_abort(const char *stage) {
    if (strcmp(stage, active_stage) == 0) active_stage[0] = 0;
    DIR *d = opendir(stage);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
                (size_t)snprintf(p, sizeof p, "%s/%s", stage, e->d_name) < sizeof p)
                unlink(p);
        closedir(d);
    }
    rmdir(stage);
}

static void fsync_dir(const char *path) {
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

int gg_dir_commit(const char *stage, const char *dir, gg_err *err) {
    if (strcmp(stage, active_stage) == 0) active_stage[0] = 0; /* from here on DIR holds the files */
    fsync_dir(stage);
    if (rename(stage, dir) == 0) { /* DIR did not exist (or was an empty folder) */
        char *p = strdup(dir), *slash = p ? strrchr(p, '/') : NULL;
        if (p) fsync_dir(slash ? (slash == p ? "/" : (*slash = 0, p)) : ".");
        free(p);
        return 0;
    }
    if (errno != EEXIST && errno != ENOTEMPTY) {
        gg_errf(err, "%s: rename to %s: %s", stage, dir, strerror(errno));
        gg_dir_abort(stage);
        return -1;
    }
    DIR *d = opendir(stage);
    if (!d) {
        gg_errf(err, "%s: %s", stage, strerror(errno));
        gg_dir_abort(stage);
        return -1;
    }
    struct dirent *e;
    char a[4096], b[4096];
    int rc = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if ((size_t)snprintf(a, sizeof a, "%s/%s", stage, e->d_name) >= sizeof a ||
            (size_t)snprintf(b, sizeof b, "%s/%s", dir, e->d_name) >= sizeof b) {
            rc = gg_errf(err, "%s/%s: path too long", dir, e->d_name);
            break;
        }
        if (rename(a, b) != 0) {
            rc = gg_errf(err, "%s: rename to %s: %s", a, b, strerror(errno));
            break;
        }
    }
    closedir(d);
    fsync_dir(dir);
    gg_dir_abort(stage);
    return rc;
}

typedef struct wsort {
    const gg_st_wtensor *t;
    uint64_t nbytes;
} wsort;

static int cmp_wsort(const void *a, const void *b) {
    return strcmp(((const wsort *)a)->t->name, ((const wsort *)b)->t->name);
}

int gg_st_write(const char *path, const gg_st_wtensor *t, size_t n, const char *const *meta, size_t n_meta,
                gg_err *err) {
    esc_buf eb;
    int rc = -1;
    wsort *w = calloc(n ? n : 1, sizeof *w);
    const void **parts = calloc(n + 2, sizeof *parts);
    size_t *lens = calloc(n + 2, sizeof *lens);
    json_t *root = json_object(), *md = NULL;
    char *hdr = NULL;
    if (!w || !parts || !lens || !root) {
        gg_errf(err, "%s: out of memory", path);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const gg_st_wtensor *x = &t[i];
        const char *nm = x->name ? x->name : "";
        size_t nl = strlen(nm);
        if (nl == 0) {
            gg_errf(err, "%s: tensor %zu has an empty name", path, i);
            goto out;
        }
        if (strcmp(nm, "__metadata__") == 0) {
            gg_errf(err, "%s: tensor name '__metadata__' is reserved", path);
            goto out;
        }
        if (gg_utf8_invalid_at(nm, nl) != (size_t)-1) {
            gg_errf(err, "%s: tensor name '%s' is not valid UTF-8", path, esc(&eb, nm, nl));
            goto out;
        }
        int di = -1;
        for (size_t k = 0; x->dtype && k < sizeof st_dtypes / sizeof st_dtypes[0]; k++)
            if (strcmp(x->dtype, st_dtypes[k].name) == 0) di = (int)k;
        if (di < 0) {
            gg_errf(err, "%s: tensor '%s': unknown dtype '%s'", path, esc(&eb, nm, nl), x->dtype ? x->dtype : "(null)");
            goto out;
        }
        if (x->ndim > GG_ST_MAX_DIMS) {
            gg_errf(err, "%s: tensor '%s': %u dims, more than %d", path, esc(&eb, nm, nl), x->ndim, GG_ST_MAX_DIMS);
            goto out;
        }
        uint64_t nb = st_dtypes[di].size;
        int zero = 0;
        for (uint32_t d = 0; d < x->ndim; d++) zero |= x->shape[d] == 0;
        for (uint32_t d = 0; d < x->ndim && !zero; d++)
            if (x->shape[d] > (uint64_t)INT64_MAX || __builtin_mul_overflow(nb, x->shape[d], &nb)) {
                gg_errf(err, "%s: tensor '%s': shape size overflows 64 bits", path, esc(&eb, nm, nl));
                goto out;
            }
        if (zero) nb = 0;
        if (nb && !x->data) {
            gg_errf(err, "%s: tensor '%s': no data", path, esc(&eb, nm, nl));
            goto out;
        }
        w[i].t = x;
        w[i].nbytes = nb;
    }
    if (n) qsort(w, n, sizeof *w, cmp_wsort);
    for (size_t i = 1; i < n; i++)
        if (strcmp(w[i].t->name, w[i - 1].t->name) == 0) {
            gg_errf(err, "%s: tensor name '%s' appears twice", path, esc(&eb, w[i].t->name, strlen(w[i].t->name)));
            goto out;
        }
    if (n_meta) {
        if (!(md = json_object()) || json_object_set_new(root, "__metadata__", md)) {
            gg_errf(err, "%s: out of memory", path);
            goto out;
        }
        for (size_t i = 0; i < n_meta; i++) {
            const char *k = meta[2 * i], *v = meta[2 * i + 1];
            if (!k || !v || gg_utf8_invalid_at(k, strlen(k)) != (size_t)-1 ||
                gg_utf8_invalid_at(v, strlen(v)) != (size_t)-1) {
                gg_errf(err, "%s: metadata entry %zu is NULL or not valid UTF-8", path, i);
                goto out;
            }
            if (json_object_get(md, k)) {
                gg_errf(err, "%s: metadata key '%s' appears twice", path, esc(&eb, k, strlen(k)));
                goto out;
            }
            if (json_object_set_new(md, k, json_string(v))) {
                gg_errf(err, "%s: out of memory", path);
                goto out;
            }
        }
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const gg_st_wtensor *x = w[i].t;
        json_t *e = json_object(), *sh = json_array(), *dof = json_array();
        int bad = !e || !sh || !dof;
        for (uint32_t d = 0; d < x->ndim && !bad; d++)
            bad = json_array_append_new(sh, json_integer((json_int_t)x->shape[d]));
        bad = bad || json_array_append_new(dof, json_integer((json_int_t)off)) ||
              json_array_append_new(dof, json_integer((json_int_t)(off + w[i].nbytes)));
        bad = bad || json_object_set_new(e, "dtype", json_string(x->dtype));
        bad = bad || json_object_set_new(e, "shape", sh);
        sh = NULL;
        bad = bad || json_object_set_new(e, "data_offsets", dof);
        dof = NULL;
        bad = bad || json_object_set_new(root, x->name, e);
        e = NULL;
        if (bad) {
            json_decref(sh);
            json_decref(dof);
            gg_errf(err, "%s: out of memory", path);
            goto out;
        }
        off += w[i].nbytes;
        parts[2 + i] = x->data;
        lens[2 + i] = (size_t)w[i].nbytes;
    }
    hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!hdr) {
        gg_errf(err, "%s: out of memory", path);
        goto out;
    }
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
    char *h2 = realloc(hdr, padded + 1);
    if (!h2) {
        gg_errf(err, "%s: out of memory", path);
        goto out;
    }
    hdr = h2;
    memset(hdr + hl, ' ', padded - hl);
    hdr[padded] = '\0';
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    parts[0] = le;
    lens[0] = 8;
    parts[1] = hdr;
    lens[1] = padded;
    rc = gg_write_atomic(path, parts, lens, n + 2, err);
out:
    free(hdr);
    json_decref(root);
    free(w);
    free(parts);
    free(lens);
    return rc;
}
