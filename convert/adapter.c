/* adapter.c — LoRA adapters on the host (adapter.h): PEFT folders → gg_adapter
 * for a given base model and back (export), .gg adapter files
 * (docs/FORMAT.md §8) in and out, and the adapter ↔ base compatibility
 * check.
 *
 * PEFT names: `base_model.model.<module>.lora_A[.<adapter name>].weight`,
 * module = `model.layers.N.self_attn.{q,k,v,o}_proj` / `model.layers.N.mlp.
 * {gate,up,down}_proj` (llama, mistral, qwen2, gemma) or `transformer.h.N.
 * self_attention.{query_key_value,dense}` / `transformer.h.N.mlp.
 * {dense_h_to_4h,dense_4h_to_h}` (falcon). Falcon's fused query_key_value B
 * is split into q, k, v rows with gg_falcon_qkv_segs (the converter's own
 * segments); A is copied to each. rank_pattern / alpha_pattern keys match a
 * module as PEFT's get_pattern_key does: re.match(r"(.*\.)?(KEY)$", module),
 * first key in file order wins (PCRE2 stands in for Python's re). */
#include "convert/adapter.h"
#include "convert/json_util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "convert/hf_model.h"
#include "convert/safetensors.h"
#include "ggfmt/utf8.h"

#define MAX_CONFIG_BYTES (16u << 20)
#define MAX_RANK (1 << 20)
#define MAX_DIM 2147483647LL
#define MAX_LAYERS 65536

/* ---- names ---------------------------------------------------------------- */

static const char *const TARGET_NAME[GG_LT_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};

const char *gg_lora_target_name(gg_lora_target t) {
    return (unsigned)t < GG_LT_COUNT ? TARGET_NAME[t] : "?";
}

int gg_lora_target_from_name(const char *name, gg_lora_target *out) {
    for (int i = 0; i < GG_LT_COUNT; i++)
        if (strcmp(name, TARGET_NAME[i]) == 0) {
            *out = (gg_lora_target)i;
            return 0;
        }
    return -1;
}

static const char *target_group(gg_lora_target t) { return t <= GG_LT_O ? "attn" : "mlp"; }

const char *gg_lora_module_name(char *buf, size_t cap, int64_t layer, gg_lora_target t) {
    snprintf(buf, cap, "layers.%lld.%s.%s", (long long)layer, target_group(t), gg_lora_target_name(t));
    return buf;
}

const char *gg_lora_weight_name(char *buf, size_t cap, int64_t layer, gg_lora_target t) {
    snprintf(buf, cap, "layers.%lld.%s.%s.weight", (long long)layer, target_group(t), gg_lora_target_name(t));
    return buf;
}

float gg_lora_scale(double alpha, int64_t r, int rslora) {
    if (r <= 0) return 0.0f;
    return (float)(rslora ? alpha / sqrt((double)r) : alpha / (double)r);
}

static const char *const ARCHES[] = {"llama", "mistral", "qwen2", "gemma", "falcon"};

static int known_arch(const char *s, size_t len) {
    for (size_t i = 0; i < sizeof ARCHES / sizeof *ARCHES; i++)
        if (strlen(ARCHES[i]) == len && memcmp(s, ARCHES[i], len) == 0) return 1;
    return 0;
}

unsigned gg_adapter_target_mask(const gg_adapter *a) {
    unsigned m = 0;
    for (size_t i = 0; a && i < a->n; i++)
        if ((unsigned)a->t[i].target < GG_LT_COUNT) m |= 1u << a->t[i].target;
    return m;
}

/* Parse "layers.N.attn.q" (or .mlp.gate ...) at s; *end points after it.
 * 0 on success, -1 when s does not start with such a name. */
static int parse_module(const char *s, int64_t *layer, gg_lora_target *t, const char **end) {
    if (strncmp(s, "layers.", 7) != 0) return -1;
    s += 7;
    int64_t v = 0;
    size_t nd = 0;
    while (s[nd] >= '0' && s[nd] <= '9') {
        if (nd >= 9) return -1;
        v = v * 10 + (s[nd] - '0');
        nd++;
    }
    if (nd == 0 || (nd > 1 && s[0] == '0') || s[nd] != '.') return -1;
    s += nd + 1;
    for (int i = 0; i < GG_LT_COUNT; i++) {
        const char *g = target_group((gg_lora_target)i), *n = TARGET_NAME[i];
        size_t gl = strlen(g), nl = strlen(n);
        if (strncmp(s, g, gl) == 0 && s[gl] == '.' && strncmp(s + gl + 1, n, nl) == 0) {
            const char *e = s + gl + 1 + nl;
            if (*e != '\0' && *e != '.') continue;
            *layer = v;
            *t = (gg_lora_target)i;
            *end = e;
            return 0;
        }
    }
    return -1;
}

static void shape_str(char *buf, size_t cap, uint32_t ndim, const uint64_t *shape) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (uint32_t i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", i ? "," : "", (unsigned long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* ---- gg_adapter lifetime ---------------------------------------------------- */

void gg_adapter_free(gg_adapter *a) {
    if (!a) return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->t[i].a);
        free(a->t[i].b);
    }
    free(a->t);
    free(a);
}

static gg_adapter *adapter_new(size_t n, const char *label) {
    gg_adapter *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->t = calloc(n ? n : 1, sizeof *a->t);
    if (!a->t) {
        free(a);
        return NULL;
    }
    snprintf(a->label, sizeof a->label, "%s", label);
    return a;
}

static int finite_check(const float *v, uint64_t n, const char *file, const char *what, gg_err *err) {
    for (uint64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return gg_errf(err, "%s: %s: element %llu is not finite (%g)", file, what, (unsigned long long)i,
                           (double)v[i]);
    return 0;
}

/* ---- the base model --------------------------------------------------------- */

typedef struct base_info {
    const char *path;
    char arch[16];
    int64_t n_layers;
    int has_fp;
    uint64_t fp;
} base_info;

static int base_read(const gg_file *base, base_info *bi, gg_err *err) {
    memset(bi, 0, sizeof *bi);
    bi->path = gg_file_path(base);
    const gg_value *kind = gg_meta_find(base, "gg.kind");
    if (kind) {
        if (kind->type != GG_V_STR)
            return gg_errf(err, "%s: metadata 'gg.kind' is %s, expected str", bi->path, gg_vtype_name(kind->type));
        if (kind->v.s.len != 5 || memcmp(kind->v.s.ptr, "model", 5) != 0)
            return gg_errf(err, "%s: gg.kind is '%.*s', expected 'model' (the base must be a model file)", bi->path,
                           (int)(kind->v.s.len > 40 ? 40 : kind->v.s.len), kind->v.s.ptr);
    }
    gg_str s;
    if (gg_meta_get_str(base, "general.architecture", &s, err)) return -1;
    if (!known_arch(s.ptr, s.len))
        return gg_errf(err, "%s: general.architecture '%.*s' is not one gg supports", bi->path,
                       (int)(s.len > 40 ? 40 : s.len), s.ptr);
    memcpy(bi->arch, s.ptr, s.len);
    bi->arch[s.len] = '\0';
    if (gg_meta_get_i64(base, "model.n_layers", &bi->n_layers, err)) return -1;
    if (bi->n_layers <= 0 || bi->n_layers > MAX_LAYERS)
        return gg_errf(err, "%s: model.n_layers %lld is out of range", bi->path, (long long)bi->n_layers);
    const gg_value *fp = gg_meta_find(base, "model.fingerprint");
    if (fp) {
        if (fp->type != GG_V_U64)
            return gg_errf(err, "%s: metadata 'model.fingerprint' is %s, expected u64", bi->path,
                           gg_vtype_name(fp->type));
        bi->has_fp = 1;
        bi->fp = fp->v.u;
    }
    return 0;
}

/* The base's linear weight for (layer, target): NULL with a message when it
 * is absent or not 2-D. */
static const gg_tensor *base_weight(const gg_file *base, int64_t layer, gg_lora_target t, const char *who,
                                    gg_err *err) {
    char wn[96];
    gg_lora_weight_name(wn, sizeof wn, layer, t);
    const gg_tensor *w = gg_tensor_find(base, wn);
    if (!w) {
        gg_errf(err, "%s: base %s has no tensor '%s' (no such layer or linear map in this model)", who,
                gg_file_path(base), wn);
        return NULL;
    }
    if (w->ndim != 2) {
        gg_errf(err, "%s: base tensor '%s' has %u dimensions, expected a 2-D linear weight", who, wn, w->ndim);
        return NULL;
    }
    return w;
}

int gg_adapter_check_base(const gg_adapter *a, const gg_file *base, gg_err *err) {
    base_info bi;
    if (base_read(base, &bi, err)) return gg_err_prefix(err, "adapter %s", a->label);
    if (strcmp(a->arch, bi.arch) != 0)
        return gg_errf(err, "adapter %s is for a %s model, but base %s is %s (architecture mismatch)", a->label,
                       a->arch, bi.path, bi.arch);
    if (a->base_fingerprint) {
        if (!bi.has_fp)
            return gg_errf(err,
                           "adapter %s was made for base fingerprint %016llx, but base %s has no "
                           "model.fingerprint to compare",
                           a->label, (unsigned long long)a->base_fingerprint, bi.path);
        if (bi.fp != a->base_fingerprint)
            return gg_errf(err,
                           "adapter %s was made for base fingerprint %016llx, but base %s has %016llx "
                           "(fingerprint mismatch: a different checkpoint)",
                           a->label, (unsigned long long)a->base_fingerprint, bi.path,
                           (unsigned long long)bi.fp);
    }
    for (size_t i = 0; i < a->n; i++) {
        const gg_adapter_tensor *t = &a->t[i];
        char mn[96], who[400], sh[64];
        gg_lora_module_name(mn, sizeof mn, t->layer, t->target);
        snprintf(who, sizeof who, "adapter %s: %s", a->label, mn);
        if (t->layer < 0 || t->layer >= bi.n_layers)
            return gg_errf(err, "%s: layer %lld is out of range (base %s has %lld layers)", who, (long long)t->layer,
                           bi.path, (long long)bi.n_layers);
        const gg_tensor *w = base_weight(base, t->layer, t->target, who, err);
        if (!w) return -1;
        if ((uint64_t)t->in != w->shape[1] || (uint64_t)t->out != w->shape[0]) {
            shape_str(sh, sizeof sh, w->ndim, w->shape);
            return gg_errf(err,
                           "%s: A is [%lld,%lld] and B is [%lld,%lld] (in %lld, out %lld), but base %s has %s %s "
                           "(shape mismatch)",
                           who, (long long)t->r, (long long)t->in, (long long)t->out, (long long)t->r,
                           (long long)t->in, (long long)t->out, bi.path, w->name, sh);
        }
    }
    return 0;
}

/* ---- small files ------------------------------------------------------------ */

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ---- adapter_config.json ---------------------------------------------------- */

typedef struct pattern {
    char *key;
    pcre2_code *re;
    double val;
} pattern;

typedef struct peft_cfg {
    const char *label; /* DIR/adapter_config.json */
    int64_t r;
    double alpha;
    int rslora;
    pattern *rank, *alph;
    size_t n_rank, n_alph;
    char version[64];
} peft_cfg;

static json_t *jget(const json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return v && !json_is_null(v) ? v : NULL;
}

static int jbool(const peft_cfg *c, const json_t *root, const char *key, int *out, gg_err *err) {
    json_t *v = jget(root, key);
    *out = 0;
    if (!v) return 0;
    if (!json_is_boolean(v)) return gg_errf(err, "%s: '%s' is %s, expected true or false", c->label, key, gg_json_kind(v));
    *out = json_is_true(v);
    return 0;
}

/* A field that must be absent, null or empty for gg to apply the adapter
 * as plain LoRA. */
static int jempty(const peft_cfg *c, const json_t *root, const char *key, const char *why, gg_err *err) {
    json_t *v = jget(root, key);
    if (!v) return 0;
    if ((json_is_array(v) && json_array_size(v) == 0) || (json_is_object(v) && json_object_size(v) == 0)) return 0;
    if (json_is_boolean(v) && !json_is_true(v)) return 0;
    return gg_errf(err, "%s: '%s' is set (%s): %s is not supported", c->label, key, gg_json_kind(v), why);
}

static void cfg_free(peft_cfg *c) {
    for (size_t i = 0; i < c->n_rank; i++) {
        free(c->rank[i].key);
        pcre2_code_free(c->rank[i].re);
    }
    for (size_t i = 0; i < c->n_alph; i++) {
        free(c->alph[i].key);
        pcre2_code_free(c->alph[i].re);
    }
    free(c->rank);
    free(c->alph);
    c->rank = c->alph = NULL;
    c->n_rank = c->n_alph = 0;
}

static int parse_patterns(peft_cfg *c, const json_t *root, const char *field, int is_rank, pattern **out, size_t *n,
                          gg_err *err) {
    json_t *o = jget(root, field);
    *out = NULL;
    *n = 0;
    if (!o) return 0;
    if (!json_is_object(o))
        return gg_errf(err, "%s: '%s' is %s, expected an object (module pattern → %s)", c->label, field, gg_json_kind(o),
                       is_rank ? "r" : "alpha");
    size_t cap = json_object_size(o);
    if (!cap) return 0;
    pattern *p = calloc(cap, sizeof *p);
    if (!p) return gg_errf(err, "out of memory");
    *out = p;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        pattern *q = &p[*n];
        if (is_rank) {
            if (!json_is_integer(v))
                return gg_errf(err, "%s: '%s'['%.100s'] is %s, expected an integer rank", c->label, field, k,
                               gg_json_kind(v));
            json_int_t r = json_integer_value(v);
            if (r <= 0 || r > MAX_RANK)
                return gg_errf(err, "%s: '%s'['%.100s'] = %lld: a rank must be in 1..%d", c->label, field, k,
                               (long long)r, MAX_RANK);
            q->val = (double)r;
        } else {
            if (!json_is_number(v))
                return gg_errf(err, "%s: '%s'['%.100s'] is %s, expected a number", c->label, field, k, gg_json_kind(v));
            q->val = json_number_value(v);
            if (!isfinite(q->val))
                return gg_errf(err, "%s: '%s'['%.100s'] is not finite", c->label, field, k);
        }
        size_t kl = strlen(k);
        char *src = malloc(kl + 32);
        if (!src || !(q->key = strdup(k))) {
            free(src);
            return gg_errf(err, "out of memory");
        }
        /* PEFT: re.match(rf"(.*\.)?({key})$", module) */
        snprintf(src, kl + 32, "^(?:.*\\.)?(?:%s)$", k);
        int ec;
        PCRE2_SIZE eo;
        q->re = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &ec, &eo, NULL);
        free(src);
        (*n)++;
        if (!q->re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return gg_errf(err, "%s: '%s' key '%.100s' is not a valid regular expression: %s", c->label, field, k,
                           (const char *)msg);
        }
    }
    return 0;
}

/* The first pattern matching module (PEFT get_pattern_key), or NULL. */
static const pattern *match_pattern(const pattern *p, size_t n, const char *module, gg_err *err, int *fail) {
    *fail = 0;
    if (!n) return NULL;
    pcre2_match_data *md = NULL;
    const pattern *hit = NULL;
    for (size_t i = 0; i < n && !hit; i++) {
        if (!md && !(md = pcre2_match_data_create_from_pattern(p[i].re, NULL))) {
            *fail = 1;
            gg_errf(err, "out of memory");
            return NULL;
        }
        int rc = pcre2_match(p[i].re, (PCRE2_SPTR)module, strlen(module), 0, 0, md, NULL);
        if (rc >= 0) hit = &p[i];
        else if (rc != PCRE2_ERROR_NOMATCH) {
            *fail = 1;
            gg_errf(err, "pattern '%.100s': regular expression matching failed (%d) on '%.200s'", p[i].key, rc,
                    module);
        }
        pcre2_match_data_free(md);
        md = NULL;
        if (*fail) return NULL;
    }
    return hit;
}

static int cfg_parse(peft_cfg *c, const char *text, size_t len, const char *arch, gg_err *err) {
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return gg_errf(err, "%s: invalid JSON at line %d, column %d: %s", c->label, je.line, je.column, je.text);
    int rc = -1, b;
    json_t *v;
    if (!json_is_object(root)) {
        gg_errf(err, "%s: the top level is %s, expected an object", c->label, gg_json_kind(root));
        goto out;
    }
    v = jget(root, "peft_type");
    if (!v) {
        gg_errf(err, "%s: missing 'peft_type' (expected \"LORA\")", c->label);
        goto out;
    }
    if (!json_is_string(v)) {
        gg_errf(err, "%s: 'peft_type' is %s, expected the string \"LORA\"", c->label, gg_json_kind(v));
        goto out;
    }
    if (strcmp(json_string_value(v), "LORA") != 0) {
        gg_errf(err, "%s: 'peft_type' is '%.60s'; only LORA adapters are supported", c->label,
                json_string_value(v));
        goto out;
    }
    v = jget(root, "r");
    if (!v) {
        gg_errf(err, "%s: missing 'r' (the LoRA rank)", c->label);
        goto out;
    }
    if (!json_is_integer(v)) {
        gg_errf(err, "%s: 'r' is %s, expected an integer", c->label, gg_json_kind(v));
        goto out;
    }
    c->r = (int64_t)json_integer_value(v);
    if (c->r <= 0 || c->r > MAX_RANK) {
        gg_errf(err, "%s: 'r' = %lld: the rank must be in 1..%d", c->label, (long long)c->r, MAX_RANK);
        goto out;
    }
    v = jget(root, "lora_alpha");
    if (!v) {
        gg_errf(err, "%s: missing 'lora_alpha'", c->label);
        goto out;
    }
    if (!json_is_number(v)) {
        gg_errf(err, "%s: 'lora_alpha' is %s, expected a number", c->label, gg_json_kind(v));
        goto out;
    }
    c->alpha = json_number_value(v);
    if (!isfinite(c->alpha)) {
        gg_errf(err, "%s: 'lora_alpha' is not finite", c->label);
        goto out;
    }
    if (jbool(c, root, "use_rslora", &c->rslora, err)) goto out;
    v = jget(root, "bias");
    if (v) {
        if (!json_is_string(v)) {
            gg_errf(err, "%s: 'bias' is %s, expected a string (\"none\")", c->label, gg_json_kind(v));
            goto out;
        }
        if (strcmp(json_string_value(v), "none") != 0) {
            gg_errf(err, "%s: 'bias' is '%.40s': adapters that train biases are not supported (need \"none\")",
                    c->label, json_string_value(v));
            goto out;
        }
    }
    if (jbool(c, root, "use_dora", &b, err)) goto out;
    if (b) {
        gg_errf(err, "%s: 'use_dora' is true: DoRA adapters are not supported (plain LoRA only)", c->label);
        goto out;
    }
    if (jbool(c, root, "fan_in_fan_out", &b, err)) goto out;
    if (b) {
        gg_errf(err,
                "%s: 'fan_in_fan_out' is true, which is for Conv1D (GPT-2 style) layers; %s models use "
                "nn.Linear (the adapter does not fit this base)",
                c->label, arch);
        goto out;
    }
    if (jbool(c, root, "lora_bias", &b, err)) goto out;
    if (b) {
        gg_errf(err, "%s: 'lora_bias' is true: a bias on lora_B is not supported", c->label);
        goto out;
    }
    if (jbool(c, root, "use_qalora", &b, err)) goto out;
    if (b) {
        gg_errf(err, "%s: 'use_qalora' is true: QALoRA adapters are not supported", c->label);
        goto out;
    }
    if (jempty(c, root, "modules_to_save", "training whole modules besides LoRA", err) ||
        jempty(c, root, "trainable_token_indices", "training token embeddings", err) ||
        jempty(c, root, "layer_replication", "layer replication", err) ||
        jempty(c, root, "alora_invocation_tokens", "activated LoRA (aLoRA)", err) ||
        jempty(c, root, "target_parameters", "LoRA on bare parameters", err))
        goto out;
    if (parse_patterns(c, root, "rank_pattern", 1, &c->rank, &c->n_rank, err) ||
        parse_patterns(c, root, "alpha_pattern", 0, &c->alph, &c->n_alph, err))
        goto out;
    v = jget(root, "peft_version");
    if (v && json_is_string(v)) snprintf(c->version, sizeof c->version, "%s", json_string_value(v));
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* ---- PEFT tensor names ------------------------------------------------------ */

enum { KIND_QKV = GG_LT_COUNT, N_KINDS };

typedef struct hf_lin {
    const char *hf;
    int kind;
} hf_lin;

static const hf_lin LLAMA_LIN[] = {
    {"self_attn.q_proj", GG_LT_Q}, {"self_attn.k_proj", GG_LT_K},   {"self_attn.v_proj", GG_LT_V},
    {"self_attn.o_proj", GG_LT_O}, {"mlp.gate_proj", GG_LT_GATE}, {"mlp.up_proj", GG_LT_UP},
    {"mlp.down_proj", GG_LT_DOWN},
};
static const hf_lin FALCON_LIN[] = {
    {"self_attention.query_key_value", KIND_QKV},
    {"self_attention.dense", GG_LT_O},
    {"mlp.dense_h_to_4h", GG_LT_UP},
    {"mlp.dense_4h_to_h", GG_LT_DOWN},
};

typedef struct slot {
    const gg_st_tensor *ab[2];
    char mod[256];
} slot;

typedef struct peft_ctx {
    const char *st_label; /* DIR/adapter_model.safetensors */
    const base_info *bi;
    int falcon;
    const hf_lin *lin;
    size_t nlin;
    const char *prefix; /* "model.layers." / "transformer.h." */
    char adapter_name[128];
    int have_name;
    slot *slots; /* [n_layers][N_KINDS] */
} peft_ctx;

/* Last occurrence of needle in hay, NULL if none. */
static const char *last_str(const char *hay, const char *needle) {
    const char *r = NULL, *p = hay;
    while ((p = strstr(p, needle))) r = p++;
    return r;
}

static int not_decoder_linear(const peft_ctx *x, const char *tname, const char *module, gg_err *err) {
    return gg_errf(err,
                   "%s: tensor '%.200s': module '%.120s' is not a linear layer of the %s decoder "
                   "(LoRA there is not supported; expected %sN.%s...)",
                   x->st_label, tname, module, x->bi->arch, x->prefix, x->falcon ? "self_attention" : "self_attn");
}

/* Map one safetensors entry to its slot. */
static int peft_place(peft_ctx *x, const gg_st_tensor *t, gg_err *err) {
    const char *name = t->name, *s = name;
    if (strncmp(s, "base_model.model.", 17) == 0) s += 17;
    if (strstr(s, "lora_embedding_A") || strstr(s, "lora_embedding_B"))
        return gg_errf(err, "%s: tensor '%.200s': LoRA on an embedding is not supported (decoder linear layers only)",
                       x->st_label, name);
    if (strstr(s, "lora_magnitude_vector"))
        return gg_errf(err, "%s: tensor '%.200s': DoRA magnitude vectors are not supported (plain LoRA only)",
                       x->st_label, name);
    const char *pa = last_str(s, ".lora_A."), *pb = last_str(s, ".lora_B."), *p;
    int is_b;
    if (pa && (!pb || pa > pb)) p = pa, is_b = 0;
    else if (pb) p = pb, is_b = 1;
    else
        return gg_errf(err,
                       "%s: unexpected tensor '%.200s' (not a lora_A / lora_B weight; modules_to_save and "
                       "trainable tokens are not supported)",
                       x->st_label, name);
    const char *tail = p + 8, *aname = "", *dot = strchr(tail, '.');
    size_t alen = 0;
    const char *leaf = dot ? dot + 1 : tail; /* "weight" / "bias" */
    if (dot) {
        aname = tail;
        alen = (size_t)(dot - tail);
    }
    if (strcmp(leaf, "bias") == 0 && (!dot || alen > 0))
        return gg_errf(err, "%s: tensor '%.200s': a bias on lora_B ('lora_bias') is not supported", x->st_label,
                       name);
    if (strcmp(leaf, "weight") != 0 || (dot && alen == 0) || strchr(leaf, '.'))
        return gg_errf(err, "%s: unexpected tensor '%.200s' (expected ...lora_%c[.ADAPTER].weight)", x->st_label,
                       name, is_b ? 'B' : 'A');
    if (alen >= sizeof x->adapter_name)
        return gg_errf(err, "%s: tensor '%.200s': adapter name too long", x->st_label, name);
    if (!x->have_name) {
        memcpy(x->adapter_name, aname, alen);
        x->adapter_name[alen] = '\0';
        x->have_name = 1;
    } else if (strlen(x->adapter_name) != alen || memcmp(x->adapter_name, aname, alen) != 0) {
        return gg_errf(err, "%s: tensor '%.200s': the file holds more than one adapter ('%s' and '%.*s'); expected one",
                       x->st_label, name, x->adapter_name[0] ? x->adapter_name : "(unnamed)", (int)alen, aname);
    }
    size_t mlen = (size_t)(p - s);
    char module[256];
    if (mlen == 0 || mlen >= sizeof module)
        return gg_errf(err, "%s: tensor '%.200s': bad module name", x->st_label, name);
    memcpy(module, s, mlen);
    module[mlen] = '\0';

    /* module → (layer, kind) */
    size_t pl = strlen(x->prefix);
    if (strncmp(module, x->prefix, pl) != 0) return not_decoder_linear(x, name, module, err);
    const char *d = module + pl;
    int64_t L = 0;
    size_t nd = 0;
    while (d[nd] >= '0' && d[nd] <= '9') {
        if (nd >= 9) return not_decoder_linear(x, name, module, err);
        L = L * 10 + (d[nd] - '0');
        nd++;
    }
    if (nd == 0 || d[nd] != '.' || (nd > 1 && d[0] == '0')) return not_decoder_linear(x, name, module, err);
    const char *rest = d + nd + 1;
    int kind = -1;
    for (size_t i = 0; i < x->nlin; i++)
        if (strcmp(rest, x->lin[i].hf) == 0) kind = x->lin[i].kind;
    if (kind < 0) return not_decoder_linear(x, name, module, err);
    if (L >= x->bi->n_layers)
        return gg_errf(err, "%s: tensor '%.200s': layer %lld is out of range (base %s has %lld layers)", x->st_label,
                       name, (long long)L, x->bi->path, (long long)x->bi->n_layers);
    if (t->type < 0)
        return gg_errf(err, "%s: tensor '%.200s' has dtype %s; LoRA weights must be F32, F16 or BF16", x->st_label,
                       name, t->dtype);
    if (t->ndim != 2)
        return gg_errf(err, "%s: tensor '%.200s' has %u dimensions, expected 2", x->st_label, name, t->ndim);
    slot *sl = &x->slots[L * N_KINDS + kind];
    if (sl->ab[is_b])
        return gg_errf(err, "%s: tensor '%.200s': a second lora_%c for module '%s' (also '%.200s')", x->st_label,
                       name, is_b ? 'B' : 'A', module, sl->ab[is_b]->name);
    sl->ab[is_b] = t;
    snprintf(sl->mod, sizeof sl->mod, "%s", module);
    return 0;
}

/* Rows [row0, row0 + nrows) of a 2-D safetensors tensor as f32. */
static void st_rows_f32(const gg_st_tensor *t, uint64_t row0, uint64_t nrows, float *dst) {
    uint64_t cols = t->shape[1], n = nrows * cols;
    const uint8_t *p = t->data;
    if (t->type == GG_TYPE_F32) {
        memcpy(dst, p + row0 * cols * 4, n * 4);
        return;
    }
    p += row0 * cols * 2;
    for (uint64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = t->type == GG_TYPE_F16 ? gg_f16_to_f32(h) : gg_bf16_to_f32(h);
    }
}

/* Fill adapter tensor o for (layer, target) from A and the rows segs of B. */
static int make_tensor(gg_adapter_tensor *o, int64_t layer, gg_lora_target tg, const gg_st_tensor *A,
                       const gg_st_tensor *B, const gg_row_seg *seg, size_t nseg, double alpha, int rslora,
                       const char *file, gg_err *err) {
    uint64_t r = A->shape[0], in = A->shape[1], out = 0;
    for (size_t k = 0; k < nseg; k++) out += seg[k].nrows;
    o->layer = layer;
    o->target = tg;
    o->r = (int64_t)r;
    o->in = (int64_t)in;
    o->out = (int64_t)out;
    o->alpha = alpha;
    o->scale = gg_lora_scale(alpha, o->r, rslora);
    o->a = malloc(r * in * sizeof(float));
    o->b = malloc(out * r * sizeof(float));
    if (!o->a || !o->b) return gg_errf(err, "out of memory");
    st_rows_f32(A, 0, r, o->a);
    float *bp = o->b;
    for (size_t k = 0; k < nseg; k++) {
        st_rows_f32(B, seg[k].row0, seg[k].nrows, bp);
        bp += seg[k].nrows * r;
    }
    if (finite_check(o->a, r * in, file, A->name, err) || finite_check(o->b, out * r, file, B->name, err)) return -1;
    return 0;
}

static int peft_build(peft_ctx *x, const peft_cfg *c, const gg_file *base, const gg_hf_config *hcfg,
                      gg_adapter *a, gg_err *err) {
    size_t nl = (size_t)x->bi->n_layers;
    for (size_t L = 0; L < nl; L++) {
        for (int kind = 0; kind < N_KINDS; kind++) {
            /* emit in target order: the fused qkv first (it yields q, k, v) */
            int kk = kind == 0 ? KIND_QKV : kind - 1;
            slot *sl = &x->slots[L * N_KINDS + kk];
            if (!sl->ab[0] && !sl->ab[1]) continue;
            const gg_st_tensor *A = sl->ab[0], *B = sl->ab[1];
            if (!A || !B)
                return gg_errf(err, "%s: module '%s' has %s but no %s", x->st_label, sl->mod,
                               A ? "lora_A" : "lora_B", A ? "lora_B" : "lora_A");
            char sa[64], sb[64];
            shape_str(sa, sizeof sa, 2, A->shape);
            shape_str(sb, sizeof sb, 2, B->shape);
            uint64_t r = A->shape[0];
            if (B->shape[1] != r)
                return gg_errf(err, "%s: module '%s': lora_A is %s (rank %llu) but lora_B is %s (expected [out,%llu])",
                               x->st_label, sl->mod, sa, (unsigned long long)r, sb, (unsigned long long)r);
            if (r == 0 || r > MAX_RANK)
                return gg_errf(err, "%s: module '%s': rank %llu is out of range", x->st_label, sl->mod,
                               (unsigned long long)r);
            int fail;
            const pattern *rp = match_pattern(c->rank, c->n_rank, sl->mod, err, &fail);
            if (fail) return gg_err_prefix(err, "%s", c->label);
            int64_t want_r = rp ? (int64_t)rp->val : c->r;
            if ((int64_t)r != want_r) {
                if (rp)
                    return gg_errf(err,
                                   "%s: module '%s': lora_A is %s (rank %llu), but adapter_config.json gives r=%lld "
                                   "(rank_pattern '%.100s')",
                                   x->st_label, sl->mod, sa, (unsigned long long)r, (long long)want_r, rp->key);
                return gg_errf(err, "%s: module '%s': lora_A is %s (rank %llu), but adapter_config.json gives r=%lld",
                               x->st_label, sl->mod, sa, (unsigned long long)r, (long long)want_r);
            }
            const pattern *ap = match_pattern(c->alph, c->n_alph, sl->mod, err, &fail);
            if (fail) return gg_err_prefix(err, "%s", c->label);
            double alpha = ap ? ap->val : c->alpha;

            if (kk == KIND_QKV) {
                const gg_tensor *w[3];
                uint64_t rows = 0;
                for (int j = 0; j < 3; j++) {
                    if (!(w[j] = base_weight(base, (int64_t)L, (gg_lora_target)(GG_LT_Q + j), x->st_label, err)))
                        return -1;
                    rows += w[j]->shape[0];
                    if (w[j]->shape[1] != A->shape[1]) {
                        char ws[64];
                        shape_str(ws, sizeof ws, 2, w[j]->shape);
                        return gg_errf(err,
                                       "%s: module '%s': lora_A is %s (in %llu), but base %s has %s %s "
                                       "(shape mismatch)",
                                       x->st_label, sl->mod, sa, (unsigned long long)A->shape[1], x->bi->path,
                                       w[j]->name, ws);
                    }
                }
                if (B->shape[0] != rows)
                    return gg_errf(err,
                                   "%s: module '%s': lora_B is %s (out %llu), but the base's q+k+v have %llu rows "
                                   "(shape mismatch)",
                                   x->st_label, sl->mod, sb, (unsigned long long)B->shape[0],
                                   (unsigned long long)rows);
                for (int j = 0; j < 3; j++) {
                    gg_row_seg *seg;
                    size_t nseg;
                    if (gg_falcon_qkv_segs(hcfg, j, &seg, &nseg, err)) return gg_err_prefix(err, "%s", x->bi->path);
                    uint64_t tot = 0;
                    int bad = 0;
                    for (size_t k = 0; k < nseg; k++) {
                        tot += seg[k].nrows;
                        if (seg[k].row0 + seg[k].nrows > B->shape[0]) bad = 1;
                    }
                    if (bad || tot != w[j]->shape[0]) {
                        free(seg);
                        return gg_errf(err,
                                       "%s: module '%s': the base's source.config_json q/k/v layout does not match "
                                       "its %s (%llu rows)",
                                       x->st_label, sl->mod, w[j]->name, (unsigned long long)w[j]->shape[0]);
                    }
                    int rc = make_tensor(&a->t[a->n++], (int64_t)L, (gg_lora_target)(GG_LT_Q + j), A, B, seg, nseg,
                                         alpha, c->rslora, x->st_label, err);
                    free(seg);
                    if (rc) return -1;
                }
                continue;
            }
            const gg_tensor *w = base_weight(base, (int64_t)L, (gg_lora_target)kk, x->st_label, err);
            if (!w) return gg_err_prefix(err, "module '%s'", sl->mod);
            if (w->shape[1] != A->shape[1] || w->shape[0] != B->shape[0]) {
                char ws[64];
                shape_str(ws, sizeof ws, 2, w->shape);
                return gg_errf(err,
                               "%s: module '%s': lora_A is %s and lora_B is %s (in %llu, out %llu), but base %s has "
                               "%s %s (shape mismatch)",
                               x->st_label, sl->mod, sa, sb, (unsigned long long)A->shape[1],
                               (unsigned long long)B->shape[0], x->bi->path, w->name, ws);
            }
            gg_row_seg whole = {0, B->shape[0]};
            if (make_tensor(&a->t[a->n++], (int64_t)L, (gg_lora_target)kk, A, B, &whole, 1, alpha, c->rslora,
                            x->st_label, err))
                return -1;
        }
    }
    return 0;
}

int gg_adapter_load_peft(gg_adapter **out, const char *dir, const gg_file *base, gg_err *err) {
    *out = NULL;
    struct stat sb;
    if (stat(dir, &sb) != 0) return gg_errf(err, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return gg_errf(err, "%s: not a directory (expected a PEFT adapter folder)", dir);
    base_info bi;
    if (base_read(base, &bi, err)) return -1;

    char cfg_path[4200], st_path[4200], bin_path[4200];
    snprintf(cfg_path, sizeof cfg_path, "%s/adapter_config.json", dir);
    snprintf(st_path, sizeof st_path, "%s/adapter_model.safetensors", dir);
    snprintf(bin_path, sizeof bin_path, "%s/adapter_model.bin", dir);

    int rc = -1;
    char *text = NULL;
    size_t len = 0;
    peft_cfg c;
    memset(&c, 0, sizeof c);
    c.label = cfg_path;
    gg_st_set *st = NULL;
    gg_adapter *a = NULL;
    peft_ctx x;
    memset(&x, 0, sizeof x);
    gg_hf_config hcfg;
    memset(&hcfg, 0, sizeof hcfg);

    if (!file_exists(cfg_path)) {
        gg_errf(err, "%s: no adapter_config.json (not a PEFT adapter folder)", dir);
        goto out;
    }
    if (gg_read_small_file(cfg_path, MAX_CONFIG_BYTES, "an adapter_config.json", &text, &len, err) ||
        cfg_parse(&c, text, len, bi.arch, err))
        goto out;
    if (!file_exists(st_path)) {
        if (file_exists(bin_path))
            gg_errf(err,
                    "%s: only adapter_model.bin (a PyTorch pickle) is present; convert to safetensors first "
                    "(PEFT: save_pretrained(..., safe_serialization=True))",
                    dir);
        else gg_errf(err, "%s: no adapter_model.safetensors", dir);
        goto out;
    }
    if (gg_st_open_file(&st, st_path, err)) goto out;

    x.st_label = st_path;
    x.bi = &bi;
    x.falcon = strcmp(bi.arch, "falcon") == 0;
    x.lin = x.falcon ? FALCON_LIN : LLAMA_LIN;
    x.nlin = x.falcon ? sizeof FALCON_LIN / sizeof *FALCON_LIN : sizeof LLAMA_LIN / sizeof *LLAMA_LIN;
    x.prefix = x.falcon ? "transformer.h." : "model.layers.";
    if (x.falcon) {
        gg_str cj;
        char lbl[600];
        if (gg_meta_get_str(base, "source.config_json", &cj, err)) {
            gg_err_prefix(err, "falcon adapters need the base's config (to split query_key_value)");
            goto out;
        }
        snprintf(lbl, sizeof lbl, "%s: source.config_json", bi.path);
        if (gg_hf_config_parse(&hcfg, cj.ptr, (size_t)cj.len, lbl, err)) goto out;
        if (strcmp(hcfg.arch, bi.arch) != 0) {
            gg_errf(err, "%s: source.config_json is for %s, but general.architecture is %s", bi.path, hcfg.arch,
                    bi.arch);
            goto out;
        }
    }
    size_t nst = gg_st_count(st);
    if (nst == 0) {
        gg_errf(err, "%s: no tensors", st_path);
        goto out;
    }
    x.slots = calloc((size_t)bi.n_layers * N_KINDS, sizeof *x.slots);
    if (!x.slots) {
        gg_errf(err, "out of memory");
        goto out;
    }
    size_t nmod = 0;
    for (size_t i = 0; i < nst; i++) {
        const gg_st_tensor *t = gg_st_at(st, i);
        if (peft_place(&x, t, err)) goto out;
    }
    for (size_t i = 0; i < (size_t)bi.n_layers * N_KINDS; i++)
        if (x.slots[i].ab[0] || x.slots[i].ab[1]) nmod += (i % N_KINDS) == KIND_QKV ? 3 : 1;
    if (!(a = adapter_new(nmod, dir))) {
        gg_errf(err, "out of memory");
        goto out;
    }
    snprintf(a->arch, sizeof a->arch, "%s", bi.arch);
    a->r = c.r;
    a->alpha = c.alpha;
    a->rslora = c.rslora;
    a->base_fingerprint = bi.has_fp ? bi.fp : 0;
    {
        char *dcopy = strdup(dir);
        if (!dcopy) {
            gg_errf(err, "out of memory");
            goto out;
        }
        size_t n = strlen(dcopy);
        while (n > 1 && dcopy[n - 1] == '/') dcopy[--n] = 0;
        const char *bn = strrchr(dcopy, '/');
        bn = bn && bn[1] ? bn + 1 : dcopy;
        snprintf(a->source, sizeof a->source, "peft %s adapter '%.120s'", c.version[0] ? c.version : "(unknown version)",
                 bn);
        free(dcopy);
    }
    if (peft_build(&x, &c, base, &hcfg, a, err)) goto out;
    if (gg_adapter_check_base(a, base, err)) goto out;
    *out = a;
    a = NULL;
    rc = 0;
out:
    gg_adapter_free(a);
    free(x.slots);
    if (st) gg_st_close(st);
    cfg_free(&c);
    free(text);
    return rc;
}

/* ---- .gg adapter files ------------------------------------------------------ */

typedef struct gg_ent {
    int64_t layer;
    gg_lora_target target;
    int is_b;
    const gg_tensor *t;
} gg_ent;

static int ent_cmp(const void *pa, const void *pb) {
    const gg_ent *a = pa, *b = pb;
    if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
    if (a->target != b->target) return a->target < b->target ? -1 : 1;
    return a->is_b - b->is_b;
}

int gg_adapter_load_gg(gg_adapter **out, const char *path, gg_err *err) {
    *out = NULL;
    gg_file *f = NULL;
    gg_adapter *a = NULL;
    gg_ent *ents = NULL;
    int rc = -1;
    if (gg_file_open(&f, path, 0, err)) return -1;

    gg_str s;
    if (gg_meta_get_str(f, "gg.kind", &s, err)) {
        gg_err_prefix(err, "not a gg adapter");
        goto out;
    }
    if (s.len != 7 || memcmp(s.ptr, "adapter", 7) != 0) {
        gg_errf(err, "%s: gg.kind is '%.*s', expected 'adapter'%s", path, (int)(s.len > 40 ? 40 : s.len), s.ptr,
                s.len == 5 && memcmp(s.ptr, "model", 5) == 0 ? " (this is a model file, not an adapter)" : "");
        goto out;
    }
    size_t nt = gg_tensor_count(f);
    if (!(a = adapter_new(nt / 2 + 1, path)) || !(ents = calloc(nt ? nt : 1, sizeof *ents))) {
        gg_errf(err, "out of memory");
        goto out;
    }
    if (gg_meta_get_str(f, "general.architecture", &s, err)) goto out;
    if (!known_arch(s.ptr, s.len)) {
        gg_errf(err, "%s: general.architecture '%.*s' is not one gg supports", path, (int)(s.len > 40 ? 40 : s.len),
                s.ptr);
        goto out;
    }
    memcpy(a->arch, s.ptr, s.len);
    a->arch[s.len] = '\0';
    if (gg_meta_get_i64(f, "adapter.r", &a->r, err) || gg_meta_get_f64(f, "adapter.alpha", &a->alpha, err) ||
        gg_meta_get_bool(f, "adapter.rslora", &a->rslora, err) ||
        gg_meta_get_u64(f, "adapter.base_fingerprint", &a->base_fingerprint, err))
        goto out;
    if (a->r <= 0 || a->r > MAX_RANK) {
        gg_errf(err, "%s: adapter.r = %lld: the rank must be in 1..%d", path, (long long)a->r, MAX_RANK);
        goto out;
    }
    if (!isfinite(a->alpha)) {
        gg_errf(err, "%s: adapter.alpha is not finite (%g)", path, a->alpha);
        goto out;
    }
    const gg_value *src = gg_meta_find(f, "adapter.source");
    if (src) {
        if (src->type != GG_V_STR) {
            gg_errf(err, "%s: metadata 'adapter.source' is %s, expected str", path, gg_vtype_name(src->type));
            goto out;
        }
        size_t n = src->v.s.len < sizeof a->source - 1 ? (size_t)src->v.s.len : sizeof a->source - 1;
        memcpy(a->source, src->v.s.ptr, n);
        a->source[n] = '\0';
    }
    const gg_value *tv = gg_meta_find(f, "adapter.targets");
    if (!tv) {
        gg_errf(err, "%s: metadata 'adapter.targets' is missing", path);
        goto out;
    }
    if (tv->type != GG_V_ARR || tv->elem != GG_V_STR) {
        gg_errf(err, "%s: metadata 'adapter.targets' is %s, expected an array of str", path,
                tv->type == GG_V_ARR ? "an array of another type" : gg_vtype_name(tv->type));
        goto out;
    }
    unsigned listed = 0;
    for (uint64_t i = 0; i < tv->count; i++) {
        char nm[16];
        gg_lora_target tg;
        const gg_str *e = &tv->strs[i];
        if (e->len >= sizeof nm || memchr(e->ptr, 0, e->len)) {
            gg_errf(err, "%s: adapter.targets[%llu] is not a target name", path, (unsigned long long)i);
            goto out;
        }
        memcpy(nm, e->ptr, e->len);
        nm[e->len] = '\0';
        if (gg_lora_target_from_name(nm, &tg)) {
            gg_errf(err, "%s: adapter.targets[%llu] = '%s' is not a target (q k v o gate up down)", path,
                    (unsigned long long)i, nm);
            goto out;
        }
        if (listed & (1u << tg)) {
            gg_errf(err, "%s: adapter.targets lists '%s' twice", path, nm);
            goto out;
        }
        listed |= 1u << tg;
    }

    /* tensors */
    for (size_t i = 0; i < nt; i++) {
        const gg_tensor *t = gg_tensor_at(f, i);
        gg_ent *e = &ents[i];
        const char *end;
        if (parse_module(t->name, &e->layer, &e->target, &end) ||
            (strcmp(end, ".lora_a") != 0 && strcmp(end, ".lora_b") != 0)) {
            gg_errf(err, "%s: unexpected tensor '%.200s' (expected layers.N.{attn.{q,k,v,o},mlp.{gate,up,down}}.lora_{a,b})",
                    path, t->name);
            goto out;
        }
        e->is_b = end[6] == 'b';
        e->t = t;
        if (t->type != GG_TYPE_F32) {
            gg_errf(err, "%s: tensor '%s' is %s, expected f32", path, t->name, gg_type_name(t->type));
            goto out;
        }
        if (t->ndim != 2) {
            gg_errf(err, "%s: tensor '%s' has %u dimensions, expected 2", path, t->name, t->ndim);
            goto out;
        }
        if (t->shape[0] > MAX_DIM || t->shape[1] > MAX_DIM) {
            gg_errf(err, "%s: tensor '%s' is too large", path, t->name);
            goto out;
        }
    }
    if (nt == 0) {
        gg_errf(err, "%s: no LoRA tensors", path);
        goto out;
    }
    qsort(ents, nt, sizeof *ents, ent_cmp);
    for (size_t i = 0; i < nt;) {
        gg_ent *e = &ents[i];
        char mn[96];
        gg_lora_module_name(mn, sizeof mn, e->layer, e->target);
        if (e->is_b || i + 1 >= nt || ents[i + 1].layer != e->layer || ents[i + 1].target != e->target) {
            gg_errf(err, "%s: tensor '%s.%s' is missing (every module needs lora_a and lora_b)", path, mn,
                    e->is_b ? "lora_a" : "lora_b");
            goto out;
        }
        const gg_tensor *A = e->t, *B = ents[i + 1].t;
        char sa[64], sb[64];
        shape_str(sa, sizeof sa, 2, A->shape);
        shape_str(sb, sizeof sb, 2, B->shape);
        if (A->shape[0] > MAX_RANK) {
            gg_errf(err, "%s: tensor '%s' is %s: rank %llu is out of range (at most %d)", path, A->name, sa,
                    (unsigned long long)A->shape[0], MAX_RANK);
            goto out;
        }
        if (B->shape[1] != A->shape[0]) {
            gg_errf(err, "%s: tensor '%s' is %s but '%s' is %s (expected [out,%llu])", path, A->name, sa, B->name, sb,
                    (unsigned long long)A->shape[0]);
            goto out;
        }
        if (gg_tensor_verify(A, err) || gg_tensor_verify(B, err)) goto out;
        gg_adapter_tensor *o = &a->t[a->n++];
        o->layer = e->layer;
        o->target = e->target;
        o->r = (int64_t)A->shape[0];
        o->in = (int64_t)A->shape[1];
        o->out = (int64_t)B->shape[0];
        o->alpha = a->alpha;
        if (!(o->a = malloc(A->size)) || !(o->b = malloc(B->size))) {
            gg_errf(err, "out of memory");
            goto out;
        }
        memcpy(o->a, A->data, A->size);
        memcpy(o->b, B->data, B->size);
        if (finite_check(o->a, A->shape[0] * A->shape[1], path, A->name, err) ||
            finite_check(o->b, B->shape[0] * B->shape[1], path, B->name, err))
            goto out;
        i += 2;
    }
    unsigned present = gg_adapter_target_mask(a);
    if (present != listed) {
        char have[64] = "", said[64] = "";
        for (int i = 0; i < GG_LT_COUNT; i++) {
            if (present & (1u << i)) snprintf(have + strlen(have), sizeof have - strlen(have), " %s", TARGET_NAME[i]);
            if (listed & (1u << i)) snprintf(said + strlen(said), sizeof said - strlen(said), " %s", TARGET_NAME[i]);
        }
        gg_errf(err, "%s: adapter.targets lists [%s ] but the tensors adapt [%s ]", path, said, have);
        goto out;
    }
    /* per-module alphas: adapter.alpha.layers.N.attn.q */
    for (size_t i = 0; i < gg_meta_count(f); i++) {
        const gg_meta *m = gg_meta_at(f, i);
        if (strncmp(m->key, "adapter.alpha.", 14) != 0) continue;
        int64_t L;
        gg_lora_target tg;
        const char *end;
        if (parse_module(m->key + 14, &L, &tg, &end) || *end) {
            gg_errf(err, "%s: metadata '%.200s': expected adapter.alpha.layers.N.{attn.{q,k,v,o},mlp.{gate,up,down}}",
                    path, m->key);
            goto out;
        }
        gg_adapter_tensor *hit = NULL;
        for (size_t k = 0; k < a->n; k++)
            if (a->t[k].layer == L && a->t[k].target == tg) hit = &a->t[k];
        if (!hit) {
            gg_errf(err, "%s: metadata '%s' names a module the adapter has no tensors for", path, m->key);
            goto out;
        }
        if (m->val.type != GG_V_F64) {
            gg_errf(err, "%s: metadata '%s' is %s, expected f64", path, m->key, gg_vtype_name(m->val.type));
            goto out;
        }
        if (!isfinite(m->val.v.f)) {
            gg_errf(err, "%s: metadata '%s' is not finite", path, m->key);
            goto out;
        }
        hit->alpha = m->val.v.f;
    }
    for (size_t k = 0; k < a->n; k++) a->t[k].scale = gg_lora_scale(a->t[k].alpha, a->t[k].r, a->rslora);
    *out = a;
    a = NULL;
    rc = 0;
out:
    gg_adapter_free(a);
    free(ents);
    gg_file_close(f);
    return rc;
}

static int adapter_validate(const gg_adapter *a, gg_err *err) {
    if (!a->arch[0] || !known_arch(a->arch, strlen(a->arch)))
        return gg_errf(err, "adapter %s: architecture '%s' is not one gg supports", a->label, a->arch);
    if (a->r <= 0 || a->r > MAX_RANK)
        return gg_errf(err, "adapter %s: r = %lld is out of range", a->label, (long long)a->r);
    if (!isfinite(a->alpha)) return gg_errf(err, "adapter %s: alpha is not finite", a->label);
    if (a->n == 0) return gg_errf(err, "adapter %s: no LoRA modules", a->label);
    for (size_t i = 0; i < a->n; i++) {
        const gg_adapter_tensor *t = &a->t[i];
        char mn[96];
        if ((unsigned)t->target >= GG_LT_COUNT || t->layer < 0 || t->layer >= MAX_LAYERS)
            return gg_errf(err, "adapter %s: module %zu has an invalid layer/target", a->label, i);
        gg_lora_module_name(mn, sizeof mn, t->layer, t->target);
        if (t->r <= 0 || t->r > MAX_RANK || t->in <= 0 || t->in > MAX_DIM || t->out <= 0 || t->out > MAX_DIM)
            return gg_errf(err, "adapter %s: %s: invalid shape (r %lld, in %lld, out %lld)", a->label, mn,
                           (long long)t->r, (long long)t->in, (long long)t->out);
        if (!t->a || !t->b) return gg_errf(err, "adapter %s: %s: A or B is missing", a->label, mn);
        if (!isfinite(t->alpha)) return gg_errf(err, "adapter %s: %s: alpha is not finite", a->label, mn);
        if (i > 0) {
            const gg_adapter_tensor *p = &a->t[i - 1];
            if (p->layer > t->layer || (p->layer == t->layer && p->target >= t->target))
                return gg_errf(err, "adapter %s: %s: modules are not sorted by (layer, target) or repeat", a->label,
                               mn);
        }
        char what[120];
        snprintf(what, sizeof what, "%s.lora_a", mn);
        if (finite_check(t->a, (uint64_t)t->r * (uint64_t)t->in, a->label, what, err)) return -1;
        snprintf(what, sizeof what, "%s.lora_b", mn);
        if (finite_check(t->b, (uint64_t)t->out * (uint64_t)t->r, a->label, what, err)) return -1;
    }
    return 0;
}

int gg_adapter_save_gg(const gg_adapter *a, const char *path, gg_err *err) {
    if (adapter_validate(a, err)) return -1;
    gg_writer *w = gg_writer_new();
    if (!w) return gg_errf(err, "out of memory");
    int rc = -1;
    size_t *idx = calloc(2 * a->n, sizeof *idx);
    if (!idx) {
        gg_errf(err, "out of memory");
        goto out;
    }
    const char *targets[GG_LT_COUNT];
    size_t nt = 0;
    unsigned mask = gg_adapter_target_mask(a);
    for (int i = 0; i < GG_LT_COUNT; i++)
        if (mask & (1u << i)) targets[nt++] = TARGET_NAME[i];
    if (gg_writer_set_str(w, "gg.kind", "adapter", 7, err) ||
        gg_writer_set_str(w, "general.architecture", a->arch, strlen(a->arch), err) ||
        gg_writer_set_i64(w, "adapter.r", a->r, err) || gg_writer_set_f64(w, "adapter.alpha", a->alpha, err) ||
        gg_writer_set_bool(w, "adapter.rslora", a->rslora ? 1 : 0, err) ||
        gg_writer_set_u64(w, "adapter.base_fingerprint", a->base_fingerprint, err) ||
        gg_writer_set_arr_str(w, "adapter.targets", targets, NULL, nt, err) ||
        gg_writer_set_str(w, "adapter.source", a->source, strlen(a->source), err))
        goto out;
    for (size_t i = 0; i < a->n; i++) {
        const gg_adapter_tensor *t = &a->t[i];
        char mn[96], key[128];
        gg_lora_module_name(mn, sizeof mn, t->layer, t->target);
        if (t->alpha != a->alpha) {
            snprintf(key, sizeof key, "adapter.alpha.%s", mn);
            if (gg_writer_set_f64(w, key, t->alpha, err)) goto out;
        }
    }
    for (size_t i = 0; i < a->n; i++) {
        const gg_adapter_tensor *t = &a->t[i];
        char mn[96], nm[128];
        gg_lora_module_name(mn, sizeof mn, t->layer, t->target);
        uint64_t sa[2] = {(uint64_t)t->r, (uint64_t)t->in}, sb[2] = {(uint64_t)t->out, (uint64_t)t->r};
        snprintf(nm, sizeof nm, "%s.lora_a", mn);
        if (gg_writer_add_tensor(w, nm, GG_TYPE_F32, 2, sa, &idx[2 * i], err)) goto out;
        snprintf(nm, sizeof nm, "%s.lora_b", mn);
        if (gg_writer_add_tensor(w, nm, GG_TYPE_F32, 2, sb, &idx[2 * i + 1], err)) goto out;
    }
    if (gg_writer_begin(w, path, 0, err)) goto out;
    for (size_t i = 0; i < a->n; i++) {
        const gg_adapter_tensor *t = &a->t[i];
        if (gg_writer_write(w, idx[2 * i], t->a, (size_t)t->r * (size_t)t->in * sizeof(float), err) ||
            gg_writer_write(w, idx[2 * i + 1], t->b, (size_t)t->out * (size_t)t->r * sizeof(float), err))
            goto out;
    }
    if (gg_writer_finish(w, err)) goto out;
    rc = 0;
out:
    gg_writer_free(w);
    free(idx);
    return rc;
}

/* ---- PEFT export ------------------------------------------------------------ */

/* One PEFT module to write: A [r, in], B [out, r] (borrowed from the adapter
 * or owned when fused). */
typedef struct pmod {
    char module[128]; /* "model.layers.3.self_attn.q_proj" */
    const char *hf;   /* "self_attn.q_proj" (the table entry) */
    int64_t layer;
    int64_t r, in, out;
    double alpha;
    const float *a, *b;
    float *own_a, *own_b;
} pmod;

static const char *hf_short(const char *hf) {
    const char *d = strrchr(hf, '.');
    return d ? d + 1 : hf;
}

static const char *lin_name(int falcon, int kind) {
    const hf_lin *lin = falcon ? FALCON_LIN : LLAMA_LIN;
    size_t n = falcon ? sizeof FALCON_LIN / sizeof *FALCON_LIN : sizeof LLAMA_LIN / sizeof *LLAMA_LIN;
    for (size_t i = 0; i < n; i++)
        if (lin[i].kind == kind) return lin[i].hf;
    return NULL;
}

static void pmod_set(pmod *m, int falcon, int64_t layer, const char *hf) {
    snprintf(m->module, sizeof m->module, "%s%lld.%s", falcon ? "transformer.h." : "model.layers.", (long long)layer,
             hf);
    m->hf = hf;
    m->layer = layer;
}

/* mkdir -p */
static int make_dirs(const char *dir, gg_err *err) {
    size_t n = strlen(dir);
    char *p = malloc(n + 1);
    if (!p) return gg_errf(err, "%s: out of memory", dir);
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        struct stat sb;
        if (stat(p, &sb) != 0) {
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                gg_errf(err, "%s: cannot create: %s", p, strerror(errno));
                free(p);
                return -1;
            }
        } else if (!S_ISDIR(sb.st_mode)) {
            gg_errf(err, "%s: exists and is not a directory", p);
            free(p);
            return -1;
        }
        p[i] = c;
    }
    free(p);
    return 0;
}

/* Falcon: the q, k, v modules of one layer (any may be NULL) → one fused
 * query_key_value module m, rows placed with the converter's segments. */
static int fuse_qkv(pmod *m, const gg_adapter *a, const gg_adapter_tensor *const part[3], const gg_hf_config *hcfg,
                    gg_err *err) {
    gg_row_seg *seg[3] = {NULL, NULL, NULL};
    size_t nseg[3] = {0, 0, 0};
    int rc = -1;
    const gg_adapter_tensor *first = NULL;
    for (int j = 0; j < 3; j++)
        if (part[j] && !first) first = part[j];
    char mn[96];
    gg_lora_module_name(mn, sizeof mn, first->layer, first->target);
    uint64_t rows = 0;
    for (int j = 0; j < 3; j++) {
        if (gg_falcon_qkv_segs(hcfg, j, &seg[j], &nseg[j], err)) {
            gg_err_prefix(err, "adapter %s: %s", a->label, mn);
            goto out;
        }
        uint64_t tot = 0;
        for (size_t k = 0; k < nseg[j]; k++) tot += seg[j][k].nrows;
        if (part[j] && tot != (uint64_t)part[j]->out) {
            gg_lora_module_name(mn, sizeof mn, part[j]->layer, part[j]->target);
            gg_errf(err, "adapter %s: %s: out %lld, but the base's config gives %llu rows for it in query_key_value",
                    a->label, mn, (long long)part[j]->out, (unsigned long long)tot);
            goto out;
        }
        rows += tot;
    }
    for (int j = 0; j < 3; j++)
        for (size_t k = 0; k < nseg[j]; k++)
            if (seg[j][k].row0 + seg[j][k].nrows > rows) {
                gg_errf(err, "adapter %s: %s: the base's query_key_value layout is inconsistent", a->label, mn);
                goto out;
            }
    int64_t in = first->in;
    int shared = part[0] && part[1] && part[2];
    for (int j = 0; j < 3; j++) {
        if (!part[j]) continue;
        if (part[j]->in != in) {
            gg_errf(err, "adapter %s: %s: q, k, v have different inputs (%lld and %lld)", a->label, mn, (long long)in,
                    (long long)part[j]->in);
            goto out;
        }
        if (shared && (part[j]->r != first->r || part[j]->alpha != first->alpha ||
                       memcmp(part[j]->a, first->a, (size_t)(first->r * in) * sizeof(float))))
            shared = 0;
    }
    int64_t R = 0;
    float s0 = gg_lora_scale(first->alpha, first->r, a->rslora);
    for (int j = 0; j < 3; j++) {
        if (!part[j]) continue;
        float s = gg_lora_scale(part[j]->alpha, part[j]->r, a->rslora);
        if (!shared && s != s0) {
            char m2[96];
            gg_lora_module_name(m2, sizeof m2, part[j]->layer, part[j]->target);
            gg_errf(err,
                    "adapter %s: %s has scale %g but %s has %g: PEFT's fused query_key_value has one scale, so "
                    "q, k, v of a layer must share it",
                    a->label, m2, (double)s, mn, (double)s0);
            goto out;
        }
        R += part[j]->r;
    }
    if (shared) R = first->r;
    m->r = R;
    m->in = in;
    m->out = (int64_t)rows;
    m->alpha = shared ? first->alpha
                      : (a->rslora ? first->alpha * sqrt((double)R / (double)first->r)
                                   : first->alpha * (double)R / (double)first->r);
    if (!(m->own_a = malloc((size_t)(R * in) * sizeof(float))) ||
        !(m->own_b = calloc((size_t)rows * (size_t)R, sizeof(float)))) {
        gg_errf(err, "out of memory");
        goto out;
    }
    int64_t col = 0;
    for (int j = 0; j < 3; j++) {
        const gg_adapter_tensor *t = part[j];
        if (!t) continue;
        if (!shared || j == 0) memcpy(m->own_a + col * in, t->a, (size_t)(t->r * in) * sizeof(float));
        uint64_t src = 0;
        for (size_t k = 0; k < nseg[j]; k++)
            for (uint64_t row = 0; row < seg[j][k].nrows; row++, src++)
                memcpy(m->own_b + (seg[j][k].row0 + row) * (uint64_t)R + (uint64_t)col, t->b + src * (uint64_t)t->r,
                       (size_t)t->r * sizeof(float));
        if (!shared) col += t->r;
    }
    m->a = m->own_a;
    m->b = m->own_b;
    rc = 0;
out:
    for (int j = 0; j < 3; j++) free(seg[j]);
    return rc;
}

static json_t *jnum(double v) {
    if (v == floor(v) && fabs(v) < 9007199254740992.0) return json_integer((json_int_t)v);
    return json_real(v);
}

/* rank_pattern / alpha_pattern: per short name when all its modules agree,
 * else per full module name; only entries that differ from the global. */
static int put_patterns(json_t *rank, json_t *alph, const gg_adapter *a, const pmod *m, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int seen = 0, same_r = 1, same_a = 1, any_r = 0, any_a = 0;
        for (size_t k = 0; k < i && !seen; k++) seen = m[k].hf == m[i].hf;
        if (seen) continue;
        for (size_t k = i; k < n; k++) {
            if (m[k].hf != m[i].hf) continue;
            same_r &= m[k].r == m[i].r;
            same_a &= m[k].alpha == m[i].alpha;
            any_r |= m[k].r != a->r;
            any_a |= m[k].alpha != a->alpha;
        }
        const char *sn = hf_short(m[i].hf);
        if (any_r && same_r && json_object_set_new(rank, sn, json_integer((json_int_t)m[i].r))) return -1;
        if (any_a && same_a && json_object_set_new(alph, sn, jnum(m[i].alpha))) return -1;
        for (size_t k = i; k < n; k++) {
            if (m[k].hf != m[i].hf) continue;
            if (any_r && !same_r && m[k].r != a->r &&
                json_object_set_new(rank, m[k].module, json_integer((json_int_t)m[k].r)))
                return -1;
            if (any_a && !same_a && m[k].alpha != a->alpha && json_object_set_new(alph, m[k].module, jnum(m[k].alpha)))
                return -1;
        }
    }
    return 0;
}

/* target_modules: the short names when each one present is adapted in all
 * n_layers layers (modules are unique per (layer, name), so counts say it
 * all), else the full module names. */
static json_t *target_modules(const pmod *m, size_t n, int64_t n_layers, int falcon) {
    const hf_lin *lin = falcon ? FALCON_LIN : LLAMA_LIN;
    size_t nlin = falcon ? sizeof FALCON_LIN / sizeof *FALCON_LIN : sizeof LLAMA_LIN / sizeof *LLAMA_LIN;
    int64_t max_layer = -1;
    for (size_t i = 0; i < n; i++)
        if (m[i].layer > max_layer) max_layer = m[i].layer;
    if (n_layers <= 0) n_layers = max_layer + 1;
    int full = 1;
    for (size_t j = 0; j < nlin; j++) {
        int64_t cnt = 0;
        for (size_t i = 0; i < n; i++) cnt += m[i].hf == lin[j].hf;
        if (cnt && cnt != n_layers) full = 0;
    }
    json_t *arr = json_array();
    if (!arr) return NULL;
    for (size_t j = 0; full && j < nlin; j++) {
        int present = 0;
        for (size_t i = 0; i < n && !present; i++) present = m[i].hf == lin[j].hf;
        if (present && json_array_append_new(arr, json_string(hf_short(lin[j].hf)))) goto fail;
    }
    for (size_t i = 0; !full && i < n; i++)
        if (json_array_append_new(arr, json_string(m[i].module))) goto fail;
    return arr;
fail:
    json_decref(arr);
    return NULL;
}

static int save_peft_files(const gg_adapter *a, const char *dir, const char *base_model_name, const gg_file *base,
                           gg_err *err);

/* The files go into a stage folder first: DIR changes only once all are
 * written (convert/safetensors.h gg_dir_stage). */
int gg_adapter_save_peft_base(const gg_adapter *a, const char *dir, const char *base_model_name, const gg_file *base,
                              gg_err *err) {
    if (adapter_validate(a, err)) return -1;
    char stage[4096];
    if (gg_dir_stage(dir, stage, sizeof stage, err)) return -1;
    if (save_peft_files(a, stage, base_model_name, base, err)) {
        gg_dir_abort(stage);
        return -1;
    }
    return gg_dir_commit(stage, dir, err);
}

static int save_peft_files(const gg_adapter *a, const char *dir, const char *base_model_name, const gg_file *base,
                           gg_err *err) {
    int falcon = strcmp(a->arch, "falcon") == 0;
    for (size_t i = 0; falcon && i < a->n; i++)
        if (a->t[i].target == GG_LT_GATE) {
            char mn[96];
            gg_lora_module_name(mn, sizeof mn, a->t[i].layer, a->t[i].target);
            return gg_errf(err, "adapter %s: %s: falcon has no gate projection (no PEFT module to export it to)",
                           a->label, mn);
        }
    if (base && gg_adapter_check_base(a, base, err)) return -1;
    if (base_model_name && gg_utf8_invalid_at(base_model_name, strlen(base_model_name)) != (size_t)-1)
        return gg_errf(err, "adapter %s: the base model name is not valid UTF-8", a->label);
    int64_t n_layers = 0;
    base_info bi;
    gg_hf_config hcfg;
    memset(&hcfg, 0, sizeof hcfg);
    if (base) {
        if (base_read(base, &bi, err)) return -1;
        n_layers = bi.n_layers;
    }
    pmod *m = calloc(a->n, sizeof *m);
    gg_st_wtensor *wt = calloc(2 * a->n, sizeof *wt);
    char(*names)[160] = calloc(2 * a->n, sizeof *names);
    json_t *cfg = NULL;
    char *text = NULL, *path = NULL;
    int rc = -1;
    size_t nm = 0;
    if (!m || !wt || !names) {
        gg_errf(err, "out of memory");
        goto out;
    }
    int have_hcfg = 0;
    for (size_t i = 0; i < a->n;) {
        const gg_adapter_tensor *t = &a->t[i];
        char mn[96];
        gg_lora_module_name(mn, sizeof mn, t->layer, t->target);
        if (falcon && t->target <= GG_LT_V) {
            if (!base) {
                gg_errf(err,
                        "adapter %s: %s: PEFT adapts falcon's fused query_key_value, whose row layout comes from "
                        "the base model's config; export falcon q/k/v adapters with gg_adapter_save_peft_base and "
                        "the base",
                        a->label, mn);
                goto out;
            }
            if (!have_hcfg) {
                gg_str cj;
                char lbl[600];
                if (gg_meta_get_str(base, "source.config_json", &cj, err)) {
                    gg_err_prefix(err, "falcon export needs the base's config (to fuse q, k, v)");
                    goto out;
                }
                snprintf(lbl, sizeof lbl, "%s: source.config_json", bi.path);
                if (gg_hf_config_parse(&hcfg, cj.ptr, (size_t)cj.len, lbl, err)) goto out;
                have_hcfg = 1;
            }
            const gg_adapter_tensor *part[3] = {NULL, NULL, NULL};
            int64_t L = t->layer;
            while (i < a->n && a->t[i].layer == L && a->t[i].target <= GG_LT_V) {
                part[a->t[i].target - GG_LT_Q] = &a->t[i];
                i++;
            }
            pmod_set(&m[nm], 1, L, lin_name(1, KIND_QKV));
            if (fuse_qkv(&m[nm++], a, part, &hcfg, err)) goto out;
            continue;
        }
        pmod *p = &m[nm++];
        pmod_set(p, falcon, t->layer, lin_name(falcon, t->target));
        p->r = t->r;
        p->in = t->in;
        p->out = t->out;
        p->alpha = t->alpha;
        p->a = t->a;
        p->b = t->b;
        i++;
    }

    /* adapter_model.safetensors */
    for (size_t i = 0; i < nm; i++) {
        for (int ab = 0; ab < 2; ab++) {
            gg_st_wtensor *w = &wt[2 * i + (size_t)ab];
            snprintf(names[2 * i + (size_t)ab], sizeof *names, "base_model.model.%s.lora_%c.weight", m[i].module,
                     ab ? 'B' : 'A');
            w->name = names[2 * i + (size_t)ab];
            w->dtype = "F32";
            w->ndim = 2;
            w->shape[0] = (uint64_t)(ab ? m[i].out : m[i].r);
            w->shape[1] = (uint64_t)(ab ? m[i].r : m[i].in);
            w->data = ab ? (const void *)m[i].b : (const void *)m[i].a;
        }
    }
    if (make_dirs(dir, err)) goto out;
    if (asprintf(&path, "%s/adapter_model.safetensors", dir) < 0) {
        path = NULL;
        gg_errf(err, "out of memory");
        goto out;
    }
    static const char *const META[] = {"format", "pt"};
    if (gg_st_write(path, wt, 2 * nm, META, 1, err)) goto out;

    /* adapter_config.json (jansson's *_set_new steal the value even on failure) */
    json_t *rank = json_object(), *alph = json_object();
    cfg = json_object();
    int bad = !rank || !alph || !cfg;
    if (bad) {
        json_decref(rank);
        json_decref(alph);
    } else {
        bad = put_patterns(rank, alph, a, m, nm);
        bad = json_object_set_new(cfg, "rank_pattern", rank) | bad;
        bad = json_object_set_new(cfg, "alpha_pattern", alph) | bad;
    }
    bad = bad || json_object_set_new(cfg, "target_modules", target_modules(m, nm, n_layers, falcon)) ||
          json_object_set_new(cfg, "peft_type", json_string("LORA")) ||
          json_object_set_new(cfg, "task_type", json_string("CAUSAL_LM")) ||
          json_object_set_new(cfg, "r", json_integer((json_int_t)a->r)) ||
          json_object_set_new(cfg, "lora_alpha", jnum(a->alpha)) ||
          json_object_set_new(cfg, "lora_dropout", json_real(0.0)) ||
          json_object_set_new(cfg, "use_rslora", json_boolean(a->rslora)) ||
          json_object_set_new(cfg, "bias", json_string("none")) ||
          json_object_set_new(cfg, "fan_in_fan_out", json_false()) ||
          json_object_set_new(cfg, "init_lora_weights", json_true()) ||
          json_object_set_new(cfg, "inference_mode", json_true()) ||
          json_object_set_new(cfg, "modules_to_save", json_null()) ||
          json_object_set_new(cfg, "layers_to_transform", json_null()) ||
          json_object_set_new(cfg, "layers_pattern", json_null()) ||
          json_object_set_new(cfg, "base_model_name_or_path",
                              base_model_name ? json_string(base_model_name) : json_null());
    if (bad || !(text = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS))) {
        gg_errf(err, "adapter %s: out of memory", a->label);
        goto out;
    }
    free(path);
    if (asprintf(&path, "%s/adapter_config.json", dir) < 0) {
        path = NULL;
        gg_errf(err, "out of memory");
        goto out;
    }
    {
        size_t tl = strlen(text);
        text[tl] = '\n'; /* json_dumps' NUL becomes the final newline */
        const void *parts[1] = {text};
        size_t lens[1] = {tl + 1};
        if (gg_write_atomic(path, parts, lens, 1, err)) goto out;
    }
    rc = 0;
out:
    for (size_t i = 0; i < nm; i++) {
        free(m[i].own_a);
        free(m[i].own_b);
    }
    free(m);
    free(wt);
    free(names);
    json_decref(cfg);
    free(text);
    free(path);
    return rc;
}

int gg_adapter_save_peft(const gg_adapter *a, const char *dir, const char *base_model_name, gg_err *err) {
    return gg_adapter_save_peft_base(a, dir, base_model_name, NULL, err);
}
