/* hf_export.c — a .gg model → a Hugging Face checkpoint folder (hf_export.h):
 * canonical → HF tensor names, Falcon q/k/v re-fusing, dtype conversion,
 * sharding, the index, config.json and the verbatim tokenizer files. */
#include "convert/hf_export.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/hf_model.h"
#include "convert/safetensors.h"

#define HF_NAME_MAX 160
#define PATH_MAX_ 4096

/* One tensor of the HF checkpoint: one canonical source, or (Falcon's
 * query_key_value) three fused ones. */
typedef struct hf_out {
    char name[HF_NAME_MAX];
    const gg_tensor *src;    /* NULL when fused */
    const gg_tensor *qkv[3]; /* fused q, k, v */
    uint32_t ndim;
    uint64_t shape[2];
    uint64_t nbytes; /* in the output dtype */
    int shard;
} hf_out;

typedef struct exporter {
    const gg_file *f;
    const char *label; /* the .gg path, for messages */
    const char *dir;
    gg_type dtype;
    gg_hf_config cfg;
    int falcon, two_norms;
    hf_out *out;
    size_t n, cap;
    int nshards;
    gg_err *err;
} exporter;

/* ---- names ------------------------------------------------------------- */

typedef struct name_map {
    const char *canon, *llama, *falcon; /* NULL: no such tensor in that family */
} name_map;

static const name_map LAYER_MAP[] = {
    {"attn_norm.weight", "input_layernorm.weight", "input_layernorm.weight"},
    {"attn_norm.bias", NULL, "input_layernorm.bias"},
    {"attn.q.weight", "self_attn.q_proj.weight", "self_attention.query_key_value.weight"},
    {"attn.q.bias", "self_attn.q_proj.bias", "self_attention.query_key_value.bias"},
    {"attn.k.weight", "self_attn.k_proj.weight", "self_attention.query_key_value.weight"},
    {"attn.k.bias", "self_attn.k_proj.bias", "self_attention.query_key_value.bias"},
    {"attn.v.weight", "self_attn.v_proj.weight", "self_attention.query_key_value.weight"},
    {"attn.v.bias", "self_attn.v_proj.bias", "self_attention.query_key_value.bias"},
    {"attn.o.weight", "self_attn.o_proj.weight", "self_attention.dense.weight"},
    {"attn.o.bias", "self_attn.o_proj.bias", "self_attention.dense.bias"},
    {"mlp_norm.weight", "post_attention_layernorm.weight", "post_attention_layernorm.weight"},
    {"mlp_norm.bias", NULL, "post_attention_layernorm.bias"},
    {"mlp.gate.weight", "mlp.gate_proj.weight", NULL},
    {"mlp.gate.bias", "mlp.gate_proj.bias", NULL},
    {"mlp.up.weight", "mlp.up_proj.weight", "mlp.dense_h_to_4h.weight"},
    {"mlp.up.bias", "mlp.up_proj.bias", "mlp.dense_h_to_4h.bias"},
    {"mlp.down.weight", "mlp.down_proj.weight", "mlp.dense_4h_to_h.weight"},
    {"mlp.down.bias", "mlp.down_proj.bias", "mlp.dense_4h_to_h.bias"},
};

static const name_map GLOBAL_MAP[] = {
    {"embed.weight", "model.embed_tokens.weight", "transformer.word_embeddings.weight"},
    {"final_norm.weight", "model.norm.weight", "transformer.ln_f.weight"},
    {"final_norm.bias", NULL, "transformer.ln_f.bias"},
    {"lm_head.weight", "lm_head.weight", "lm_head.weight"},
};

/* "layers.N.rest" → 1 with *layer, *rest; 0 otherwise. */
static int split_layer(const char *name, uint64_t *layer, const char **rest) {
    if (strncmp(name, "layers.", 7) != 0) return 0;
    const char *s = name + 7;
    uint64_t v = 0;
    size_t nd = 0;
    while (s[nd] >= '0' && s[nd] <= '9' && nd < 12) v = v * 10 + (uint64_t)(s[nd++] - '0');
    if (nd == 0 || s[nd] != '.' || (nd > 1 && s[0] == '0')) return 0;
    *layer = v;
    *rest = s + nd + 1;
    return 1;
}

/* Falcon's second norm pair: ln_attn / ln_mlp instead of input_layernorm /
 * post_attention_layernorm (HF: parallel attention with two norms). */
static const char *falcon_norm_name(const exporter *ex, const char *canon, const char *hf) {
    if (!ex->two_norms) return hf;
    if (strcmp(canon, "attn_norm.weight") == 0) return "ln_attn.weight";
    if (strcmp(canon, "attn_norm.bias") == 0) return "ln_attn.bias";
    if (strcmp(canon, "mlp_norm.weight") == 0) return "ln_mlp.weight";
    if (strcmp(canon, "mlp_norm.bias") == 0) return "ln_mlp.bias";
    return hf;
}

/* HF name of canonical tensor t into buf; *which = 0/1/2 for a Falcon q/k/v
 * piece, else -1. */
static int hf_name_of(const exporter *ex, const gg_tensor *t, char *buf, size_t cap, int *which) {
    uint64_t L;
    const char *rest;
    *which = -1;
    if (split_layer(t->name, &L, &rest)) {
        if (L >= (uint64_t)ex->cfg.n_layers)
            return gg_errf(ex->err, "%s: tensor '%s': layer %llu out of range (config has %lld layers)",
                           ex->label, t->name, (unsigned long long)L, (long long)ex->cfg.n_layers);
        for (size_t k = 0; k < sizeof LAYER_MAP / sizeof *LAYER_MAP; k++) {
            const name_map *m = &LAYER_MAP[k];
            const char *hf = ex->falcon ? m->falcon : m->llama;
            if (strcmp(rest, m->canon) != 0 || !hf) continue;
            if (ex->falcon) {
                hf = falcon_norm_name(ex, m->canon, hf);
                if (strncmp(rest, "attn.", 5) == 0)
                    *which = rest[5] == 'q' ? 0 : rest[5] == 'k' ? 1 : rest[5] == 'v' ? 2 : -1;
            }
            snprintf(buf, cap, "%s%llu.%s", ex->falcon ? "transformer.h." : "model.layers.",
                     (unsigned long long)L, hf);
            return 0;
        }
    } else {
        for (size_t k = 0; k < sizeof GLOBAL_MAP / sizeof *GLOBAL_MAP; k++) {
            const name_map *m = &GLOBAL_MAP[k];
            const char *hf = ex->falcon ? m->falcon : m->llama;
            if (strcmp(t->name, m->canon) != 0 || !hf) continue;
            if (strcmp(m->canon, "lm_head.weight") == 0 && ex->cfg.tied_embeddings)
                return gg_errf(ex->err, "%s: tensor 'lm_head.weight' present but the config ties the embeddings",
                               ex->label);
            snprintf(buf, cap, "%s", hf);
            return 0;
        }
    }
    return gg_errf(ex->err, "%s: tensor '%s' has no Hugging Face name for %s", ex->label, t->name,
                   ex->cfg.hf_class);
}

/* ---- the tensor list ----------------------------------------------------- */

static hf_out *find_out(exporter *ex, const char *name) {
    for (size_t i = ex->n; i-- > 0;)
        if (strcmp(ex->out[i].name, name) == 0) return &ex->out[i];
    return NULL;
}

static hf_out *push_out(exporter *ex, const char *name) {
    if (ex->n == ex->cap) {
        size_t nc = ex->cap ? ex->cap * 2 : 64;
        hf_out *o = realloc(ex->out, nc * sizeof *o);
        if (!o) return NULL;
        ex->out = o;
        ex->cap = nc;
    }
    hf_out *o = &ex->out[ex->n++];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    return o;
}

static size_t dtype_size(gg_type t) { return t == GG_TYPE_F32 ? 4 : 2; }

static int add_tensor(exporter *ex, const gg_tensor *t) {
    char name[HF_NAME_MAX];
    int which;
    if (hf_name_of(ex, t, name, sizeof name, &which)) return -1;
    if (t->ndim < 1 || t->ndim > 2)
        return gg_errf(ex->err, "%s: tensor '%s' has %u dimensions, expected 1 or 2", ex->label, t->name,
                       t->ndim);
    hf_out *o = which >= 0 ? find_out(ex, name) : NULL;
    if (!o && !(o = push_out(ex, name))) return gg_errf(ex->err, "out of memory");
    if (which >= 0) {
        if (o->qkv[which]) return gg_errf(ex->err, "%s: tensor '%s' appears twice", ex->label, t->name);
        o->qkv[which] = t;
        return 0;
    }
    if (o->src) return gg_errf(ex->err, "%s: two tensors map to '%s'", ex->label, name);
    o->src = t;
    o->ndim = t->ndim;
    o->shape[0] = t->shape[0];
    o->shape[1] = t->ndim == 2 ? t->shape[1] : 0;
    return 0;
}

/* Check a fused query_key_value: q, k, v present, their rows fill the
 * fused rows exactly as the converter split them. */
static int check_fused(exporter *ex, hf_out *o) {
    static const char *const qkv = "qkv";
    uint64_t total = (uint64_t)(ex->cfg.n_heads + 2 * ex->cfg.n_kv_heads) * (uint64_t)ex->cfg.head_dim;
    const gg_tensor *q = o->qkv[0];
    for (int w = 0; w < 3; w++) {
        const gg_tensor *t = o->qkv[w];
        if (!t) return gg_errf(ex->err, "%s: '%s' needs attn.%c (missing)", ex->label, o->name, qkv[w]);
        if (!q || t->ndim != q->ndim || (t->ndim == 2 && t->shape[1] != q->shape[1]))
            return gg_errf(ex->err, "%s: tensor '%s': shape does not match '%s'", ex->label, t->name,
                           q ? q->name : "attn.q");
        gg_row_seg *seg;
        size_t ns;
        if (gg_falcon_qkv_segs(&ex->cfg, w, &seg, &ns, ex->err)) return -1;
        uint64_t rows = 0;
        int bad = 0;
        for (size_t k = 0; k < ns; k++) {
            rows += seg[k].nrows;
            bad |= seg[k].row0 + seg[k].nrows > total;
        }
        free(seg);
        if (bad || rows != t->shape[0])
            return gg_errf(ex->err, "%s: tensor '%s': %llu rows, the config's query_key_value layout expects %llu",
                           ex->label, t->name, (unsigned long long)t->shape[0], (unsigned long long)rows);
    }
    o->ndim = q->ndim;
    o->shape[0] = total;
    o->shape[1] = q->ndim == 2 ? q->shape[1] : 0;
    return 0;
}

static int collect(exporter *ex) {
    size_t nt = gg_tensor_count(ex->f);
    if (nt == 0) return gg_errf(ex->err, "%s: no tensors", ex->label);
    for (size_t i = 0; i < nt; i++)
        if (add_tensor(ex, gg_tensor_at(ex->f, i))) return -1;
    for (size_t i = 0; i < ex->n; i++) {
        hf_out *o = &ex->out[i];
        if (!o->src && check_fused(ex, o)) return -1;
        o->nbytes = (o->ndim == 2 ? o->shape[0] * o->shape[1] : o->shape[0]) * dtype_size(ex->dtype);
    }
    return 0;
}

/* ---- tensor data --------------------------------------------------------- */

/* t in the output dtype: in place when stored so, else in *owned. */
static int convert_tensor(exporter *ex, const gg_tensor *t, const void **data, void **owned) {
    *owned = NULL;
    if (t->type == ex->dtype) {
        *data = t->data;
        return 0;
    }
    uint64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    float *f = malloc(rows * cols * sizeof *f + 1);
    if (!f) return gg_errf(ex->err, "%s: out of memory", t->name);
    if (gg_dequantize_rows(t->type, t->data, rows, cols, 0, rows, f, ex->err)) {
        free(f);
        return gg_err_prefix(ex->err, "%s: tensor '%s'", ex->label, t->name);
    }
    if (ex->dtype == GG_TYPE_F32) {
        *data = *owned = f;
        return 0;
    }
    void *o = malloc(rows * cols * 2 + 1);
    if (!o || gg_quantize(ex->dtype, o, GG_TYPE_F32, f, rows, cols, ex->err)) {
        free(f);
        free(o);
        if (!o) return gg_errf(ex->err, "%s: out of memory", t->name);
        return gg_err_prefix(ex->err, "%s: tensor '%s' to %s", ex->label, t->name, gg_type_name(ex->dtype));
    }
    free(f);
    *data = *owned = o;
    return 0;
}

/* Scatter the rows of piece w into the fused buffer at its segments. */
static int scatter_piece(exporter *ex, const hf_out *o, int w, uint8_t *fused) {
    const void *data;
    void *owned;
    gg_row_seg *seg;
    size_t ns;
    if (convert_tensor(ex, o->qkv[w], &data, &owned)) return -1;
    if (gg_falcon_qkv_segs(&ex->cfg, w, &seg, &ns, ex->err)) {
        free(owned);
        return -1;
    }
    size_t rb = (size_t)(o->ndim == 2 ? o->shape[1] : 1) * dtype_size(ex->dtype);
    const uint8_t *p = data;
    for (size_t k = 0; k < ns; k++) {
        memcpy(fused + seg[k].row0 * rb, p, seg[k].nrows * rb);
        p += seg[k].nrows * rb;
    }
    free(seg);
    free(owned);
    return 0;
}

static int materialize(exporter *ex, const hf_out *o, const void **data, void **owned) {
    if (o->src) return convert_tensor(ex, o->src, data, owned);
    uint8_t *fused = malloc(o->nbytes + 1);
    if (!fused) return gg_errf(ex->err, "%s: out of memory", o->name);
    for (int w = 0; w < 3; w++)
        if (scatter_piece(ex, o, w, fused)) {
            free(fused);
            return -1;
        }
    *data = *owned = fused;
    return 0;
}

/* ---- files --------------------------------------------------------------- */

static int join(exporter *ex, char *buf, const char *name) {
    if ((size_t)snprintf(buf, PATH_MAX_, "%s/%s", ex->dir, name) >= PATH_MAX_)
        return gg_errf(ex->err, "%s/%s: path too long", ex->dir, name);
    return 0;
}

static int write_text(exporter *ex, const char *name, const char *text, size_t len) {
    char path[PATH_MAX_];
    if (join(ex, path, name)) return -1;
    const void *parts[1] = {text};
    size_t lens[1] = {len};
    return gg_write_atomic(path, parts, lens, 1, ex->err);
}

static void shard_name(const exporter *ex, int s, char *buf, size_t cap) {
    if (ex->nshards == 1) snprintf(buf, cap, "model.safetensors");
    else snprintf(buf, cap, "model-%05d-of-%05d.safetensors", s + 1, ex->nshards);
}

static void plan_shards(exporter *ex, size_t shard_bytes) {
    int cur = 0;
    uint64_t acc = 0;
    for (size_t i = 0; i < ex->n; i++) {
        if (shard_bytes && acc > 0 && acc + ex->out[i].nbytes > shard_bytes) {
            cur++;
            acc = 0;
        }
        ex->out[i].shard = cur;
        acc += ex->out[i].nbytes;
    }
    ex->nshards = cur + 1;
}

static int write_shard(exporter *ex, int s) {
    static const char *const meta[2] = {"format", "pt"};
    const char *dt = ex->dtype == GG_TYPE_F32 ? "F32" : ex->dtype == GG_TYPE_F16 ? "F16" : "BF16";
    size_t k = 0, cnt = 0;
    for (size_t i = 0; i < ex->n; i++) cnt += ex->out[i].shard == s;
    gg_st_wtensor *wt = calloc(cnt + 1, sizeof *wt);
    void **owned = calloc(cnt + 1, sizeof *owned);
    int rc = -1;
    if (!wt || !owned) {
        gg_errf(ex->err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < ex->n; i++) {
        const hf_out *o = &ex->out[i];
        if (o->shard != s) continue;
        wt[k] = (gg_st_wtensor){.name = o->name, .dtype = dt, .ndim = o->ndim};
        wt[k].shape[0] = o->shape[0];
        wt[k].shape[1] = o->shape[1];
        if (materialize(ex, o, &wt[k].data, &owned[k])) goto out;
        k++;
    }
    char name[64], path[PATH_MAX_];
    shard_name(ex, s, name, sizeof name);
    if (join(ex, path, name)) goto out;
    rc = gg_st_write(path, wt, k, meta, 1, ex->err);
out:
    for (size_t i = 0; owned && i < k; i++) free(owned[i]);
    free(owned);
    free(wt);
    return rc;
}

static int cmp_out_name(const void *a, const void *b) {
    return strcmp((*(const hf_out *const *)a)->name, (*(const hf_out *const *)b)->name);
}

/* JSON text of root with reals in 15 significant digits ("1e-05") when
 * that reads back equal, else 17 (always exact). */
static char *dump_json(const json_t *root) {
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
    json_t *back = s ? json_loads(s, 0, NULL) : NULL;
    int same = back && json_equal(root, back);
    json_decref(back);
    if (same) return s;
    free(s);
    return json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
}

/* Dump a JSON value with a trailing newline to DIR/name (steals root). */
static int write_json(exporter *ex, const char *name, json_t *root) {
    char *s = root ? dump_json(root) : NULL;
    json_decref(root);
    if (!s) return gg_errf(ex->err, "%s/%s: out of memory", ex->dir, name);
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return gg_errf(ex->err, "%s/%s: out of memory", ex->dir, name);
    }
    t[n] = '\n';
    int rc = write_text(ex, name, t, n + 1);
    free(t);
    return rc;
}

static int write_index(exporter *ex) {
    const hf_out **sorted = malloc(ex->n * sizeof *sorted);
    json_t *root = json_object(), *meta = json_object(), *map = json_object();
    uint64_t total = 0;
    int bad = !sorted || !root || !meta || !map;
    for (size_t i = 0; !bad && i < ex->n; i++) {
        sorted[i] = &ex->out[i];
        total += ex->out[i].nbytes;
    }
    if (!bad) qsort(sorted, ex->n, sizeof *sorted, cmp_out_name);
    for (size_t i = 0; !bad && i < ex->n; i++) {
        char name[64];
        shard_name(ex, sorted[i]->shard, name, sizeof name);
        bad |= json_object_set_new(map, sorted[i]->name, json_string(name)) != 0;
    }
    free(sorted);
    if (!bad) bad |= json_object_set_new(meta, "total_size", json_integer((json_int_t)total)) != 0;
    if (!bad) bad |= json_object_set(root, "metadata", meta) != 0 || json_object_set(root, "weight_map", map) != 0;
    json_decref(meta);
    json_decref(map);
    if (bad) {
        json_decref(root);
        return gg_errf(ex->err, "%s/model.safetensors.index.json: out of memory", ex->dir);
    }
    return write_json(ex, "model.safetensors.index.json", root);
}

/* Remove the other layout's entry file so loaders do not pick it up. */
static int remove_stale(exporter *ex, const char *name) {
    char path[PATH_MAX_];
    if (join(ex, path, name)) return -1;
    if (unlink(path) != 0 && errno != ENOENT)
        return gg_errf(ex->err, "%s: cannot remove stale file: %s", path, strerror(errno));
    return 0;
}

static int write_weights(exporter *ex, size_t shard_bytes) {
    plan_shards(ex, shard_bytes);
    for (int s = 0; s < ex->nshards; s++)
        if (write_shard(ex, s)) return -1;
    return ex->nshards == 1 ? 0 : write_index(ex);
}

/* ---- metadata ------------------------------------------------------------ */

/* The str value of key, NULL (no error) when absent; -1 when mistyped. */
static int meta_str(exporter *ex, const char *key, const gg_value **out) {
    const gg_value *v = gg_meta_find(ex->f, key);
    *out = NULL;
    if (!v) return 0;
    if (v->type != GG_V_STR)
        return gg_errf(ex->err, "%s: metadata '%s' is %s, expected str", ex->label, key, gg_vtype_name(v->type));
    *out = v;
    return 0;
}

static const char *dtype_json(gg_type t) {
    return t == GG_TYPE_F32 ? "float32" : t == GG_TYPE_F16 ? "float16" : "bfloat16";
}

static int write_config(exporter *ex, const gg_value *v) {
    json_error_t je;
    json_t *root = json_loadb(v->v.s.ptr, v->v.s.len, 0, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return gg_errf(ex->err, "%s: metadata 'source.config_json': not a JSON object (line %d: %s)", ex->label,
                       je.line, root ? "not an object" : je.text);
    }
    int has_new = json_object_get(root, "dtype") != NULL, has_old = json_object_get(root, "torch_dtype") != NULL;
    const char *dt = dtype_json(ex->dtype);
    int bad = (has_new && json_object_set_new(root, "dtype", json_string(dt))) ||
              ((has_old || !has_new) && json_object_set_new(root, "torch_dtype", json_string(dt)));
    if (bad) {
        json_decref(root);
        return gg_errf(ex->err, "%s/config.json: out of memory", ex->dir);
    }
    return write_json(ex, "config.json", root);
}

/* The model.* shape keys must agree with the stored config.json. */
static int check_shapes_meta(exporter *ex) {
    const struct {
        const char *key;
        int64_t want;
    } keys[] = {
        {"model.vocab_size", ex->cfg.vocab_size}, {"model.hidden_size", ex->cfg.hidden_size},
        {"model.n_layers", ex->cfg.n_layers},     {"model.n_heads", ex->cfg.n_heads},
        {"model.n_kv_heads", ex->cfg.n_kv_heads}, {"model.head_dim", ex->cfg.head_dim},
        {"model.ffn_size", ex->cfg.ffn_size},
    };
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        int64_t v;
        if (gg_meta_get_i64(ex->f, keys[i].key, &v, ex->err)) return gg_err_prefix(ex->err, "%s", ex->label);
        if (v != keys[i].want)
            return gg_errf(ex->err, "%s: metadata '%s' is %lld but source.config_json says %lld", ex->label,
                           keys[i].key, (long long)v, (long long)keys[i].want);
    }
    return 0;
}

static int load_config(exporter *ex, const gg_value **cfg_text) {
    const gg_value *kind;
    if (meta_str(ex, "gg.kind", &kind)) return -1;
    if (kind && (kind->v.s.len != 5 || memcmp(kind->v.s.ptr, "model", 5) != 0))
        return gg_errf(ex->err, "%s: metadata 'gg.kind' is '%.*s', expected 'model'", ex->label,
                       (int)(kind->v.s.len > 64 ? 64 : kind->v.s.len), kind->v.s.ptr);
    if (meta_str(ex, "source.config_json", cfg_text)) return -1;
    if (!*cfg_text)
        return gg_errf(ex->err, "%s: metadata 'source.config_json' is missing (needed for config.json)", ex->label);
    char label[PATH_MAX_ + 64];
    snprintf(label, sizeof label, "%s: metadata 'source.config_json'", ex->label);
    if (gg_hf_config_parse(&ex->cfg, (*cfg_text)->v.s.ptr, (*cfg_text)->v.s.len, label, ex->err)) return -1;
    if (check_shapes_meta(ex)) return -1;
    ex->falcon = strcmp(ex->cfg.arch, "falcon") == 0;
    ex->two_norms = ex->falcon && ex->cfg.parallel_attn && gg_tensor_find(ex->f, "layers.0.mlp_norm.weight");
    return 0;
}

static int write_texts(exporter *ex) {
    static const struct {
        const char *key, *file;
    } texts[] = {
        {"source.generation_config_json", "generation_config.json"},
        {"tokenizer.json", "tokenizer.json"},
        {"tokenizer.config_json", "tokenizer_config.json"},
        {"tokenizer.special_tokens_map_json", "special_tokens_map.json"},
    };
    for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
        const gg_value *v;
        if (meta_str(ex, texts[k].key, &v)) return -1;
        if (v && write_text(ex, texts[k].file, v->v.s.ptr, (size_t)v->v.s.len)) return -1;
    }
    return 0;
}

int gg_hf_export(const gg_file *model, const char *dir, gg_type dtype, size_t shard_bytes, gg_err *err) {
    if (dtype != GG_TYPE_F32 && dtype != GG_TYPE_F16 && dtype != GG_TYPE_BF16)
        return gg_errf(err, "gg_hf_export: output dtype %s is not f32, f16 or bf16", gg_type_name(dtype));
    exporter ex;
    memset(&ex, 0, sizeof ex);
    ex.f = model;
    ex.label = gg_file_path(model) ? gg_file_path(model) : "model";
    ex.dir = dir;
    ex.dtype = dtype;
    ex.err = err;
    const gg_value *cfg_text;
    char stage[4096];
    int rc = -1;
    if (load_config(&ex, &cfg_text) || collect(&ex) || gg_dir_stage(dir, stage, sizeof stage, err)) goto out;
    /* every file into the stage; DIR changes only when all are written */
    ex.dir = stage;
    if (write_weights(&ex, shard_bytes) || write_config(&ex, cfg_text) || write_texts(&ex)) {
        gg_dir_abort(stage);
        goto out;
    }
    if (gg_dir_commit(stage, dir, err)) goto out;
    ex.dir = dir;
    if (remove_stale(&ex, ex.nshards == 1 ? "model.safetensors.index.json" : "model.safetensors")) goto out;
    rc = 0;
out:
    free(ex.out);
    return rc;
}
