/* gguf.c — a .gg model → a GGUF v3 file for llama.cpp (gguf.h): header and
 * key/values in memory, tensor data streamed (dequantize → permute → F32 /
 * F16 / Q8_0) into PATH.tmp, fsync, rename. */
#include "convert/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GGUF_ALIGN 32
#define GGUF_NAME_MAX 96

enum { GV_U8 = 0, GV_I8, GV_U16, GV_I16, GV_U32, GV_I32, GV_F32, GV_BOOL, GV_STR, GV_ARR, GV_U64, GV_I64, GV_F64 };
enum { GT_F32 = GG_GGUF_F32, GT_F16 = GG_GGUF_F16, GT_Q4_0 = GG_GGUF_Q4_0, GT_Q8_0 = GG_GGUF_Q8_0 };

/* ---- a growable byte buffer ---------------------------------------------- */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->n + n)
            nc *= 2;
        uint8_t *p = realloc(b->p, nc);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = nc;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) {
    uint8_t d[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, d, 4);
}
static void put_u64(buf *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}
static void put_f32(buf *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(b, u);
}
static void put_str(buf *b, const char *s, size_t n) {
    put_u64(b, n);
    put(b, s, n);
}

/* ---- key/values ------------------------------------------------------------ */

typedef struct gguf_w {
    buf kv;
    uint64_t nkv;
} gguf_w;

static void kv_key(gguf_w *w, const char *k, uint32_t type) {
    put_str(&w->kv, k, strlen(k));
    put_u32(&w->kv, type);
    w->nkv++;
}
static void kv_u32(gguf_w *w, const char *k, uint32_t v) {
    kv_key(w, k, GV_U32);
    put_u32(&w->kv, v);
}
static void kv_f32(gguf_w *w, const char *k, float v) {
    kv_key(w, k, GV_F32);
    put_f32(&w->kv, v);
}
static void kv_bool(gguf_w *w, const char *k, int v) {
    kv_key(w, k, GV_BOOL);
    uint8_t c = v ? 1 : 0;
    put(&w->kv, &c, 1);
}
static void kv_str(gguf_w *w, const char *k, const char *s, size_t n) {
    kv_key(w, k, GV_STR);
    put_str(&w->kv, s, n);
}
static void kv_arr(gguf_w *w, const char *k, uint32_t elem, uint64_t n) {
    kv_key(w, k, GV_ARR);
    put_u32(&w->kv, elem);
    put_u64(&w->kv, n);
}

/* ---- the export ------------------------------------------------------------ */

typedef struct out_t {
    char name[GGUF_NAME_MAX];
    const gg_tensor *src; /* NULL: rope_freqs (from ex->rope_freqs) */
    uint32_t ndim;
    uint64_t ne[2]; /* ggml order: ne[0] = columns */
    uint32_t type;  /* GT_* */
    uint64_t heads; /* > 0: permute rows per head (llama q/k) */
    uint64_t nbytes, offset;
} out_t;

typedef struct exporter {
    const gg_file *f;
    const char *label;
    char arch[16]; /* GGUF architecture */
    int permute;
    int64_t vocab, hidden, n_layers, n_heads, n_kv, head_dim, ffn, ctx;
    double eps, theta;
    float *rope_freqs; /* llama3: head_dim/2 factors */
    out_t *out;
    size_t n;
    gg_err *err;
} exporter;

static int get_i64(exporter *ex, const char *k, int64_t *v) {
    if (gg_meta_get_i64(ex->f, k, v, ex->err)) return gg_err_prefix(ex->err, "%s", ex->label);
    return 0;
}
static int get_f64(exporter *ex, const char *k, double *v) {
    if (gg_meta_get_f64(ex->f, k, v, ex->err)) return gg_err_prefix(ex->err, "%s", ex->label);
    return 0;
}
static int get_strz(exporter *ex, const char *k, char *out, size_t cap) {
    gg_str s;
    if (gg_meta_get_str(ex->f, k, &s, ex->err)) return gg_err_prefix(ex->err, "%s", ex->label);
    if (s.len >= cap) return gg_errf(ex->err, "%s: metadata '%s' is too long", ex->label, k);
    memcpy(out, s.ptr, s.len);
    out[s.len] = 0;
    return 0;
}
/* Optional bool / f64: *v unchanged when absent. */
static int opt_bool(exporter *ex, const char *k, int *v) {
    return gg_meta_find(ex->f, k)
               ? (gg_meta_get_bool(ex->f, k, v, ex->err) ? gg_err_prefix(ex->err, "%s", ex->label) : 0)
               : 0;
}
static int opt_f64(exporter *ex, const char *k, double *v) { return gg_meta_find(ex->f, k) ? get_f64(ex, k, v) : 0; }

static const struct {
    const char *canon, *gguf;
} LAYER_NAMES[] = {
    {"attn_norm.weight", "attn_norm.weight"}, {"attn.q.weight", "attn_q.weight"},
    {"attn.k.weight", "attn_k.weight"},       {"attn.v.weight", "attn_v.weight"},
    {"attn.o.weight", "attn_output.weight"},  {"attn.q.bias", "attn_q.bias"},
    {"attn.k.bias", "attn_k.bias"},           {"attn.v.bias", "attn_v.bias"},
    {"attn.o.bias", "attn_output.bias"},      {"mlp_norm.weight", "ffn_norm.weight"},
    {"mlp.gate.weight", "ffn_gate.weight"},   {"mlp.up.weight", "ffn_up.weight"},
    {"mlp.down.weight", "ffn_down.weight"},
};

static int map_name(exporter *ex, const gg_tensor *t, out_t *o) {
    const char *n = t->name;
    if (strcmp(n, "embed.weight") == 0) return snprintf(o->name, sizeof o->name, "token_embd.weight"), 0;
    if (strcmp(n, "final_norm.weight") == 0) return snprintf(o->name, sizeof o->name, "output_norm.weight"), 0;
    if (strcmp(n, "lm_head.weight") == 0) return snprintf(o->name, sizeof o->name, "output.weight"), 0;
    if (strncmp(n, "layers.", 7) == 0) {
        const char *s = n + 7;
        uint64_t L = 0;
        size_t nd = 0;
        while (s[nd] >= '0' && s[nd] <= '9' && nd < 9)
            L = L * 10 + (uint64_t)(s[nd++] - '0');
        if (nd && s[nd] == '.' && L < (uint64_t)ex->n_layers)
            for (size_t k = 0; k < sizeof LAYER_NAMES / sizeof *LAYER_NAMES; k++)
                if (strcmp(s + nd + 1, LAYER_NAMES[k].canon) == 0) {
                    snprintf(o->name, sizeof o->name, "blk.%llu.%s", (unsigned long long)L, LAYER_NAMES[k].gguf);
                    const char *r = s + nd + 1;
                    if (ex->permute && (strncmp(r, "attn.q.", 7) == 0 || strncmp(r, "attn.k.", 7) == 0))
                        o->heads = (uint64_t)(r[5] == 'q' ? ex->n_heads : ex->n_kv);
                    return 0;
                }
    }
    return gg_errf(ex->err, "%s: tensor '%s' has no llama.cpp (GGUF %s) name", ex->label, n, ex->arch);
}

static uint64_t type_nbytes(uint32_t type, uint64_t nelem) {
    return type == GT_F32 ? nelem * 4 : type == GT_F16 ? nelem * 2 : type == GT_Q4_0 ? nelem / 32 * 18 : nelem / 32 * 34;
}

static int plan_tensors(exporter *ex, gg_gguf_type type) {
    size_t nt = gg_tensor_count(ex->f);
    ex->out = calloc(nt + 1, sizeof *ex->out);
    if (!ex->out) return gg_errf(ex->err, "out of memory");
    for (size_t i = 0; i < nt; i++) {
        const gg_tensor *t = gg_tensor_at(ex->f, i);
        out_t *o = &ex->out[ex->n++];
        o->src = t;
        if (map_name(ex, t, o)) return -1;
        for (size_t j = 0; j + 1 < ex->n; j++)
            if (strcmp(ex->out[j].name, o->name) == 0)
                return gg_errf(ex->err, "%s: tensor '%s' appears twice", ex->label, t->name);
        if (t->ndim < 1 || t->ndim > 2)
            return gg_errf(ex->err, "%s: tensor '%s' has %u dimensions, expected 1 or 2", ex->label, t->name, t->ndim);
        o->ndim = t->ndim;
        uint64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
        o->ne[0] = cols;
        o->ne[1] = t->ndim == 2 ? rows : 1;
        uint64_t prows = t->ndim == 2 ? rows : cols; /* rows the permutation acts on */
        if (o->heads && (prows % (2 * o->heads) != 0 || prows / o->heads != (uint64_t)ex->head_dim))
            return gg_errf(ex->err, "%s: tensor '%s': %llu rows do not split into %llu heads of %lld", ex->label,
                           t->name, (unsigned long long)prows, (unsigned long long)o->heads, (long long)ex->head_dim);
        if (t->ndim == 1)
            o->type = GT_F32;
        else if (type == GG_GGUF_F32)
            o->type = GT_F32;
        else if ((type == GG_GGUF_Q8_0 || type == GG_GGUF_Q4_0) && cols % 32 == 0)
            o->type = (uint32_t)type;
        else
            o->type = GT_F16;
        o->nbytes = type_nbytes(o->type, rows * cols);
    }
    if (ex->rope_freqs) {
        out_t *o = &ex->out[ex->n++];
        snprintf(o->name, sizeof o->name, "rope_freqs.weight");
        o->ndim = 1;
        o->ne[0] = (uint64_t)ex->head_dim / 2;
        o->ne[1] = 1;
        o->type = GT_F32;
        o->nbytes = o->ne[0] * 4;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < ex->n; i++) {
        ex->out[i].offset = off;
        off += (ex->out[i].nbytes + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN;
    }
    return 0;
}

static int read_config(exporter *ex) {
    char arch[32], s[32];
    if (get_strz(ex, "general.architecture", arch, sizeof arch)) return -1;
    if (strcmp(arch, "llama") == 0 || strcmp(arch, "mistral") == 0) {
        snprintf(ex->arch, sizeof ex->arch, "llama");
        ex->permute = 1;
    } else if (strcmp(arch, "qwen2") == 0) {
        snprintf(ex->arch, sizeof ex->arch, "qwen2");
    } else {
        return gg_errf(ex->err, "%s: general.architecture '%s' has no GGUF export (llama, mistral, qwen2 only)",
                       ex->label, arch);
    }
    if (get_i64(ex, "model.vocab_size", &ex->vocab) || get_i64(ex, "model.hidden_size", &ex->hidden) ||
        get_i64(ex, "model.n_layers", &ex->n_layers) || get_i64(ex, "model.n_heads", &ex->n_heads) ||
        get_i64(ex, "model.n_kv_heads", &ex->n_kv) || get_i64(ex, "model.head_dim", &ex->head_dim) ||
        get_i64(ex, "model.ffn_size", &ex->ffn) || get_i64(ex, "model.context_length", &ex->ctx) ||
        get_f64(ex, "model.norm_eps", &ex->eps) || get_f64(ex, "model.rope.theta", &ex->theta))
        return -1;
    const int64_t *pos[] = {&ex->vocab, &ex->hidden,   &ex->n_layers, &ex->n_heads,
                            &ex->n_kv,  &ex->head_dim, &ex->ffn,      &ex->ctx};
    static const char *const pk[] = {"model.vocab_size", "model.hidden_size", "model.n_layers", "model.n_heads",
                                     "model.n_kv_heads", "model.head_dim",    "model.ffn_size", "model.context_length"};
    for (size_t k = 0; k < 8; k++)
        if (*pos[k] <= 0 || *pos[k] > 0xffffffffLL)
            return gg_errf(ex->err, "%s: metadata '%s' = %lld is out of range", ex->label, pk[k], (long long)*pos[k]);
    if (ex->head_dim % 2)
        return gg_errf(ex->err, "%s: metadata 'model.head_dim' = %lld is odd", ex->label, (long long)ex->head_dim);
    if (get_strz(ex, "model.norm", s, sizeof s)) return -1;
    if (strcmp(s, "rms") != 0)
        return gg_errf(ex->err, "%s: metadata 'model.norm' = '%s': GGUF export supports rms only", ex->label, s);
    if (get_strz(ex, "model.mlp", s, sizeof s)) return -1;
    if (strcmp(s, "swiglu") != 0)
        return gg_errf(ex->err, "%s: metadata 'model.mlp' = '%s': GGUF export supports swiglu only", ex->label, s);
    int par = 0;
    double scale = 1;
    if (opt_bool(ex, "model.parallel_attn", &par) || opt_f64(ex, "model.embed_scale", &scale)) return -1;
    if (par)
        return gg_errf(ex->err, "%s: metadata 'model.parallel_attn' is true: not supported by GGUF export", ex->label);
    if (scale != 1)
        return gg_errf(ex->err, "%s: metadata 'model.embed_scale' = %g: not supported by GGUF export", ex->label,
                       scale);
    return 0;
}

/* RoPE keys; llama3 scaling → ex->rope_freqs (llama.cpp divides each base
 * frequency by its factor). */
static int rope_meta(exporter *ex, gguf_w *w) {
    char key[96], s[32] = "default";
    if (gg_meta_find(ex->f, "model.rope.type") && get_strz(ex, "model.rope.type", s, sizeof s)) return -1;
    snprintf(key, sizeof key, "%s.rope.freq_base", ex->arch);
    kv_f32(w, key, (float)ex->theta);
    if (strcmp(s, "default") == 0) return 0;
    double factor;
    if (get_f64(ex, "model.rope.factor", &factor)) return -1;
    if (!(factor > 0) || !isfinite(factor))
        return gg_errf(ex->err, "%s: metadata 'model.rope.factor' = %g is not positive", ex->label, factor);
    if (strcmp(s, "linear") == 0) {
        snprintf(key, sizeof key, "%s.rope.scaling.type", ex->arch);
        kv_str(w, key, "linear", 6);
        snprintf(key, sizeof key, "%s.rope.scaling.factor", ex->arch);
        kv_f32(w, key, (float)factor);
        return 0;
    }
    if (strcmp(s, "llama3") != 0)
        return gg_errf(ex->err, "%s: metadata 'model.rope.type' = '%s' has no GGUF export", ex->label, s);
    double lo, hi;
    int64_t orig;
    if (get_f64(ex, "model.rope.low_freq_factor", &lo) || get_f64(ex, "model.rope.high_freq_factor", &hi) ||
        get_i64(ex, "model.rope.original_context", &orig))
        return -1;
    if (!(hi > lo) || !(lo > 0) || orig <= 0)
        return gg_errf(ex->err, "%s: llama3 RoPE needs 0 < low_freq_factor < high_freq_factor and original_context > 0",
                       ex->label);
    size_t n = (size_t)ex->head_dim / 2;
    if (!(ex->rope_freqs = malloc(n * sizeof *ex->rope_freqs))) return gg_errf(ex->err, "out of memory");
    double lo_wl = (double)orig / lo, hi_wl = (double)orig / hi;
    for (size_t i = 0; i < n; i++) {
        double freq = 1.0 / pow(ex->theta, (double)(2 * i) / (double)ex->head_dim), wl = 2 * M_PI / freq, f;
        if (wl < hi_wl)
            f = 1;
        else if (wl > lo_wl)
            f = factor;
        else {
            double smooth = ((double)orig / wl - lo) / (hi - lo);
            f = 1 / ((1 - smooth) / factor + smooth);
        }
        ex->rope_freqs[i] = (float)f;
    }
    return 0;
}

/* ---- tokenizer -------------------------------------------------------------- */

typedef struct tok {
    char **text;
    int32_t *type;
    uint64_t n;
} tok;

static int is_byte_token(const char *s) {
    return strlen(s) == 6 && strncmp(s, "<0x", 3) == 0 && s[5] == '>' && strchr("0123456789ABCDEF", s[3]) &&
           strchr("0123456789ABCDEF", s[4]) && s[3] && s[4];
}

/* A string value of tokenizer_config (a string or {"content": ...}). */
static const char *cfg_token(json_t *cfg, const char *k) {
    json_t *v = json_object_get(cfg, k);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int64_t find_id(const tok *t, const char *s) {
    if (!s) return -1;
    for (uint64_t i = 0; i < t->n; i++)
        if (t->text[i] && strcmp(t->text[i], s) == 0) return (int64_t)i;
    return -1;
}

static int tokenizer_meta(exporter *ex, gguf_w *w) {
    gg_str js;
    /* No tokenizer: say so, as llama.cpp's loader requires the key
     * ("none": a model run on token ids only). */
    if (!gg_meta_find(ex->f, "tokenizer.json")) {
        kv_str(w, "tokenizer.ggml.model", "none", 4);
        return 0;
    }
    if (gg_meta_get_str(ex->f, "tokenizer.json", &js, ex->err)) return gg_err_prefix(ex->err, "%s", ex->label);
    json_error_t je;
    json_t *root = json_loadb(js.ptr, js.len, 0, &je), *cfg = NULL;
    tok t = {0};
    int rc = -1;
    if (!root) {
        gg_errf(ex->err, "%s: metadata 'tokenizer.json': line %d: %s", ex->label, je.line, je.text);
        goto out;
    }
    json_t *model = json_object_get(root, "model"), *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges"), *added = json_object_get(root, "added_tokens");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (!mtype || strcmp(mtype, "BPE") != 0 || !json_is_object(vocab)) {
        gg_errf(ex->err, "%s: metadata 'tokenizer.json': model.type '%s' is not supported (BPE with a vocab only)",
                ex->label, mtype ? mtype : "?");
        goto out;
    }
    int spm = json_is_true(json_object_get(model, "byte_fallback"));
    t.n = (uint64_t)ex->vocab;
    t.text = calloc(t.n, sizeof *t.text);
    t.type = calloc(t.n, sizeof *t.type);
    if (!t.text || !t.type) {
        gg_errf(ex->err, "out of memory");
        goto out;
    }
    /* vocab, then added tokens (which may repeat a vocab entry). ntok: the
     * tokenizer's size (largest id + 1), for the mismatch message. */
    json_int_t ntok = 0;
    {
        const char *k_;
        json_t *v_;
        size_t i_;
        json_object_foreach(vocab, k_, v_) {
            if (json_is_integer(v_) && json_integer_value(v_) >= ntok) ntok = json_integer_value(v_) + 1;
        }
        json_array_foreach(added, i_, v_) {
            json_t *id_ = json_object_get(v_, "id");
            if (json_is_integer(id_) && json_integer_value(id_) >= ntok) ntok = json_integer_value(id_) + 1;
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        size_t na = pass ? json_array_size(added) : 0;
        const char *key;
        json_t *val;
        void *iter = pass ? NULL : json_object_iter(vocab);
        for (size_t ai = 0; pass ? ai < na : iter != NULL; ai++) {
            const char *s;
            json_int_t id;
            int special = 0;
            if (pass) {
                json_t *a = json_array_get(added, ai);
                s = json_string_value(json_object_get(a, "content"));
                id = json_is_integer(json_object_get(a, "id")) ? json_integer_value(json_object_get(a, "id")) : -1;
                special = json_is_true(json_object_get(a, "special"));
            } else {
                key = json_object_iter_key(iter);
                val = json_object_iter_value(iter);
                iter = json_object_iter_next(vocab, iter);
                s = key;
                id = json_is_integer(val) ? json_integer_value(val) : -1;
            }
            if (!s || id < 0) {
                gg_errf(ex->err, "%s: metadata 'tokenizer.json': %s entry %zu has no valid content/id", ex->label,
                        pass ? "added_tokens" : "model.vocab", ai);
                goto out;
            }
            if ((uint64_t)id >= t.n) {
                gg_errf(
                    ex->err,
                    "%s: metadata 'tokenizer.json' has %lld tokens (id %lld '%.40s'), more than model.vocab_size %lld",
                    ex->label, (long long)ntok, (long long)id, s, (long long)ex->vocab);
                goto out;
            }
            if (t.text[id] && strcmp(t.text[id], s) != 0) {
                gg_errf(ex->err, "%s: metadata 'tokenizer.json': id %lld is both '%.40s' and '%.40s'", ex->label,
                        (long long)id, t.text[id], s);
                goto out;
            }
            if (!t.text[id] && !(t.text[id] = strdup(s))) {
                gg_errf(ex->err, "out of memory");
                goto out;
            }
            if (pass)
                t.type[id] = special ? 3 : 4;
            else
                t.type[id] = spm && is_byte_token(s) ? 6 : 1;
        }
    }
    for (uint64_t i = 0; i < t.n; i++)
        if (!t.text[i]) {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%llu]", (unsigned long long)i);
            if (!(t.text[i] = strdup(pad))) {
                gg_errf(ex->err, "out of memory");
                goto out;
            }
            t.type[i] = 4;
        }
    int64_t unk = find_id(&t, json_string_value(json_object_get(model, "unk_token")));
    if (unk >= 0) t.type[unk] = 2;

    kv_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2", spm ? 5 : 4);
    const char *pre = NULL;
    if (!spm) {
        char *ps = json_dumps(json_object_get(root, "pre_tokenizer"), JSON_COMPACT);
        /* llama.cpp picks its pre-tokenizer regex by name: Llama 3's splits
         * digits in runs of up to 3, Qwen2's (also Qwen3's) one by one. */
        if (ps && strstr(ps, "\\\\p{N}{1,3}"))
            pre = "llama-bpe";
        else if (strcmp(ex->arch, "qwen2") == 0 || (ps && strstr(ps, "\\\\p{L}+|\\\\p{N}|")))
            pre = "qwen2";
        free(ps);
        if (pre) kv_str(w, "tokenizer.ggml.pre", pre, strlen(pre));
    }
    kv_arr(w, "tokenizer.ggml.tokens", GV_STR, t.n);
    for (uint64_t i = 0; i < t.n; i++)
        put_str(&w->kv, t.text[i], strlen(t.text[i]));
    /* SentencePiece-style scores: llama.cpp's SPM tokenizer merges the
     * adjacent pair whose concatenation scores highest, so the score of a
     * token made by merge rank r is -r (the BPE order tokenizers applies);
     * a token no merge makes scores below every merge. */
    float *score = calloc(t.n, sizeof *score);
    if (!score) {
        gg_errf(ex->err, "out of memory");
        goto out;
    }
    size_t n_merges = json_array_size(merges);
    for (uint64_t i = 0; i < t.n; i++) score[i] = spm && t.type[i] == 1 ? -(float)(n_merges + i) : 0.0f;
    for (size_t i = 0; spm && i < n_merges; i++) {
        json_t *m = json_array_get(merges, i);
        char cat[512];
        const char *a = NULL, *b = NULL;
        size_t la = 0;
        if (json_is_string(m)) {
            const char *sp = strchr(json_string_value(m), ' ');
            if (sp) {
                a = json_string_value(m);
                la = (size_t)(sp - a);
                b = sp + 1;
            }
        } else if (json_is_array(m) && json_array_size(m) == 2) {
            a = json_string_value(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            la = a ? strlen(a) : 0;
        }
        if (!a || !b || la + strlen(b) >= sizeof cat) continue; /* bad merges are refused below */
        memcpy(cat, a, la);
        strcpy(cat + la, b);
        json_t *id = json_object_get(vocab, cat);
        if (json_is_integer(id) && json_integer_value(id) >= 0 && (uint64_t)json_integer_value(id) < t.n) {
            float *sc = &score[json_integer_value(id)];
            if (*sc < -(float)i) *sc = -(float)i; /* the first (best) merge making it */
        }
    }
    kv_arr(w, "tokenizer.ggml.scores", GV_F32, t.n);
    for (uint64_t i = 0; i < t.n; i++)
        put_f32(&w->kv, t.type[i] == 1 ? score[i] : 0.0f);
    free(score);
    kv_arr(w, "tokenizer.ggml.token_type", GV_I32, t.n);
    for (uint64_t i = 0; i < t.n; i++)
        put_u32(&w->kv, (uint32_t)t.type[i]);
    size_t nm = json_array_size(merges);
    if (nm) {
        kv_arr(w, "tokenizer.ggml.merges", GV_STR, nm);
        for (size_t i = 0; i < nm; i++) {
            json_t *m = json_array_get(merges, i);
            if (json_is_string(m)) {
                put_str(&w->kv, json_string_value(m), json_string_length(m));
            } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                       json_is_string(json_array_get(m, 1))) {
                json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
                size_t la = json_string_length(a), lb = json_string_length(b);
                put_u64(&w->kv, la + 1 + lb);
                put(&w->kv, json_string_value(a), la);
                put(&w->kv, " ", 1);
                put(&w->kv, json_string_value(b), lb);
            } else {
                gg_errf(ex->err, "%s: metadata 'tokenizer.json': model.merges[%zu] is neither \"a b\" nor [a, b]",
                        ex->label, i);
                goto out;
            }
        }
    }
    /* Special ids: model.bos_id / eos_id, else tokenizer_config's tokens. */
    gg_str cs;
    if (gg_meta_find(ex->f, "tokenizer.config_json") &&
        gg_meta_get_str(ex->f, "tokenizer.config_json", &cs, ex->err) == 0)
        cfg = json_loadb(cs.ptr, cs.len, 0, NULL);
    const char *ids[2][3] = {{"model.bos_id", "bos_token", "tokenizer.ggml.bos_token_id"},
                             {"model.eos_id", "eos_token", "tokenizer.ggml.eos_token_id"}};
    for (int k = 0; k < 2; k++) {
        int64_t id = -1;
        if (gg_meta_find(ex->f, ids[k][0]) && get_i64(ex, ids[k][0], &id)) goto out;
        if (id < 0 && cfg) id = find_id(&t, cfg_token(cfg, ids[k][1]));
        if (id >= (int64_t)t.n) {
            gg_errf(ex->err, "%s: metadata '%s' = %lld is outside the vocabulary", ex->label, ids[k][0], (long long)id);
            goto out;
        }
        if (id >= 0) kv_u32(w, ids[k][2], (uint32_t)id);
    }
    if (unk >= 0) kv_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)unk);
    if (cfg) {
        json_t *ab = json_object_get(cfg, "add_bos_token"), *ct = json_object_get(cfg, "chat_template");
        if (json_is_boolean(ab)) kv_bool(w, "tokenizer.ggml.add_bos_token", json_is_true(ab));
        if (json_is_string(ct)) kv_str(w, "tokenizer.chat_template", json_string_value(ct), json_string_length(ct));
    }
    rc = 0;
out:
    if (t.text)
        for (uint64_t i = 0; i < t.n; i++)
            free(t.text[i]);
    free(t.text);
    free(t.type);
    json_decref(root);
    json_decref(cfg);
    return rc;
}

/* ---- data ------------------------------------------------------------------- */

/* 0, 1 on a write error (errno says why), -1 with ex->err on another. */
static int write_tensor(exporter *ex, FILE *fp, const out_t *o, float *row, uint8_t *obuf) {
    const float *src = row;
    uint64_t rows = o->ne[1], cols = o->ne[0];
    if (!o->src) {
        if (fwrite(ex->rope_freqs, 4, cols, fp) != cols) return 1;
        return 0;
    }
    const gg_tensor *t = o->src;
    float *whole = NULL;
    if (t->ndim == 1 && o->heads) { /* a permuted bias: dequantize it whole */
        if (!(whole = malloc(cols * sizeof *whole))) return gg_errf(ex->err, "out of memory");
        if (gg_dequantize_rows(t->type, t->data, 1, cols, 0, 1, whole, ex->err)) {
            free(whole);
            return gg_err_prefix(ex->err, "%s: tensor '%s'", ex->label, t->name);
        }
        uint64_t hd = cols / o->heads, half = hd / 2;
        for (uint64_t r = 0; r < cols; r++) {
            uint64_t h = r / hd, i = (r % hd) / 2, j = r % 2;
            row[r] = whole[h * hd + j * half + i];
        }
        free(whole);
        rows = 1;
    }
    uint64_t hd = o->heads ? rows / o->heads : 0, half = hd / 2;
    for (uint64_t r = 0; r < rows; r++) {
        if (!(t->ndim == 1 && o->heads)) {
            uint64_t sr = r;
            if (o->heads) {
                uint64_t h = r / hd, i = (r % hd) / 2, j = r % 2;
                sr = h * hd + j * half + i;
            }
            if (gg_dequantize_rows(t->type, t->data, t->ndim == 2 ? t->shape[0] : 1, cols, sr, 1, row, ex->err))
                return gg_err_prefix(ex->err, "%s: tensor '%s'", ex->label, t->name);
        }
        size_t nb;
        if (o->type == GT_F32) {
            memcpy(obuf, src, cols * 4);
            nb = cols * 4;
        } else if (o->type == GT_F16) {
            for (uint64_t c = 0; c < cols; c++) {
                uint16_t h = gg_f32_to_f16(src[c]);
                if ((h & 0x7fff) == 0x7c00 && isfinite(src[c]))
                    return gg_errf(ex->err, "%s: tensor '%s': row %llu col %llu = %g overflows f16", ex->label, t->name,
                                   (unsigned long long)r, (unsigned long long)c, (double)src[c]);
                obuf[2 * c] = (uint8_t)h;
                obuf[2 * c + 1] = (uint8_t)(h >> 8);
            }
            nb = cols * 2;
        } else if (o->type == GT_Q4_0) {
            nb = 0;
            for (uint64_t b = 0; b < cols / 32; b++) {
                const float *x = src + b * 32;
                float amax = 0, m = 0;
                for (int k = 0; k < 32; k++) {
                    if (!isfinite(x[k]))
                        return gg_errf(ex->err, "%s: tensor '%s': row %llu has a non-finite value", ex->label, t->name,
                                       (unsigned long long)r);
                    if (fabsf(x[k]) > amax) amax = fabsf(x[k]), m = x[k];
                }
                float d = m / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
                uint16_t h = gg_f32_to_f16(d);
                obuf[nb++] = (uint8_t)h;
                obuf[nb++] = (uint8_t)(h >> 8);
                for (int k = 0; k < 16; k++) {
                    int lo = (int)(x[k] * id + 8.5f), hi = (int)(x[k + 16] * id + 8.5f);
                    lo = lo > 15 ? 15 : lo < 0 ? 0 : lo;
                    hi = hi > 15 ? 15 : hi < 0 ? 0 : hi;
                    obuf[nb++] = (uint8_t)(lo | hi << 4);
                }
            }
        } else {
            nb = 0;
            for (uint64_t b = 0; b < cols / 32; b++) {
                const float *x = src + b * 32;
                float amax = 0;
                for (int k = 0; k < 32; k++) {
                    if (!isfinite(x[k]))
                        return gg_errf(ex->err, "%s: tensor '%s': row %llu has a non-finite value", ex->label, t->name,
                                       (unsigned long long)r);
                    if (fabsf(x[k]) > amax) amax = fabsf(x[k]);
                }
                float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
                uint16_t h = gg_f32_to_f16(d);
                obuf[nb++] = (uint8_t)h;
                obuf[nb++] = (uint8_t)(h >> 8);
                for (int k = 0; k < 32; k++)
                    obuf[nb++] = (uint8_t)(int8_t)roundf(x[k] * id);
            }
        }
        if (fwrite(obuf, 1, nb, fp) != nb) return 1;
    }
    return 0;
}

static int write_file(exporter *ex, const char *path, const buf *head) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) return gg_errf(ex->err, "out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    uint64_t maxc = 1;
    for (size_t i = 0; i < ex->n; i++)
        if (ex->out[i].ne[0] > maxc) maxc = ex->out[i].ne[0];
    float *row = malloc(maxc * sizeof *row);
    uint8_t *obuf = malloc(maxc * 4 + 64);
    static const uint8_t zeros[GGUF_ALIGN];
    int rc = -1;
    FILE *fp = NULL;
    if (!row || !obuf) {
        gg_errf(ex->err, "out of memory");
        goto out;
    }
    if (!(fp = fopen(tmp, "wb"))) {
        gg_errf(ex->err, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    if (fwrite(head->p, 1, head->n, fp) != head->n) goto werr;
    uint64_t pos = 0;
    for (size_t i = 0; i < ex->n; i++) {
        const out_t *o = &ex->out[i];
        if (o->offset > pos && fwrite(zeros, 1, o->offset - pos, fp) != o->offset - pos) goto werr;
        int wr = write_tensor(ex, fp, o, row, obuf);
        if (wr > 0) goto werr;
        if (wr) goto fail;
        pos = o->offset + o->nbytes;
    }
    if (pos % GGUF_ALIGN && fwrite(zeros, 1, GGUF_ALIGN - pos % GGUF_ALIGN, fp) != GGUF_ALIGN - pos % GGUF_ALIGN)
        goto werr;
    if (fflush(fp) || fsync(fileno(fp))) goto werr;
    int cl = fclose(fp);
    fp = NULL;
    if (cl) goto werr;
    if (rename(tmp, path)) {
        gg_errf(ex->err, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        goto fail;
    }
    char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
    if (dir) {
        if (slash) *(slash == dir ? slash + 1 : slash) = 0;
        int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    rc = 0;
    goto out;
werr:
    gg_errf(ex->err, "%s: write error: %s", tmp, strerror(errno));
fail:
    if (fp) fclose(fp);
    fp = NULL;
    unlink(tmp);
out:
    free(row);
    free(obuf);
    free(tmp);
    return rc;
}

const char *gg_gguf_type_name(gg_gguf_type t) {
    switch (t) {
    case GG_GGUF_F32: return "f32";
    case GG_GGUF_F16: return "f16";
    case GG_GGUF_Q4_0: return "q4_0";
    case GG_GGUF_Q8_0: return "q8_0";
    }
    return "?";
}

int gg_gguf_export(const gg_file *model, const char *path, gg_gguf_type type, gg_err *err) {
    exporter ex = {.f = model, .label = gg_file_path(model), .err = err};
    if (!ex.label) ex.label = "model";
    gguf_w w = {0};
    buf head = {0};
    int rc = -1;
    char key[128], kind[32];
    if (type != GG_GGUF_F32 && type != GG_GGUF_F16 && type != GG_GGUF_Q8_0 && type != GG_GGUF_Q4_0)
        return gg_errf(err, "GGUF export: type %d is not supported (f32, f16, q8_0, q4_0)", (int)type);
    if (gg_meta_find(model, "gg.kind")) {
        if (get_strz(&ex, "gg.kind", kind, sizeof kind)) return -1;
        if (strcmp(kind, "model") != 0)
            return gg_errf(err, "%s: metadata 'gg.kind' is '%s', expected 'model'", ex.label, kind);
    }
    if (read_config(&ex)) goto out;
    kv_str(&w, "general.architecture", ex.arch, strlen(ex.arch));
    char name[256] = "model";
    if (gg_meta_find(model, "convert.source") && get_strz(&ex, "convert.source", name, sizeof name)) goto out;
    kv_str(&w, "general.name", name, strlen(name));
    kv_u32(&w, "general.alignment", GGUF_ALIGN);
    /* llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7 */
    kv_u32(&w, "general.file_type", type == GG_GGUF_F32 ? 0 : type == GG_GGUF_F16 ? 1 : type == GG_GGUF_Q4_0 ? 2 : 7);
    static const char *const ik[] = {"context_length",
                                     "embedding_length",
                                     "block_count",
                                     "feed_forward_length",
                                     "attention.head_count",
                                     "attention.head_count_kv",
                                     "rope.dimension_count",
                                     "attention.key_length",
                                     "attention.value_length",
                                     "vocab_size"};
    int64_t iv[] = {ex.ctx,  ex.hidden,   ex.n_layers, ex.ffn,      ex.n_heads,
                    ex.n_kv, ex.head_dim, ex.head_dim, ex.head_dim, ex.vocab};
    for (size_t k = 0; k < sizeof ik / sizeof *ik; k++) {
        snprintf(key, sizeof key, "%s.%s", ex.arch, ik[k]);
        kv_u32(&w, key, (uint32_t)iv[k]);
    }
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", ex.arch);
    kv_f32(&w, key, (float)ex.eps);
    if (rope_meta(&ex, &w) || tokenizer_meta(&ex, &w) || plan_tensors(&ex, type)) goto out;
    if (w.kv.oom) {
        gg_errf(err, "out of memory");
        goto out;
    }
    put(&head, "GGUF", 4);
    put_u32(&head, 3);
    put_u64(&head, ex.n);
    put_u64(&head, w.nkv);
    put(&head, w.kv.p, w.kv.n);
    for (size_t i = 0; i < ex.n; i++) {
        const out_t *o = &ex.out[i];
        put_str(&head, o->name, strlen(o->name));
        put_u32(&head, o->ndim);
        for (uint32_t d = 0; d < o->ndim; d++)
            put_u64(&head, o->ne[d]);
        put_u32(&head, o->type);
        put_u64(&head, o->offset);
    }
    static const uint8_t zeros[GGUF_ALIGN];
    if (head.n % GGUF_ALIGN) put(&head, zeros, GGUF_ALIGN - head.n % GGUF_ALIGN);
    if (head.oom) {
        gg_errf(err, "out of memory");
        goto out;
    }
    rc = write_file(&ex, path, &head);
out:
    free(w.kv.p);
    free(head.p);
    free(ex.out);
    free(ex.rope_freqs);
    return rc;
}
