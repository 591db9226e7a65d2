/* model.c — reading a .gg model's configuration and tensors onto a backend
 * (model.h), and uploading LoRA adapters for it. The forward pass is in
 * decoder.c; the shared struct layout in model_internal.h. */
#include "models/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model_internal.h"

const char *const gg_linear_names[GG_LIN_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};

void gg_linear_tensor_name(char *buf, size_t len, int64_t layer, gg_linear l) {
    const char *grp = l <= GG_LIN_O ? "attn" : "mlp";
    snprintf(buf, len, "layers.%lld.%s.%s.weight", (long long)layer, grp, gg_linear_names[l]);
}

/* ---- configuration ---- */

static int get_size(const gg_file *f, const char *key, int64_t lo, int64_t hi, int64_t *out, gg_err *err) {
    if (gg_meta_get_i64(f, key, out, err)) return gg_err_prefix(err, "%s", gg_file_path(f));
    if (*out < lo || *out > hi)
        return gg_errf(err, "%s: metadata '%s' is %lld, expected %lld..%lld", gg_file_path(f), key,
                       (long long)*out, (long long)lo, (long long)hi);
    return 0;
}

static int get_f64(const gg_file *f, const char *key, double *out, gg_err *err) {
    if (gg_meta_get_f64(f, key, out, err)) return gg_err_prefix(err, "%s", gg_file_path(f));
    if (!isfinite(*out)) return gg_errf(err, "%s: metadata '%s' is not finite", gg_file_path(f), key);
    return 0;
}

static int get_bool(const gg_file *f, const char *key, int *out, gg_err *err) {
    if (gg_meta_get_bool(f, key, out, err)) return gg_err_prefix(err, "%s", gg_file_path(f));
    return 0;
}

/* Which of names[] the string key holds. */
static int get_enum(const gg_file *f, const char *key, const char *const *names, int n, int *out, gg_err *err) {
    gg_str s;
    if (gg_meta_get_str(f, key, &s, err)) return gg_err_prefix(err, "%s", gg_file_path(f));
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == s.len && memcmp(names[i], s.ptr, s.len) == 0) {
            *out = i;
            return 0;
        }
    return gg_errf(err, "%s: metadata '%s' is '%.*s', which this version does not know", gg_file_path(f), key,
                   (int)(s.len > 40 ? 40 : s.len), s.ptr);
}

int gg_model_config_read(gg_model_config *c, const gg_file *f, gg_err *err) {
    memset(c, 0, sizeof *c);
    gg_str s;
    if (gg_meta_get_str(f, "gg.kind", &s, err)) return gg_err_prefix(err, "%s", gg_file_path(f));
    if (s.len != 5 || memcmp(s.ptr, "model", 5) != 0)
        return gg_errf(err, "%s: this is not a model file (gg.kind is '%.*s')", gg_file_path(f),
                       (int)(s.len > 40 ? 40 : s.len), s.ptr);
    if (gg_meta_get_str(f, "general.architecture", &s, err)) return gg_err_prefix(err, "%s", gg_file_path(f));
    snprintf(c->arch, sizeof c->arch, "%.*s", (int)(s.len < 15 ? s.len : 15), s.ptr);

    const int64_t BIG = 1LL << 31;
    if (get_size(f, "model.vocab_size", 1, BIG, &c->vocab, err) ||
        get_size(f, "model.hidden_size", 1, 1 << 20, &c->hidden, err) ||
        get_size(f, "model.n_layers", 1, 65536, &c->n_layers, err) ||
        get_size(f, "model.n_heads", 1, 65536, &c->n_heads, err) ||
        get_size(f, "model.n_kv_heads", 1, c->n_heads, &c->n_kv_heads, err) ||
        get_size(f, "model.head_dim", 2, 4096, &c->head_dim, err) ||
        get_size(f, "model.ffn_size", 1, 1 << 24, &c->ffn, err) ||
        get_size(f, "model.context_length", 1, BIG, &c->context_length, err))
        return -1;
    if (c->n_heads % c->n_kv_heads)
        return gg_errf(err, "%s: model.n_heads (%lld) is not a multiple of model.n_kv_heads (%lld)", gg_file_path(f),
                       (long long)c->n_heads, (long long)c->n_kv_heads);
    if (c->head_dim % 2) return gg_errf(err, "%s: model.head_dim must be even for RoPE", gg_file_path(f));

    static const char *const norms[] = {"rms", "rms1p", "layernorm"};
    static const char *const mlps[] = {"swiglu", "geglu_tanh", "gelu"};
    static const char *const ropes[] = {"default", "llama3", "linear"};
    int v;
    double d;
    if (get_enum(f, "model.norm", norms, 3, &v, err)) return -1;
    c->norm = (gg_mnorm)v;
    if (get_enum(f, "model.mlp", mlps, 3, &v, err)) return -1;
    c->mlp = (gg_mmlp)v;
    if (get_enum(f, "model.rope.type", ropes, 3, &v, err)) return -1;
    c->rope = (gg_mrope)v;
    if (get_f64(f, "model.norm_eps", &d, err)) return -1;
    if (d <= 0 || d > 1) return gg_errf(err, "%s: model.norm_eps %g is out of range", gg_file_path(f), d);
    c->norm_eps = (float)d;
    if (get_bool(f, "model.parallel_attn", &c->parallel_attn, err) ||
        get_bool(f, "model.tied_embeddings", &c->tied_embeddings, err))
        return -1;
    if (get_f64(f, "model.embed_scale", &d, err)) return -1;
    c->embed_scale = (float)d;
    if (get_f64(f, "model.rope.theta", &c->rope_theta, err) || get_f64(f, "model.rope.factor", &c->rope_factor, err) ||
        get_f64(f, "model.rope.low_freq_factor", &c->rope_low_freq, err) ||
        get_f64(f, "model.rope.high_freq_factor", &c->rope_high_freq, err) ||
        get_size(f, "model.rope.original_context", 0, BIG, &c->rope_original_context, err) ||
        get_size(f, "model.sliding_window", 0, BIG, &c->sliding_window, err) ||
        get_size(f, "model.bos_id", -1, BIG, &c->bos_id, err) || get_size(f, "model.eos_id", -1, BIG, &c->eos_id, err))
        return -1;
    if (c->rope_theta <= 0) return gg_errf(err, "%s: model.rope.theta must be positive", gg_file_path(f));
    if (c->rope != GG_MROPE_DEFAULT && c->rope_factor <= 0)
        return gg_errf(err, "%s: model.rope.factor must be positive", gg_file_path(f));
    if (c->rope == GG_MROPE_LLAMA3 &&
        (c->rope_low_freq <= 0 || c->rope_high_freq <= c->rope_low_freq || c->rope_original_context <= 0))
        return gg_errf(err, "%s: llama3 RoPE scaling needs 0 < low_freq_factor < high_freq_factor and original_context > 0",
                       gg_file_path(f));
    if (gg_meta_get_u64(f, "model.fingerprint", &c->fingerprint, err)) return gg_err_prefix(err, "%s", gg_file_path(f));
    return 0;
}

/* ---- tensors ---- */

static int find_tensor(const gg_file *f, const char *name, uint32_t ndim, int64_t d0, int64_t d1, int required,
                       const gg_tensor **out, gg_err *err) {
    const gg_tensor *t = gg_tensor_find(f, name);
    *out = NULL;
    if (!t) return required ? gg_errf(err, "%s: tensor '%s' is missing", gg_file_path(f), name) : 0;
    int ok = t->ndim == ndim && (int64_t)t->shape[0] == d0 && (ndim == 1 || (int64_t)t->shape[1] == d1);
    if (!ok) {
        if (ndim == 1)
            return gg_errf(err, "%s: tensor '%s' has the wrong shape (expected [%lld])", gg_file_path(f), name,
                           (long long)d0);
        return gg_errf(err, "%s: tensor '%s' has the wrong shape (expected [%lld, %lld])", gg_file_path(f), name,
                       (long long)d0, (long long)d1);
    }
    *out = t;
    return 0;
}

/* A 1-D f32 vector (norm weight or bias) copied to the backend; *dst NULL
 * when absent and not required. */
static int load_vec(gg_model *m, const char *name, int64_t len, int required, float **dst, gg_err *err) {
    const gg_tensor *t;
    *dst = NULL;
    if (find_tensor(m->file, name, 1, len, 0, required, &t, err)) return -1;
    if (!t) return 0;
    if (t->type != GG_TYPE_F32)
        return gg_errf(err, "%s: tensor '%s' is %s; norms and biases must be f32", gg_file_path(m->file), name,
                       gg_type_name(t->type));
    *dst = m->be->alloc(m->be, (size_t)len * sizeof(float), err);
    if (!*dst) return -1;
    m->be->upload(m->be, *dst, t->data, (size_t)len * sizeof(float));
    return 0;
}

static int load_weight(gg_model *m, const char *name, int64_t rows, int64_t cols, int required, gg_weight *w,
                       gg_err *err) {
    const gg_tensor *t;
    memset(w, 0, sizeof *w);
    if (find_tensor(m->file, name, 2, rows, cols, required, &t, err)) return -1;
    if (!t) return 0;
    if (m->be->weight_init(m->be, w, t->type, rows, cols, t->data, err))
        return gg_err_prefix(err, "%s: tensor '%s'", gg_file_path(m->file), name);
    return 0;
}

void gg_model_linear_shape(const gg_model *m, gg_linear l, int64_t *rows, int64_t *cols) {
    const gg_model_config *c = &m->cfg;
    int64_t qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    switch (l) {
    case GG_LIN_Q: *rows = qd, *cols = c->hidden; break;
    case GG_LIN_K:
    case GG_LIN_V: *rows = kvd, *cols = c->hidden; break;
    case GG_LIN_O: *rows = c->hidden, *cols = qd; break;
    case GG_LIN_GATE: *rows = c->mlp == GG_MMLP_GELU ? 0 : c->ffn, *cols = c->hidden; break;
    case GG_LIN_UP: *rows = c->ffn, *cols = c->hidden; break;
    case GG_LIN_DOWN: *rows = c->hidden, *cols = c->ffn; break;
    default: *rows = *cols = 0;
    }
}

static int load_layer(gg_model *m, int64_t i, gg_err *err) {
    gg_layer *L = &m->layers[i];
    const gg_model_config *c = &m->cfg;
    char name[128];
#define VEC(field, fmt, len, req)                                                     \
    do {                                                                              \
        snprintf(name, sizeof name, "layers.%lld." fmt, (long long)i);                 \
        if (load_vec(m, name, len, req, &L->field, err)) return -1;                   \
    } while (0)
    int ln = c->norm == GG_MNORM_LAYER;
    VEC(attn_norm_w, "attn_norm.weight", c->hidden, 1);
    VEC(attn_norm_b, "attn_norm.bias", c->hidden, ln);
    /* Falcon-7B style blocks have one norm for attention and MLP. */
    VEC(mlp_norm_w, "mlp_norm.weight", c->hidden, !c->parallel_attn);
    VEC(mlp_norm_b, "mlp_norm.bias", c->hidden, ln && L->mlp_norm_w);
#undef VEC
    for (int l = 0; l < GG_LIN_COUNT; l++) {
        int64_t rows, cols;
        gg_model_linear_shape(m, (gg_linear)l, &rows, &cols);
        if (!rows) continue;
        gg_linear_tensor_name(name, sizeof name, i, (gg_linear)l);
        if (load_weight(m, name, rows, cols, 1, &L->w[l], err)) return -1;
        size_t nl = strlen(name);
        memcpy(name + nl - 6, "bias", 5); /* ".weight" → ".bias" */
        if (load_vec(m, name, rows, 0, &L->bias[l], err)) return -1;
    }
    return 0;
}

/* inv_freq[head_dim/2] as transformers computes it (float32 arithmetic). */
static void rope_inv_freq(const gg_model_config *c, float *inv) {
    int64_t half = c->head_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->head_dim;
        float f = 1.0f / powf((float)c->rope_theta, e);
        if (c->rope == GG_MROPE_LINEAR) {
            f = f / (float)c->rope_factor;
        } else if (c->rope == GG_MROPE_LLAMA3) {
            double old = (double)c->rope_original_context;
            double low_wl = old / c->rope_low_freq, high_wl = old / c->rope_high_freq;
            double wl = 2.0 * M_PI / f;
            if (wl > low_wl) {
                f = (float)(f / c->rope_factor);
            } else if (wl >= high_wl) {
                double sm = (old / wl - c->rope_low_freq) / (c->rope_high_freq - c->rope_low_freq);
                f = (float)((1.0 - sm) * f / c->rope_factor + sm * f);
            }
        }
        inv[i] = f;
    }
}

int gg_model_load(gg_model **out, const gg_file *f, gg_backend *be, gg_err *err) {
    *out = NULL;
    gg_model *m = calloc(1, sizeof *m);
    if (!m) return gg_errf(err, "out of memory");
    m->file = f;
    m->be = be;
    if (gg_model_config_read(&m->cfg, f, err)) goto fail;
    const gg_model_config *c = &m->cfg;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) {
        gg_errf(err, "out of memory");
        goto fail;
    }
    if (load_weight(m, "embed.weight", c->vocab, c->hidden, 1, &m->embed, err)) goto fail;
    if (c->tied_embeddings) {
        if (gg_tensor_find(f, "lm_head.weight")) {
            gg_errf(err, "%s: tied embeddings, but the file has an 'lm_head.weight'", gg_file_path(f));
            goto fail;
        }
        m->lm_head = &m->embed;
    } else {
        if (load_weight(m, "lm_head.weight", c->vocab, c->hidden, 1, &m->lm_head_w, err)) goto fail;
        m->lm_head = &m->lm_head_w;
    }
    if (load_vec(m, "final_norm.weight", c->hidden, 1, &m->final_norm_w, err) ||
        load_vec(m, "final_norm.bias", c->hidden, c->norm == GG_MNORM_LAYER, &m->final_norm_b, err))
        goto fail;
    for (int64_t i = 0; i < c->n_layers; i++)
        if (load_layer(m, i, err)) goto fail;

    float inv[2048];
    rope_inv_freq(c, inv);
    m->inv_freq = be->alloc(be, (size_t)(c->head_dim / 2) * sizeof(float), err);
    if (!m->inv_freq) goto fail;
    be->upload(be, m->inv_freq, inv, (size_t)(c->head_dim / 2) * sizeof(float));
    if (be->sync(be, err)) goto fail;
    *out = m;
    return 0;
fail:
    gg_model_free(m);
    return -1;
}

void gg_model_free(gg_model *m) {
    if (!m) return;
    gg_backend *be = m->be;
    if (m->layers)
        for (int64_t i = 0; i < m->cfg.n_layers; i++) {
            gg_layer *L = &m->layers[i];
            be->free(be, L->attn_norm_w);
            be->free(be, L->attn_norm_b);
            be->free(be, L->mlp_norm_w);
            be->free(be, L->mlp_norm_b);
            for (int l = 0; l < GG_LIN_COUNT; l++) {
                if (L->w[l].data) be->weight_free(be, &L->w[l]);
                be->free(be, L->bias[l]);
            }
        }
    if (m->embed.data) be->weight_free(be, &m->embed);
    if (m->lm_head_w.data) be->weight_free(be, &m->lm_head_w);
    be->free(be, m->final_norm_w);
    be->free(be, m->final_norm_b);
    be->free(be, m->inv_freq);
    free(m->layers);
    free(m);
}

const gg_model_config *gg_model_cfg(const gg_model *m) { return &m->cfg; }
gg_backend *gg_model_backend(const gg_model *m) { return m->be; }
gg_type gg_model_weight_type(const gg_model *m) { return m->layers[0].w[GG_LIN_Q].type; }

/* ---- LoRA ---- */

int gg_lora_new(gg_lora **out, gg_model *m, const gg_lora_module *mods, size_t n, const char *label, gg_err *err) {
    *out = NULL;
    gg_backend *be = m->be;
    gg_lora *l = calloc(1, sizeof *l);
    if (!l) return gg_errf(err, "out of memory");
    l->be = be;
    l->n_layers = m->cfg.n_layers;
    l->mods = calloc((size_t)m->cfg.n_layers * GG_LIN_COUNT, sizeof *l->mods);
    if (!l->mods) {
        free(l);
        return gg_errf(err, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const gg_lora_module *md = &mods[i];
        if (md->layer < 0 || md->layer >= m->cfg.n_layers || (int)md->target < 0 || md->target >= GG_LIN_COUNT) {
            gg_errf(err, "%s: module %zu names layer %lld of a %lld-layer model", label, i, (long long)md->layer,
                    (long long)m->cfg.n_layers);
            goto fail;
        }
        int64_t rows, cols;
        gg_model_linear_shape(m, md->target, &rows, &cols);
        char name[96];
        gg_linear_tensor_name(name, sizeof name, md->layer, md->target);
        if (!rows) {
            gg_errf(err, "%s: the base model has no '%s'", label, name);
            goto fail;
        }
        if (md->r < 1 || md->r > 65536 || !isfinite(md->scale)) {
            gg_errf(err, "%s: '%s': bad rank %lld or scale", label, name, (long long)md->r);
            goto fail;
        }
        gg_lora_bound *b = &l->mods[md->layer * GG_LIN_COUNT + md->target];
        if (b->a) {
            gg_errf(err, "%s: '%s' is adapted twice", label, name);
            goto fail;
        }
        b->r = md->r;
        b->scale = md->scale;
        size_t na = (size_t)(md->r * cols), nb = (size_t)(rows * md->r);
        b->a = be->alloc(be, na * sizeof(float), err);
        b->b = be->alloc(be, nb * sizeof(float), err);
        if (!b->a || !b->b) goto fail;
        be->upload(be, b->a, md->a, na * sizeof(float));
        be->upload(be, b->b, md->b, nb * sizeof(float));
        if (md->r > l->max_r) l->max_r = md->r;
    }
    if (be->sync(be, err)) goto fail;
    *out = l;
    return 0;
fail:
    gg_lora_free(l);
    return -1;
}

void gg_lora_free(gg_lora *l) {
    if (!l) return;
    for (int64_t i = 0; i < l->n_layers * GG_LIN_COUNT; i++) {
        l->be->free(l->be, l->mods[i].a);
        l->be->free(l->be, l->mods[i].b);
    }
    free(l->mods);
    free(l);
}
