/* test_gguf.c — .gg → GGUF export (convert/gguf.c), checked with a GGUF v3
 * parser of its own: magic, version, counts, every key's type and value,
 * tensor infos (llama.cpp names, dims in ggml order, types, offsets aligned,
 * non-overlapping, inside the file), data alignment, and the tensor values
 * against the .gg tensors (f32 exact, f16 within rounding, Q8_0 within half
 * a step; llama q/k rows permuted to the interleaved RoPE layout, qwen2's
 * not). Fixtures: llama2-mha (f32, f16, Q8_0), llama3-gqa (GQA, llama3 RoPE
 * → rope_freqs.weight), mistral-gqa-f16 (MQA, an f16 .gg → Q8_0),
 * qwen2-bias-tied (biases, tied output). The fixture folders have no
 * tokenizer, so the tokenizer keys are tested on copies of the fixtures
 * with a small synthetic tokenizer.json: SentencePiece-style (byte_fallback,
 * for llama2-mha) and byte-level with added tokens, [a,b] merges and a chat
 * template (for qwen2-bias-tied); the real 32000-token llama2 tokenizer on
 * the 1000-token fixture must fail clearly. gemma, falcon and bf16 output
 * are refused. */
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "convert/convert.h"
#include "convert/gguf.h"
#include "ggfmt/ggfmt.h"
#include "tests/check.h"
#include "tests/fixture_gg.h"

static char tmpdir[] = "/tmp/gg_test_gguf_XXXXXX";

/* ---- an independent GGUF v3 reader ----------------------------------------- */

typedef struct gkv {
    char key[128];
    uint32_t type, elem;
    uint64_t count;
    const uint8_t *val; /* scalar value, or the first array element */
    uint64_t vlen;      /* bytes of the value (for strings: the text length) */
} gkv;

typedef struct gti {
    char name[128];
    uint32_t ndim, type;
    uint64_t ne[4], offset, nbytes;
} gti;

typedef struct gguf {
    uint8_t *data;
    size_t size;
    uint32_t version;
    uint64_t nt, nkv;
    gkv *kv;
    gti *ti;
    size_t data_start;
    char err[320];
} gguf;

static uint64_t rd(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}
static float rdf(const uint8_t *p) {
    uint32_t u = (uint32_t)rd(p, 4);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int esize(uint32_t t) {
    static const int s[] = {1, 1, 2, 2, 4, 4, 4, 1, -1, -1, 8, 8, 8};
    return t < 13 ? s[t] : -1;
}

#define NEED(n)                                                                                                        \
    do {                                                                                                               \
        if ((n) > g->size || pos > g->size - (n)) {                                                                    \
            snprintf(g->err, sizeof g->err, "truncated at byte %zu", pos);                                             \
            return -1;                                                                                                 \
        }                                                                                                              \
    } while (0)

/* Skip one value of type t at pos (strings: u64 len + bytes). */
static int skip_val(gguf *g, size_t *ppos, uint32_t t) {
    size_t pos = *ppos;
    if (t == 8) {
        NEED(8);
        uint64_t n = rd(g->data + pos, 8);
        pos += 8;
        NEED(n);
        pos += n;
    } else {
        int s = esize(t);
        if (s < 0) return snprintf(g->err, sizeof g->err, "bad value type %u", t), -1;
        NEED((size_t)s);
        pos += (size_t)s;
    }
    *ppos = pos;
    return 0;
}

static int gguf_parse(gguf *g, const char *path) {
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "rb");
    if (!f) return snprintf(g->err, sizeof g->err, "cannot open %s", path), -1;
    fseek(f, 0, SEEK_END);
    g->size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    g->data = malloc(g->size + 1);
    size_t got = fread(g->data, 1, g->size, f);
    fclose(f);
    if (got != g->size) return snprintf(g->err, sizeof g->err, "short read"), -1;
    size_t pos = 0;
    NEED(24);
    if (memcmp(g->data, "GGUF", 4) != 0) return snprintf(g->err, sizeof g->err, "bad magic"), -1;
    g->version = (uint32_t)rd(g->data + 4, 4);
    g->nt = rd(g->data + 8, 8);
    g->nkv = rd(g->data + 16, 8);
    pos = 24;
    if (g->nt > 100000 || g->nkv > 100000) return snprintf(g->err, sizeof g->err, "absurd counts"), -1;
    g->kv = calloc(g->nkv + 1, sizeof *g->kv);
    g->ti = calloc(g->nt + 1, sizeof *g->ti);
    for (uint64_t i = 0; i < g->nkv; i++) {
        gkv *k = &g->kv[i];
        NEED(8);
        uint64_t kl = rd(g->data + pos, 8);
        pos += 8;
        NEED(kl);
        if (kl == 0 || kl >= sizeof k->key) return snprintf(g->err, sizeof g->err, "bad key length"), -1;
        memcpy(k->key, g->data + pos, kl);
        pos += kl;
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->kv[j].key, k->key) == 0)
                return snprintf(g->err, sizeof g->err, "duplicate key %s", k->key), -1;
        NEED(4);
        k->type = (uint32_t)rd(g->data + pos, 4);
        pos += 4;
        if (k->type == 9) {
            NEED(12);
            k->elem = (uint32_t)rd(g->data + pos, 4);
            k->count = rd(g->data + pos + 4, 8);
            pos += 12;
            k->val = g->data + pos;
            size_t start = pos;
            for (uint64_t e = 0; e < k->count; e++)
                if (k->elem == 9 || skip_val(g, &pos, k->elem))
                    return snprintf(g->err, sizeof g->err, "%s: bad array", k->key), -1;
            k->vlen = pos - start;
        } else if (k->type == 8) {
            NEED(8);
            k->vlen = rd(g->data + pos, 8);
            pos += 8;
            NEED(k->vlen);
            k->val = g->data + pos;
            pos += k->vlen;
        } else {
            k->val = g->data + pos;
            if (skip_val(g, &pos, k->type)) return -1;
            k->vlen = (uint64_t)esize(k->type);
        }
    }
    for (uint64_t i = 0; i < g->nt; i++) {
        gti *t = &g->ti[i];
        NEED(8);
        uint64_t nl = rd(g->data + pos, 8);
        pos += 8;
        NEED(nl);
        if (nl == 0 || nl >= sizeof t->name) return snprintf(g->err, sizeof g->err, "bad tensor name length"), -1;
        memcpy(t->name, g->data + pos, nl);
        pos += nl;
        NEED(4);
        t->ndim = (uint32_t)rd(g->data + pos, 4);
        pos += 4;
        if (t->ndim < 1 || t->ndim > 4) return snprintf(g->err, sizeof g->err, "%s: ndim %u", t->name, t->ndim), -1;
        uint64_t nel = 1;
        for (uint32_t d = 0; d < t->ndim; d++) {
            NEED(8);
            t->ne[d] = rd(g->data + pos, 8);
            pos += 8;
            nel *= t->ne[d];
        }
        NEED(12);
        t->type = (uint32_t)rd(g->data + pos, 4);
        t->offset = rd(g->data + pos + 4, 8);
        pos += 12;
        if (t->type == 0)
            t->nbytes = nel * 4;
        else if (t->type == 1)
            t->nbytes = nel * 2;
        else if (t->type == 8 && t->ne[0] % 32 == 0)
            t->nbytes = nel / 32 * 34;
        else if (t->type == 2 && t->ne[0] % 32 == 0)
            t->nbytes = nel / 32 * 18;
        else
            return snprintf(g->err, sizeof g->err, "%s: type %u", t->name, t->type), -1;
    }
    uint32_t align = 32;
    for (uint64_t i = 0; i < g->nkv; i++)
        if (strcmp(g->kv[i].key, "general.alignment") == 0) align = (uint32_t)rd(g->kv[i].val, 4);
    g->data_start = (pos + align - 1) / align * align;
    for (size_t p = pos; p < g->data_start && p < g->size; p++)
        if (g->data[p]) return snprintf(g->err, sizeof g->err, "non-zero header padding"), -1;
    for (uint64_t i = 0; i < g->nt; i++) {
        gti *t = &g->ti[i];
        if (t->offset % align) return snprintf(g->err, sizeof g->err, "%s: offset not aligned", t->name), -1;
        if (g->data_start + t->offset + t->nbytes > g->size)
            return snprintf(g->err, sizeof g->err, "%s: data beyond the file", t->name), -1;
        for (uint64_t j = 0; j < i; j++) {
            gti *u = &g->ti[j];
            if (strcmp(u->name, t->name) == 0) return snprintf(g->err, sizeof g->err, "duplicate %s", t->name), -1;
            if (t->offset < u->offset + u->nbytes && u->offset < t->offset + t->nbytes)
                return snprintf(g->err, sizeof g->err, "%s overlaps %s", t->name, u->name), -1;
        }
    }
    return 0;
}

static void gguf_free(gguf *g) {
    free(g->data);
    free(g->kv);
    free(g->ti);
}

static const gkv *kv_find(const gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->nkv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}
static const gti *ti_find(const gguf *g, const char *name) {
    for (uint64_t i = 0; i < g->nt; i++)
        if (strcmp(g->ti[i].name, name) == 0) return &g->ti[i];
    return NULL;
}
static int has_u32(const gguf *g, const char *key, uint32_t want) {
    const gkv *k = kv_find(g, key);
    if (!k || k->type != 4 || rd(k->val, 4) != want) {
        fprintf(stderr, "  key %s: %s (type %u, value %llu, want %u)\n", key, k ? "wrong" : "missing", k ? k->type : 0,
                k && k->type == 4 ? (unsigned long long)rd(k->val, 4) : 0ULL, want);
        return 0;
    }
    return 1;
}
static int has_f32(const gguf *g, const char *key, double want) {
    const gkv *k = kv_find(g, key);
    return k && k->type == 6 && fabs(rdf(k->val) - want) <= fabs(want) * 1e-6;
}
static int has_str(const gguf *g, const char *key, const char *want) {
    const gkv *k = kv_find(g, key);
    return k && k->type == 8 && k->vlen == strlen(want) && memcmp(k->val, want, k->vlen) == 0;
}
/* Element i of an array of strings: pointer and length. */
static const uint8_t *arr_str(const gkv *k, uint64_t i, uint64_t *len) {
    const uint8_t *p = k->val;
    for (uint64_t e = 0; e < i; e++)
        p += 8 + rd(p, 8);
    *len = rd(p, 8);
    return p + 8;
}
static int arr_str_is(const gkv *k, uint64_t i, const char *want) {
    uint64_t n;
    const uint8_t *p = arr_str(k, i, &n);
    return n == strlen(want) && memcmp(p, want, n) == 0;
}

/* ---- helpers ---------------------------------------------------------------- */

static int convert_dir(const char *dir, const char *out, gg_type t) {
    return fixture_convert_dir(dir, out, t, NULL);
}

/* Convert fixture fix (f32) and export it; returns the .gg path in gg. */
static int export_fixture(const char *fix, gg_gguf_type gt, const char *gg, const char *out, gg_err *err) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/hf/%s", check_fixtures(), fix);
    if (access(gg, F_OK) != 0 && convert_dir(dir, gg, GG_TYPE_F32))
        return snprintf(err->msg, sizeof err->msg, "convert"), -1;
    gg_file *f;
    if (gg_file_open(&f, gg, 0, err)) return -1;
    int rc = gg_gguf_export(f, out, gt, err);
    gg_file_close(f);
    return rc;
}

/* Canonical → llama.cpp name, written independently of gguf.c. */
static void gguf_name(const char *canon, char *out, size_t cap, int *qk) {
    unsigned L;
    char rest[64];
    *qk = 0;
    if (sscanf(canon, "layers.%u.%63s", &L, rest) == 2) {
        static const char *const m[][2] = {
            {"attn_norm.weight", "attn_norm.weight"}, {"attn.q.weight", "attn_q.weight"},
            {"attn.k.weight", "attn_k.weight"},       {"attn.v.weight", "attn_v.weight"},
            {"attn.o.weight", "attn_output.weight"},  {"attn.q.bias", "attn_q.bias"},
            {"attn.k.bias", "attn_k.bias"},           {"attn.v.bias", "attn_v.bias"},
            {"mlp_norm.weight", "ffn_norm.weight"},   {"mlp.gate.weight", "ffn_gate.weight"},
            {"mlp.up.weight", "ffn_up.weight"},       {"mlp.down.weight", "ffn_down.weight"}};
        for (size_t k = 0; k < sizeof m / sizeof *m; k++)
            if (strcmp(rest, m[k][0]) == 0) {
                snprintf(out, cap, "blk.%u.%s", L, m[k][1]);
                *qk = strncmp(rest, "attn.q.", 7) == 0 ? 1 : strncmp(rest, "attn.k.", 7) == 0 ? 2 : 0;
                return;
            }
        snprintf(out, cap, "?");
    } else if (strcmp(canon, "embed.weight") == 0)
        snprintf(out, cap, "token_embd.weight");
    else if (strcmp(canon, "final_norm.weight") == 0)
        snprintf(out, cap, "output_norm.weight");
    else if (strcmp(canon, "lm_head.weight") == 0)
        snprintf(out, cap, "output.weight");
    else
        snprintf(out, cap, "?");
}

/* Every .gg tensor is in the GGUF with the right dims, type and values.
 * permute: llama (q/k rows reordered per head); want_type: the 2-D type
 * (1-D are F32; Q8_0 / Q4_0 fall back to F16 when columns % 32 != 0).
 * Q4_0 (ggml's layout): f16 d then 16 bytes, element k of the block in the
 * low nibble of byte k (k < 16) or the high nibble of byte k - 16, value
 * d·(q - 8), |d| = absmax / 8. */
static int check_tensors(const gguf *g, const char *ggpath, int permute, uint32_t want_type, int64_t nh, int64_t nkv,
                         int64_t hd) {
    gg_file *f;
    gg_err err;
    if (gg_file_open(&f, ggpath, 0, &err)) return fprintf(stderr, "%s\n", err.msg), 0;
    int ok = 1;
    size_t nt = gg_tensor_count(f);
    for (size_t i = 0; i < nt && ok; i++) {
        const gg_tensor *t = gg_tensor_at(f, i);
        char name[128];
        int qk;
        gguf_name(t->name, name, sizeof name, &qk);
        const gti *gt = ti_find(g, name);
        if (!gt) {
            fprintf(stderr, "  %s: no GGUF tensor %s\n", t->name, name);
            ok = 0;
            break;
        }
        uint64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
        uint32_t wt = t->ndim == 1 ? 0 : (want_type == 8 || want_type == 2) && cols % 32 ? 1 : want_type;
        if (gt->ndim != t->ndim || gt->ne[0] != cols || (t->ndim == 2 && gt->ne[1] != rows) || gt->type != wt) {
            fprintf(stderr, "  %s: dims/type mismatch (ndim %u ne %llu,%llu type %u, want type %u)\n", name, gt->ndim,
                    (unsigned long long)gt->ne[0], (unsigned long long)gt->ne[1], gt->type, wt);
            ok = 0;
            break;
        }
        float *src = malloc(rows * cols * sizeof *src);
        gg_dequantize_rows(t->type, t->data, rows, cols, 0, rows, src, &err);
        const uint8_t *d = g->data + g->data_start + gt->offset;
        /* The source element of GGUF element e (row r, col c). */
        uint64_t heads = permute && qk ? (uint64_t)(qk == 1 ? nh : nkv) : 0;
        for (uint64_t e = 0; e < rows * cols && ok; e++) {
            uint64_t r = e / cols, c = e % cols, sr = r, sc = c;
            if (heads) {
                uint64_t idx = t->ndim == 2 ? r : c; /* permuted index: rows, or a bias's elements */
                uint64_t h = idx / (uint64_t)hd, within = idx % (uint64_t)hd;
                uint64_t src_idx = h * (uint64_t)hd + (within % 2) * (uint64_t)(hd / 2) + within / 2;
                if (t->ndim == 2)
                    sr = src_idx;
                else
                    sc = src_idx;
            }
            float x = src[sr * cols + sc], y;
            double tol = 0;
            if (wt == 0)
                y = rdf(d + 4 * e);
            else if (wt == 1) {
                y = gg_f16_to_f32((uint16_t)rd(d + 2 * e, 2));
                tol = fabs(x) * (1.0 / 2048) + 6e-8;
            } else if (wt == 2) {
                const uint8_t *blk = d + (e / 32) * 18;
                float amax = 0;
                for (uint64_t k = 0; k < 32; k++) {
                    uint64_t e2 = e / 32 * 32 + k;
                    uint64_t r2 = e2 / cols, c2 = e2 % cols, s2 = r2;
                    if (heads) {
                        uint64_t h = r2 / (uint64_t)hd, within = r2 % (uint64_t)hd;
                        s2 = h * (uint64_t)hd + (within % 2) * (uint64_t)(hd / 2) + within / 2;
                    }
                    amax = fmaxf(amax, fabsf(src[s2 * cols + c2]));
                }
                float dd = gg_f16_to_f32((uint16_t)rd(blk, 2));
                if (fabs(fabs(dd) - amax / 8.0) > amax / 8.0 / 1024 + 1e-9) {
                    fprintf(stderr, "  %s: block %llu scale %g, want ±%g\n", name, (unsigned long long)(e / 32), dd,
                            amax / 8.0);
                    ok = 0;
                }
                unsigned k = (unsigned)(e % 32), byte = blk[2 + k % 16];
                y = dd * (float)((int)(k < 16 ? byte & 15 : byte >> 4) - 8);
                /* half a step, or a whole one at the clamped end (q = 16 → 15)
                 * opposite the largest magnitude */
                tol = fabs(dd) * (y * dd > 0 && fabs(y) > 6.5 * fabs(dd) ? 1.0 : 0.5) + amax * 1e-3 + 1e-9;
            } else {
                const uint8_t *blk = d + (e / 32) * 34;
                float amax = 0;
                for (uint64_t k = 0; k < 32; k++) {
                    uint64_t e2 = e / 32 * 32 + k;
                    uint64_t r2 = e2 / cols, c2 = e2 % cols, s2 = r2;
                    if (heads) {
                        uint64_t h = r2 / (uint64_t)hd, within = r2 % (uint64_t)hd;
                        s2 = h * (uint64_t)hd + (within % 2) * (uint64_t)(hd / 2) + within / 2;
                    }
                    amax = fmaxf(amax, fabsf(src[s2 * cols + c2]));
                }
                float dd = gg_f16_to_f32((uint16_t)rd(blk, 2));
                if (fabs(dd - amax / 127.0) > amax / 127.0 / 1024 + 1e-9) {
                    fprintf(stderr, "  %s: block %llu scale %g, want %g\n", name, (unsigned long long)(e / 32), dd,
                            amax / 127.0);
                    ok = 0;
                }
                y = dd * (float)(int8_t)blk[2 + e % 32];
                tol = dd * 0.5 + amax * 1e-3 + 1e-9;
            }
            if (!(fabs((double)y - x) <= tol)) {
                fprintf(stderr, "  %s: element %llu = %.9g, want %.9g (source row %llu)\n", name, (unsigned long long)e,
                        y, x, (unsigned long long)sr);
                ok = 0;
            }
        }
        free(src);
    }
    /* nothing in the GGUF beyond the mapped tensors (+ rope_freqs) */
    uint64_t extra = ti_find(g, "rope_freqs.weight") ? 1 : 0;
    if (ok && g->nt != nt + extra) {
        fprintf(stderr, "  %llu GGUF tensors, want %zu\n", (unsigned long long)g->nt, nt + (size_t)extra);
        ok = 0;
    }
    gg_file_close(f);
    return ok;
}

/* The keys every export has. */
static int check_arch_keys(const gguf *g, const char *arch, uint32_t ctx, uint32_t embd, uint32_t blocks, uint32_t ff,
                           uint32_t heads, uint32_t kv, uint32_t hd, double eps, double base, uint32_t vocab) {
    char k[128];
    int ok = has_str(g, "general.architecture", arch) && kv_find(g, "general.name") &&
             kv_find(g, "general.name")->type == 8 && has_u32(g, "general.alignment", 32);
#define U(name, v) (snprintf(k, sizeof k, "%s." name, arch), has_u32(g, k, v))
#define F(name, v) (snprintf(k, sizeof k, "%s." name, arch), has_f32(g, k, v))
    ok = ok && U("context_length", ctx) && U("embedding_length", embd) && U("block_count", blocks) &&
         U("feed_forward_length", ff) && U("attention.head_count", heads) && U("attention.head_count_kv", kv) &&
         U("rope.dimension_count", hd) && U("attention.key_length", hd) && U("attention.value_length", hd) &&
         U("vocab_size", vocab) && F("attention.layer_norm_rms_epsilon", eps) && F("rope.freq_base", base);
#undef U
#undef F
    return ok;
}

/* Every key is of a known type; arrays are of scalars or strings. */
static int keys_well_typed(const gguf *g) {
    for (uint64_t i = 0; i < g->nkv; i++) {
        const gkv *k = &g->kv[i];
        if (k->type > 12 || (k->type == 9 && (k->elem > 12 || k->elem == 9))) return 0;
    }
    return 1;
}

/* ---- tests -------------------------------------------------------------------- */

static void test_llama2_f32(void) {
    char gg[600], out[600];
    snprintf(gg, sizeof gg, "%s/llama2.gg", tmpdir);
    snprintf(out, sizeof out, "%s/llama2.f32.gguf", tmpdir);
    gg_err err;
    REQUIRE(export_fixture("llama2-mha", GG_GGUF_F32, gg, out, &err) == 0, "%s", err.msg);
    gguf g;
    char tmp[640];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    CHECK(access(tmp, F_OK) != 0, "tmp left behind");
    int pr = gguf_parse(&g, out);
    CHECK(pr == 0, "%s", g.err);
    if (pr == 0) {
        CHECK(g.version == 3, "version %u", g.version);
        CHECK(g.nt == 2 + 2 * 9 + 1, "tensor count %llu", (unsigned long long)g.nt);
        CHECK(keys_well_typed(&g), "types");
        CHECK(check_arch_keys(&g, "llama", 256, 64, 2, 172, 4, 4, 16, 1e-5, 10000, 1000), "arch keys");
        CHECK(has_u32(&g, "general.file_type", 0), "file_type");
        CHECK(has_str(&g, "tokenizer.ggml.model", "none") && !kv_find(&g, "tokenizer.ggml.tokens"),
              "no tokenizer: tokenizer.ggml.model 'none' (llama.cpp requires the key), no vocab");
        CHECK(!kv_find(&g, "llama.rope.scaling.type") && !ti_find(&g, "rope_freqs.weight"), "no rope scaling");
        /* 4 general + 10 u32 + eps + freq_base + tokenizer.ggml.model */
        CHECK(g.nkv == 17, "kv count %llu", (unsigned long long)g.nkv);
        CHECK(ti_find(&g, "output.weight") != NULL, "untied: output.weight");
        CHECK(check_tensors(&g, gg, 1, 0, 4, 4, 16), "tensor data");
    }
    gguf_free(&g);
}

static void test_llama2_f16_q8_q4(void) {
    char gg[600], out[600];
    snprintf(gg, sizeof gg, "%s/llama2.gg", tmpdir);
    gg_gguf_type types[] = {GG_GGUF_F16, GG_GGUF_Q8_0, GG_GGUF_Q4_0};
    uint32_t ftype[] = {1, 7, 2};
    for (int k = 0; k < 3; k++) {
        snprintf(out, sizeof out, "%s/llama2.%s.gguf", tmpdir, gg_gguf_type_name(types[k]));
        gg_err err;
        REQUIRE(export_fixture("llama2-mha", types[k], gg, out, &err) == 0, "%s", err.msg);
        gguf g;
        int pr = gguf_parse(&g, out);
        CHECK(pr == 0, "%s", g.err);
        if (pr == 0) {
            CHECK(has_u32(&g, "general.file_type", ftype[k]), "file_type");
            CHECK(check_tensors(&g, gg, 1, (uint32_t)types[k], 4, 4, 16), "%s tensor data",
                  gg_gguf_type_name(types[k]));
            const gti *down = ti_find(&g, "blk.0.ffn_down.weight"), *q = ti_find(&g, "blk.0.attn_q.weight");
            CHECK(down && down->type == 1, "ffn_down (172 columns) stays f16");
            CHECK(q && q->type == (uint32_t)types[k], "attn_q type");
        }
        gguf_free(&g);
    }
}

static void test_llama3_rope(void) {
    char gg[600], out[600];
    snprintf(gg, sizeof gg, "%s/llama3.gg", tmpdir);
    snprintf(out, sizeof out, "%s/llama3.gguf", tmpdir);
    gg_err err;
    REQUIRE(export_fixture("llama3-gqa", GG_GGUF_F32, gg, out, &err) == 0, "%s", err.msg);
    gguf g;
    int pr = gguf_parse(&g, out);
    CHECK(pr == 0, "%s", g.err);
    if (pr == 0) {
        CHECK(check_arch_keys(&g, "llama", 1024, 128, 2, 256, 8, 2, 16, 1e-5, 500000, 1000), "arch keys");
        CHECK(check_tensors(&g, gg, 1, 0, 8, 2, 16), "tensor data (GQA permutation)");
        const gti *rf = ti_find(&g, "rope_freqs.weight");
        CHECK(rf && rf->ndim == 1 && rf->ne[0] == 8 && rf->type == 0, "rope_freqs.weight [8] f32");
        if (rf) {
            /* factor 8, low 1, high 4, original context 64, theta 5e5, hd 16 */
            for (int i = 0; i < 8; i++) {
                double freq = pow(500000.0, -2.0 * i / 16), wl = 2 * M_PI / freq, want;
                if (wl < 64.0 / 4)
                    want = 1;
                else if (wl > 64.0 / 1)
                    want = 8;
                else {
                    double s = (64.0 / wl - 1) / (4 - 1);
                    want = 1 / ((1 - s) / 8 + s);
                }
                float got = rdf(g.data + g.data_start + rf->offset + 4 * (size_t)i);
                CHECK(fabs(got - want) < 1e-5 * want, "rope_freqs[%d] = %g, want %g", i, got, want);
            }
        }
    }
    gguf_free(&g);
}

/* mistral → GGUF llama; MQA (one kv head); the .gg holds f16 (dequantized
 * by the exporter) and the export is Q8_0. */
static void test_mistral_q8(void) {
    char dir[600], gg[600], out[600];
    snprintf(dir, sizeof dir, "%s/hf/mistral-gqa-f16", check_fixtures());
    snprintf(gg, sizeof gg, "%s/mistral.f16.gg", tmpdir);
    snprintf(out, sizeof out, "%s/mistral.gguf", tmpdir);
    REQUIRE(convert_dir(dir, gg, GG_TYPE_F16) == 0, "convert");
    gg_err err;
    REQUIRE(export_fixture("mistral-gqa-f16", GG_GGUF_Q8_0, gg, out, &err) == 0, "%s", err.msg);
    gguf g;
    int pr = gguf_parse(&g, out);
    CHECK(pr == 0, "%s", g.err);
    if (pr == 0) {
        CHECK(check_arch_keys(&g, "llama", 512, 64, 3, 128, 4, 1, 16, 1e-5, 10000, 1000), "arch keys");
        CHECK(check_tensors(&g, gg, 1, 8, 4, 1, 16), "tensor data (q8_0, MQA permutation)");
    }
    gguf_free(&g);
}

static void test_qwen2(void) {
    char gg[600], out[600];
    snprintf(gg, sizeof gg, "%s/qwen2.gg", tmpdir);
    snprintf(out, sizeof out, "%s/qwen2.gguf", tmpdir);
    gg_err err;
    REQUIRE(export_fixture("qwen2-bias-tied", GG_GGUF_F32, gg, out, &err) == 0, "%s", err.msg);
    gguf g;
    int pr = gguf_parse(&g, out);
    CHECK(pr == 0, "%s", g.err);
    if (pr == 0) {
        CHECK(check_arch_keys(&g, "qwen2", 512, 96, 2, 160, 6, 2, 16, 1e-6, 1e6, 1000), "arch keys");
        CHECK(!ti_find(&g, "output.weight"), "tied: no output.weight");
        const gti *b = ti_find(&g, "blk.1.attn_k.bias");
        CHECK(b && b->ndim == 1 && b->ne[0] == 32 && b->type == 0, "attn_k.bias [32] f32");
        CHECK(check_tensors(&g, gg, 0, 0, 6, 2, 16), "tensor data (no permutation)");
    }
    gguf_free(&g);
}

/* A copy of fixture fix (files symlinked) with tokenizer files written. */
static int fixture_copy(const char *fix, const char *dst, json_t *tok, json_t *cfg, const char *tok_src) {
    char src[512], a[4096], b[4096];
    snprintf(src, sizeof src, "%s/hf/%s", check_fixtures(), fix);
    if (mkdir(dst, 0755)) return -1;
    DIR *d = opendir(src);
    if (!d) return -1;
    struct dirent *e;
    char cwd[600];
    if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strstr(e->d_name, "tokenizer") || strcmp(e->d_name, "lora") == 0) continue;
        snprintf(a, sizeof a, "%s%s%s/%s", src[0] == '/' ? "" : cwd, src[0] == '/' ? "" : "/", src, e->d_name);
        snprintf(b, sizeof b, "%s/%s", dst, e->d_name);
        if (symlink(a, b)) {
            closedir(d);
            return -1;
        }
    }
    closedir(d);
    snprintf(b, sizeof b, "%s/tokenizer.json", dst);
    if (tok_src) {
        snprintf(a, sizeof a, "%s%s%s", tok_src[0] == '/' ? "" : cwd, tok_src[0] == '/' ? "" : "/", tok_src);
        if (symlink(a, b)) return -1;
    } else if (tok && json_dump_file(tok, b, 0))
        return -1;
    snprintf(b, sizeof b, "%s/tokenizer_config.json", dst);
    if (cfg && json_dump_file(cfg, b, 0)) return -1;
    return 0;
}

static void test_tokenizer_spm(void) {
    /* <unk> <s> </s>, 256 byte tokens, then "▁t0".."▁t740" */
    json_t *vocab = json_object(), *merges = json_array();
    const char *sp[] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++)
        json_object_set_new(vocab, sp[i], json_integer(i));
    char s[32];
    for (int i = 0; i < 256; i++) {
        snprintf(s, sizeof s, "<0x%02X>", i);
        json_object_set_new(vocab, s, json_integer(3 + i));
    }
    for (int i = 259; i < 1000; i++) {
        snprintf(s, sizeof s, "\xe2\x96\x81t%d", i);
        json_object_set_new(vocab, s, json_integer(i));
    }
    json_array_append_new(merges, json_string("\xe2\x96\x81 t"));
    json_array_append_new(merges, json_string("t 1"));
    json_t *added = json_array();
    for (int i = 0; i < 3; i++)
        json_array_append_new(added, json_pack("{s:i,s:s,s:b}", "id", i, "content", sp[i], "special", 1));
    json_t *tok = json_pack("{s:o,s:{s:s,s:o,s:o,s:b,s:s}}", "added_tokens", added, "model", "type", "BPE", "vocab",
                            vocab, "merges", merges, "byte_fallback", 1, "unk_token", "<unk>");
    json_t *cfg = json_pack("{s:b,s:s,s:s}", "add_bos_token", 1, "bos_token", "<s>", "eos_token", "</s>");
    char dir[600], gg[600], out[600];
    snprintf(dir, sizeof dir, "%s/llama2-tok", tmpdir);
    snprintf(gg, sizeof gg, "%s/llama2-tok.gg", tmpdir);
    snprintf(out, sizeof out, "%s/llama2-tok.gguf", tmpdir);
    int rc = fixture_copy("llama2-mha", dir, tok, cfg, NULL);
    json_decref(tok);
    json_decref(cfg);
    REQUIRE(rc == 0, "fixture copy");
    REQUIRE(convert_dir(dir, gg, GG_TYPE_F32) == 0, "convert");
    gg_err err;
    REQUIRE(export_fixture("llama2-mha", GG_GGUF_F32, gg, out, &err) == 0, "%s", err.msg);
    gguf g;
    int pr = gguf_parse(&g, out);
    CHECK(pr == 0, "%s", g.err);
    if (pr == 0) {
        CHECK(keys_well_typed(&g), "types");
        CHECK(has_str(&g, "tokenizer.ggml.model", "llama"), "model llama");
        CHECK(!kv_find(&g, "tokenizer.ggml.pre"), "no pre for llama");
        const gkv *t = kv_find(&g, "tokenizer.ggml.tokens"), *sc = kv_find(&g, "tokenizer.ggml.scores"),
                  *ty = kv_find(&g, "tokenizer.ggml.token_type"), *m = kv_find(&g, "tokenizer.ggml.merges");
        REQUIRE(t && t->type == 9 && t->elem == 8 && t->count == 1000, "tokens");
        REQUIRE(sc && sc->type == 9 && sc->elem == 6 && sc->count == 1000, "scores");
        REQUIRE(ty && ty->type == 9 && ty->elem == 5 && ty->count == 1000, "token_type");
        CHECK(arr_str_is(t, 0, "<unk>") && arr_str_is(t, 2, "</s>") && arr_str_is(t, 3, "<0x00>") &&
                  arr_str_is(t, 258, "<0xFF>") && arr_str_is(t, 999, "\xe2\x96\x81t999"),
              "token text");
        int types_ok = 1, scores_ok = 1;
        for (int i = 0; i < 1000; i++) {
            int want = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
            types_ok &= (int)rd(ty->val + 4 * i, 4) == want;
            scores_ok &= rdf(sc->val + 4 * i) == (want == 1 ? -(float)(2 + i) /* no merge makes a vocab token: below both merges */ : 0.0f);
        }
        CHECK(types_ok, "token types");
        CHECK(scores_ok, "scores");
        CHECK(m && m->elem == 8 && m->count == 2 && arr_str_is(m, 0, "\xe2\x96\x81 t") && arr_str_is(m, 1, "t 1"),
              "merges");
        CHECK(has_u32(&g, "tokenizer.ggml.bos_token_id", 1) && has_u32(&g, "tokenizer.ggml.eos_token_id", 2) &&
                  has_u32(&g, "tokenizer.ggml.unknown_token_id", 0),
              "special ids");
        const gkv *ab = kv_find(&g, "tokenizer.ggml.add_bos_token");
        CHECK(ab && ab->type == 7 && ab->val[0] == 1, "add_bos_token");
        CHECK(!kv_find(&g, "tokenizer.chat_template"), "no chat template");
        CHECK(check_tensors(&g, gg, 1, 0, 4, 4, 16), "tensor data");
    }
    gguf_free(&g);
}

static void test_tokenizer_bpe(void) {
    /* byte-level: ids 0..989, added 990 (special), 991 (special), 992 (not);
     * 993..999 padded. */
    json_t *vocab = json_object(), *merges = json_array();
    char s[32];
    for (int i = 0; i < 990; i++) {
        snprintf(s, sizeof s, "w%d", i);
        json_object_set_new(vocab, s, json_integer(i));
    }
    json_array_append_new(merges, json_pack("[s,s]", "w", "1"));
    json_array_append_new(merges, json_pack("[s,s]", "\xc4\xa0", "w"));
    json_t *added = json_array();
    json_array_append_new(added, json_pack("{s:i,s:s,s:b}", "id", 990, "content", "<|endoftext|>", "special", 1));
    json_array_append_new(added, json_pack("{s:i,s:s,s:b}", "id", 991, "content", "<|im_start|>", "special", 1));
    json_array_append_new(added, json_pack("{s:i,s:s,s:b}", "id", 992, "content", "<tool>", "special", 0));
    json_t *tok = json_pack("{s:o,s:{s:s,s:o,s:o,s:b},s:{s:s}}", "added_tokens", added, "model", "type", "BPE", "vocab",
                            vocab, "merges", merges, "byte_fallback", 0, "pre_tokenizer", "type", "ByteLevel");
    const char *tmpl = "{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}";
    json_t *cfg = json_pack("{s:s,s:s}", "eos_token", "<|endoftext|>", "chat_template", tmpl);
    char dir[600], gg[600], out[600];
    snprintf(dir, sizeof dir, "%s/qwen2-tok", tmpdir);
    snprintf(gg, sizeof gg, "%s/qwen2-tok.gg", tmpdir);
    snprintf(out, sizeof out, "%s/qwen2-tok.gguf", tmpdir);
    int rc = fixture_copy("qwen2-bias-tied", dir, tok, cfg, NULL);
    json_decref(tok);
    json_decref(cfg);
    REQUIRE(rc == 0, "fixture copy");
    REQUIRE(convert_dir(dir, gg, GG_TYPE_F32) == 0, "convert");
    gg_err err;
    REQUIRE(export_fixture("qwen2-bias-tied", GG_GGUF_F16, gg, out, &err) == 0, "%s", err.msg);
    gguf g;
    int pr = gguf_parse(&g, out);
    CHECK(pr == 0, "%s", g.err);
    if (pr == 0) {
        CHECK(keys_well_typed(&g), "types");
        CHECK(has_str(&g, "tokenizer.ggml.model", "gpt2") && has_str(&g, "tokenizer.ggml.pre", "qwen2"),
              "model gpt2 / pre qwen2");
        const gkv *t = kv_find(&g, "tokenizer.ggml.tokens"), *sc = kv_find(&g, "tokenizer.ggml.scores"),
                  *ty = kv_find(&g, "tokenizer.ggml.token_type"), *m = kv_find(&g, "tokenizer.ggml.merges");
        REQUIRE(t && t->elem == 8 && t->count == 1000 && sc && sc->count == 1000 && ty && ty->count == 1000, "arrays");
        CHECK(arr_str_is(t, 5, "w5") && arr_str_is(t, 990, "<|endoftext|>") && arr_str_is(t, 992, "<tool>") &&
                  arr_str_is(t, 993, "[PAD993]") && arr_str_is(t, 999, "[PAD999]"),
              "token text");
        int ok = 1;
        for (int i = 0; i < 1000; i++) {
            int want = i < 990 ? 1 : i < 992 ? 3 : 4;
            ok &= (int)rd(ty->val + 4 * i, 4) == want && rdf(sc->val + 4 * i) == 0.0f;
        }
        CHECK(ok, "token types / scores");
        CHECK(m && m->count == 2 && arr_str_is(m, 0, "w 1") && arr_str_is(m, 1, "\xc4\xa0 w"), "merges from pairs");
        CHECK(has_u32(&g, "tokenizer.ggml.eos_token_id", 990), "eos from tokenizer_config");
        CHECK(!kv_find(&g, "tokenizer.ggml.bos_token_id") && !kv_find(&g, "tokenizer.ggml.unknown_token_id"),
              "no bos/unk");
        CHECK(has_str(&g, "tokenizer.chat_template", tmpl), "chat template");
        CHECK(check_tensors(&g, gg, 0, 1, 6, 2, 16), "tensor data f16");
    }
    gguf_free(&g);
}

static void test_refused(void) {
    char dir[600], gg[600], out[600];
    gg_err err;
    /* the real 32000-token llama2 tokenizer on the 1000-token fixture */
    char tsrc[600];
    snprintf(tsrc, sizeof tsrc, "%s/tokenizers/llama2/tokenizer.json", check_fixtures());
    snprintf(dir, sizeof dir, "%s/llama2-bigtok", tmpdir);
    snprintf(gg, sizeof gg, "%s/llama2-bigtok.gg", tmpdir);
    snprintf(out, sizeof out, "%s/bad.gguf", tmpdir);
    REQUIRE(fixture_copy("llama2-mha", dir, NULL, NULL, tsrc) == 0, "fixture copy");
    REQUIRE(convert_dir(dir, gg, GG_TYPE_F32) == 0, "convert");
    CHECK(export_fixture("llama2-mha", GG_GGUF_F32, gg, out, &err) != 0 && strstr(err.msg, "model.vocab_size") &&
              strstr(err.msg, "tokenizer.json"),
          "vocab mismatch: %s", err.msg);
    CHECK(access(out, F_OK) != 0, "no output on failure");
    snprintf(gg, sizeof gg, "%s/llama2.gg", tmpdir);
    CHECK(export_fixture("llama2-mha", (gg_gguf_type)30, gg, out, &err) != 0 && strstr(err.msg, "not supported"),
          "type 30 (bf16 in ggml): %s", err.msg);
    const char *bad[] = {"gemma-f32", "falcon7b-style"};
    for (int k = 0; k < 2; k++) {
        snprintf(gg, sizeof gg, "%s/%s.gg", tmpdir, bad[k]);
        CHECK(export_fixture(bad[k], GG_GGUF_F16, gg, out, &err) != 0 && strstr(err.msg, "general.architecture") &&
                  strstr(err.msg, k ? "falcon" : "gemma"),
              "%s: %s", bad[k], err.msg);
        CHECK(access(out, F_OK) != 0, "no output on failure");
    }
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_llama2_f32);
    RUN(test_llama2_f16_q8_q4);
    RUN(test_llama3_rope);
    RUN(test_mistral_q8);
    RUN(test_qwen2);
    RUN(test_tokenizer_spm);
    RUN(test_tokenizer_bpe);
    RUN(test_refused);
    char cmd[700];
    if (getenv("GG_KEEP")) return check_done(); /* keep the files for inspection */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_done();
}
