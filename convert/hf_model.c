/* hf_model.c — Hugging Face config.json → gg_hf_config, HF tensor names →
 * canonical tensors (hf_model.h), and the model metadata keys.
 *
 * Metadata keys written by gg_hf_config_to_meta (docs/FORMAT.md):
 *
 *   general.architecture        str   "llama" | "mistral" | "qwen2" | "gemma" | "falcon"
 *   general.hf_class            str   e.g. "LlamaForCausalLM"
 *   model.vocab_size            i64
 *   model.hidden_size           i64
 *   model.n_layers              i64
 *   model.n_heads               i64   query heads
 *   model.n_kv_heads            i64   key/value heads (GQA/MQA: fewer than n_heads)
 *   model.head_dim              i64
 *   model.ffn_size              i64   intermediate size of the MLP
 *   model.context_length        i64   max_position_embeddings
 *   model.norm                  str   "rms" | "rms1p" (Gemma: x*(1+w)) | "layernorm"
 *   model.norm_eps              f64
 *   model.mlp                   str   "swiglu" | "geglu_tanh" | "gelu"
 *   model.parallel_attn         bool  attention and MLP both read the block input (Falcon)
 *   model.tied_embeddings       bool  no lm_head.weight: logits use embed.weight
 *   model.attn_bias             bool  q/k/v biases present (o bias: see the tensors)
 *   model.mlp_bias              bool  MLP biases present
 *   model.embed_scale           f64   embeddings are multiplied by it (Gemma: sqrt(hidden))
 *   model.rope.type             str   "default" | "llama3" | "linear"
 *   model.rope.theta            f64
 *   model.rope.factor           f64   llama3/linear; 1 for default
 *   model.rope.low_freq_factor  f64   llama3; 0 otherwise
 *   model.rope.high_freq_factor f64   llama3; 0 otherwise
 *   model.rope.original_context i64   llama3 original_max_position_embeddings; 0 otherwise
 *   model.sliding_window        i64   0 = full attention
 *   model.bos_id                i64   -1 = none
 *   model.eos_id                i64   -1 = none
 *
 * config.json fields absent (or null) take the default of the HF config
 * class (e.g. rms_norm_eps 1e-6, max_position_embeddings 2048/131072/32768/
 * 8192 for llama/mistral/qwen2/gemma, Falcon layer_norm_epsilon 1e-5,
 * max_position_embeddings 2048 and ffn_hidden_size 4*hidden, Mistral
 * sliding_window 4096), except the sizes that define the tensors
 * (vocab_size, hidden_size, layer and head counts, intermediate_size),
 * which are required. Qwen2's window applies only with use_sliding_window
 * and (as one window for every layer) only when max_window_layers is 0 or
 * >= the layer count.
 *
 * Falcon norms: the checkpoint's names decide between the two layouts HF
 * builds with new_decoder_architecture (ln_attn + ln_mlp when
 * num_ln_in_parallel_attn == 2, else input_layernorm alone): gg_hf_config
 * has no field for num_ln_in_parallel_attn. */
#include "convert/hf_model.h"
#include "convert/json_util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 65536
#define MAX_HEADS 65536
#define MAX_SIZE 2147483647LL
#define MAX_CONFIG_BYTES (16u << 20)

/* ---- JSON helpers ------------------------------------------------------- */

typedef struct parse_ctx {
    const char *label;
    gg_err *err;
} parse_ctx;

/* The value of key in obj, NULL when absent or null. */
static json_t *jget(const json_t *obj, const char *key) {
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return v && !json_is_null(v) ? v : NULL;
}

/* path: how the field is named in messages ("hidden_size", "rope_scaling.factor"). */
static int type_err(parse_ctx *p, const char *path, const json_t *v, const char *want) {
    return gg_errf(p->err, "%s: '%s' is %s, expected %s", p->label, path, gg_json_kind(v), want);
}

/* Optional integer: *found = 0 when absent/null (out untouched). */
static int opt_int(parse_ctx *p, const json_t *obj, const char *key, const char *path, int64_t *out,
                   int *found) {
    json_t *v = jget(obj, key);
    if (found) *found = 0;
    if (!v) return 0;
    if (!json_is_integer(v)) return type_err(p, path, v, "an integer");
    *out = (int64_t)json_integer_value(v);
    if (found) *found = 1;
    return 0;
}

static int opt_num(parse_ctx *p, const json_t *obj, const char *key, const char *path, double *out,
                   int *found) {
    json_t *v = jget(obj, key);
    if (found) *found = 0;
    if (!v) return 0;
    if (!json_is_number(v)) return type_err(p, path, v, "a number");
    *out = json_number_value(v);
    if (!isfinite(*out)) return gg_errf(p->err, "%s: '%s' is not finite", p->label, path);
    if (found) *found = 1;
    return 0;
}

static int opt_bool(parse_ctx *p, const json_t *obj, const char *key, int *out) {
    json_t *v = jget(obj, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) return type_err(p, key, v, "a boolean (true/false)");
    *out = json_is_true(v);
    return 0;
}

static int opt_str(parse_ctx *p, const json_t *obj, const char *key, const char *path,
                   const char **out) {
    json_t *v = jget(obj, key);
    if (!v) return 0;
    if (!json_is_string(v)) return type_err(p, path, v, "a string");
    *out = json_string_value(v);
    return 0;
}

/* Required integer, looked up under any of the keys (aliases); *used names
 * the key found. */
static int req_int(parse_ctx *p, const json_t *root, const char *const *keys, int64_t *out,
                   const char **used) {
    for (size_t i = 0; keys[i]; i++) {
        json_t *v = json_object_get(root, keys[i]);
        if (!v) continue;
        if (!json_is_integer(v)) return type_err(p, keys[i], v, "an integer");
        *out = (int64_t)json_integer_value(v);
        if (used) *used = keys[i];
        return 0;
    }
    return gg_errf(p->err, "%s: missing '%s'", p->label, keys[0]);
}

static int check_range(parse_ctx *p, const char *key, int64_t v, int64_t max) {
    if (v <= 0) return gg_errf(p->err, "%s: '%s' must be positive (got %lld)", p->label, key, (long long)v);
    if (v > max)
        return gg_errf(p->err, "%s: '%s' is too large (got %lld, at most %lld)", p->label, key,
                       (long long)v, (long long)max);
    return 0;
}

/* bos/eos: integer, null (-1) or a list of integers (the first; [] → -1). */
static int token_id(parse_ctx *p, const json_t *root, const char *key, int64_t *out) {
    json_t *v = jget(root, key);
    *out = -1;
    if (!v) return 0;
    if (json_is_array(v)) {
        if (json_array_size(v) == 0) return 0;
        json_t *e = json_array_get(v, 0);
        if (!json_is_integer(e)) {
            if (json_is_null(e)) return 0;
            return gg_errf(p->err, "%s: '%s[0]' is %s, expected an integer", p->label, key, gg_json_kind(e));
        }
        *out = (int64_t)json_integer_value(e);
    } else if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
    } else {
        return type_err(p, key, v, "an integer, a list of integers or null");
    }
    if (*out < 0) *out = -1;
    return 0;
}

/* ---- architectures ------------------------------------------------------ */

static const struct {
    const char *cls, *arch;
} ARCHES[] = {
    {"LlamaForCausalLM", "llama"}, {"MistralForCausalLM", "mistral"}, {"Qwen2ForCausalLM", "qwen2"},
    {"GemmaForCausalLM", "gemma"}, {"FalconForCausalLM", "falcon"},
};
#define N_ARCHES (sizeof ARCHES / sizeof ARCHES[0])
#define SUPPORTED_LIST                                                                         \
    "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, GemmaForCausalLM, FalconForCausalLM"

static int resolve_arch(parse_ctx *p, const json_t *root, gg_hf_config *cfg) {
    const char *cls = NULL;
    json_t *a = jget(root, "architectures");
    if (a) {
        if (!json_is_array(a)) return type_err(p, "architectures", a, "an array of strings");
        if (json_array_size(a) > 0) {
            json_t *e = json_array_get(a, 0);
            if (!json_is_string(e))
                return gg_errf(p->err, "%s: 'architectures[0]' is %s, expected a string", p->label, gg_json_kind(e));
            cls = json_string_value(e);
            for (size_t i = 0; i < N_ARCHES; i++) {
                if (strcmp(cls, ARCHES[i].cls) == 0) {
                    snprintf(cfg->hf_class, sizeof cfg->hf_class, "%s", ARCHES[i].cls);
                    snprintf(cfg->arch, sizeof cfg->arch, "%s", ARCHES[i].arch);
                    return 0;
                }
            }
            return gg_errf(p->err, "%s: unsupported architecture '%.100s' (supported: " SUPPORTED_LIST ")",
                           p->label, cls);
        }
    }
    const char *mt = NULL;
    if (opt_str(p, root, "model_type", "model_type", &mt)) return -1;
    if (!mt) return gg_errf(p->err, "%s: missing 'architectures' (and no 'model_type')", p->label);
    for (size_t i = 0; i < N_ARCHES; i++) {
        if (strcmp(mt, ARCHES[i].arch) == 0) {
            snprintf(cfg->hf_class, sizeof cfg->hf_class, "%s", ARCHES[i].cls);
            snprintf(cfg->arch, sizeof cfg->arch, "%s", ARCHES[i].arch);
            return 0;
        }
    }
    return gg_errf(p->err, "%s: unsupported architecture '%.100s' (model_type; supported: " SUPPORTED_LIST ")",
                   p->label, mt);
}

/* ---- RoPE --------------------------------------------------------------- */

static int rope_type_of(parse_ctx *p, const json_t *obj, const char *objname, const char **out) {
    const char *t = NULL;
    char path[64];
    snprintf(path, sizeof path, "%s.rope_type", objname);
    if (opt_str(p, obj, "rope_type", path, &t)) return -1;
    if (!t) {
        snprintf(path, sizeof path, "%s.type", objname);
        if (opt_str(p, obj, "type", path, &t)) return -1;
    }
    *out = t ? t : "default";
    return 0;
}

static int rope_req_num(parse_ctx *p, const json_t *obj, const char *objname, const char *key,
                        const char *type, double *out) {
    char path[96];
    int found;
    snprintf(path, sizeof path, "%s.%s", objname, key);
    if (opt_num(p, obj, key, path, out, &found)) return -1;
    if (!found) return gg_errf(p->err, "%s: rope type '%s' needs '%s'", p->label, type, path);
    if (!(*out > 0)) return gg_errf(p->err, "%s: '%s' must be positive (got %g)", p->label, path, *out);
    return 0;
}

static int parse_rope(parse_ctx *p, const json_t *root, gg_hf_config *cfg) {
    json_t *rp = jget(root, "rope_parameters");
    json_t *rs = jget(root, "rope_scaling");
    const json_t *src = NULL;
    const char *srcname = NULL;
    int found;

    if (rp && !json_is_object(rp)) return type_err(p, "rope_parameters", rp, "an object");
    if (rs && !json_is_object(rs)) return type_err(p, "rope_scaling", rs, "an object or null");

    cfg->rope_theta = 10000.0;
    if (opt_num(p, root, "rope_theta", "rope_theta", &cfg->rope_theta, NULL)) return -1;
    if (rp) {
        if (!json_object_get(rp, "rope_type") && !json_object_get(rp, "type")) {
            const char *k;
            json_t *v;
            json_object_foreach(rp, k, v) {
                if (json_is_object(v))
                    return gg_errf(p->err,
                                   "%s: per-layer-type 'rope_parameters' ('%.60s': {...}) is not supported",
                                   p->label, k);
            }
        }
        if (opt_num(p, rp, "rope_theta", "rope_parameters.rope_theta", &cfg->rope_theta, NULL)) return -1;
        src = rp;
        srcname = "rope_parameters";
    }
    const char *type = "default";
    if (rp && rope_type_of(p, rp, "rope_parameters", &type)) return -1;
    if (rs) {
        const char *t2;
        if (rope_type_of(p, rs, "rope_scaling", &t2)) return -1;
        if (!rp) {
            type = t2;
            src = rs;
            srcname = "rope_scaling";
        } else if (strcmp(t2, type) != 0) {
            return gg_errf(p->err, "%s: 'rope_parameters' (type '%.40s') and 'rope_scaling' (type '%.40s') disagree",
                           p->label, type, t2);
        }
    }
    if (!(cfg->rope_theta > 0))
        return gg_errf(p->err, "%s: 'rope_theta' must be positive (got %g)", p->label, cfg->rope_theta);

    cfg->rope_factor = 1.0;
    cfg->rope_low_freq_factor = 0.0;
    cfg->rope_high_freq_factor = 0.0;
    cfg->rope_original_context = 0;
    if (strcmp(type, "default") == 0) {
        cfg->rope = GG_ROPE_DEFAULT;
    } else if (strcmp(type, "linear") == 0) {
        cfg->rope = GG_ROPE_LINEAR;
        if (rope_req_num(p, src, srcname, "factor", type, &cfg->rope_factor)) return -1;
    } else if (strcmp(type, "llama3") == 0) {
        cfg->rope = GG_ROPE_LLAMA3;
        if (rope_req_num(p, src, srcname, "factor", type, &cfg->rope_factor)) return -1;
        if (rope_req_num(p, src, srcname, "low_freq_factor", type, &cfg->rope_low_freq_factor)) return -1;
        if (rope_req_num(p, src, srcname, "high_freq_factor", type, &cfg->rope_high_freq_factor)) return -1;
        char path[96];
        snprintf(path, sizeof path, "%s.original_max_position_embeddings", srcname);
        if (opt_int(p, src, "original_max_position_embeddings", path, &cfg->rope_original_context, &found))
            return -1;
        if (!found) return gg_errf(p->err, "%s: rope type 'llama3' needs '%s'", p->label, path);
        if (check_range(p, path, cfg->rope_original_context, MAX_SIZE)) return -1;
        if (!(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor))
            return gg_errf(p->err, "%s: '%s.high_freq_factor' (%g) must be greater than 'low_freq_factor' (%g)",
                           p->label, srcname, cfg->rope_high_freq_factor, cfg->rope_low_freq_factor);
    } else {
        return gg_errf(p->err, "%s: rope type '%.60s' is not supported (supported: default, linear, llama3)",
                       p->label, type);
    }
    return 0;
}

/* ---- config ------------------------------------------------------------- */

static int parse_llama_family(parse_ctx *p, const json_t *root, gg_hf_config *cfg) {
    static const char *const k_vocab[] = {"vocab_size", NULL}, *const k_hidden[] = {"hidden_size", NULL},
                             *const k_layers[] = {"num_hidden_layers", NULL},
                             *const k_heads[] = {"num_attention_heads", NULL},
                             *const k_ffn[] = {"intermediate_size", NULL};
    int is_gemma = strcmp(cfg->arch, "gemma") == 0, is_qwen2 = strcmp(cfg->arch, "qwen2") == 0,
        is_mistral = strcmp(cfg->arch, "mistral") == 0, is_llama = strcmp(cfg->arch, "llama") == 0;
    int found;

    if (req_int(p, root, k_vocab, &cfg->vocab_size, NULL) || req_int(p, root, k_hidden, &cfg->hidden_size, NULL) ||
        req_int(p, root, k_layers, &cfg->n_layers, NULL) || req_int(p, root, k_heads, &cfg->n_heads, NULL) ||
        req_int(p, root, k_ffn, &cfg->ffn_size, NULL))
        return -1;
    if (check_range(p, "vocab_size", cfg->vocab_size, MAX_SIZE) ||
        check_range(p, "hidden_size", cfg->hidden_size, MAX_SIZE) ||
        check_range(p, "num_hidden_layers", cfg->n_layers, MAX_LAYERS) ||
        check_range(p, "num_attention_heads", cfg->n_heads, MAX_HEADS) ||
        check_range(p, "intermediate_size", cfg->ffn_size, MAX_SIZE))
        return -1;

    cfg->n_kv_heads = cfg->n_heads;
    if (opt_int(p, root, "num_key_value_heads", "num_key_value_heads", &cfg->n_kv_heads, NULL)) return -1;
    if (check_range(p, "num_key_value_heads", cfg->n_kv_heads, MAX_HEADS)) return -1;
    if (cfg->n_heads % cfg->n_kv_heads != 0)
        return gg_errf(p->err, "%s: 'num_attention_heads' (%lld) is not a multiple of 'num_key_value_heads' (%lld)",
                       p->label, (long long)cfg->n_heads, (long long)cfg->n_kv_heads);

    if (opt_int(p, root, "head_dim", "head_dim", &cfg->head_dim, &found)) return -1;
    if (found) {
        if (check_range(p, "head_dim", cfg->head_dim, MAX_SIZE)) return -1;
    } else {
        if (cfg->hidden_size % cfg->n_heads != 0)
            return gg_errf(p->err,
                           "%s: 'hidden_size' (%lld) is not a multiple of 'num_attention_heads' (%lld) "
                           "and there is no 'head_dim'",
                           p->label, (long long)cfg->hidden_size, (long long)cfg->n_heads);
        cfg->head_dim = cfg->hidden_size / cfg->n_heads;
    }

    cfg->context_length = is_llama ? 2048 : is_mistral ? 131072 : is_qwen2 ? 32768 : 8192;
    if (opt_int(p, root, "max_position_embeddings", "max_position_embeddings", &cfg->context_length, NULL))
        return -1;
    if (check_range(p, "max_position_embeddings", cfg->context_length, MAX_SIZE)) return -1;

    cfg->norm_eps = 1e-6;
    if (opt_num(p, root, "rms_norm_eps", "rms_norm_eps", &cfg->norm_eps, NULL)) return -1;

    /* activation */
    const char *act = NULL, *act_key = "hidden_act";
    if (opt_str(p, root, "hidden_activation", "hidden_activation", &act)) return -1;
    if (act) act_key = "hidden_activation";
    else if (opt_str(p, root, "hidden_act", "hidden_act", &act)) return -1;
    if (is_gemma) {
        cfg->norm = GG_NORM_RMS_1P;
        cfg->mlp = GG_MLP_GEGLU_TANH;
        if (!act) act = "gelu_pytorch_tanh";
        if (strcmp(act, "gelu_pytorch_tanh") != 0 && strcmp(act, "gelu") != 0)
            return gg_errf(p->err, "%s: '%s' is '%.60s'; %s supports 'gelu_pytorch_tanh' (or 'gelu')",
                           p->label, act_key, act, cfg->hf_class);
        cfg->embed_scale = sqrt((double)cfg->hidden_size);
    } else {
        cfg->norm = GG_NORM_RMS;
        cfg->mlp = GG_MLP_SWIGLU;
        if (!act) act = "silu";
        if (strcmp(act, "silu") != 0)
            return gg_errf(p->err, "%s: '%s' is '%.60s'; %s supports only 'silu'", p->label, act_key, act,
                           cfg->hf_class);
        cfg->embed_scale = 1.0;
    }

    /* biases */
    if (is_qwen2) {
        cfg->attn_bias = 1; /* q/k/v always, o never */
    } else if (is_llama || is_gemma) {
        if (opt_bool(p, root, "attention_bias", &cfg->attn_bias)) return -1;
    }
    if (is_llama && opt_bool(p, root, "mlp_bias", &cfg->mlp_bias)) return -1;

    cfg->tied_embeddings = is_gemma;
    if (opt_bool(p, root, "tie_word_embeddings", &cfg->tied_embeddings)) return -1;

    /* sliding window */
    cfg->sliding_window = 0;
    if (is_mistral) {
        json_t *v = json_object_get(root, "sliding_window");
        if (!v) cfg->sliding_window = 4096; /* MistralConfig default */
        else if (opt_int(p, root, "sliding_window", "sliding_window", &cfg->sliding_window, NULL)) return -1;
    } else if (is_qwen2) {
        int use = 0;
        if (opt_bool(p, root, "use_sliding_window", &use)) return -1;
        if (use) {
            int64_t sw = 4096, mwl = 28;
            json_t *v = json_object_get(root, "sliding_window");
            if (v && json_is_null(v)) sw = 0;
            else if (opt_int(p, root, "sliding_window", "sliding_window", &sw, NULL)) return -1;
            if (opt_int(p, root, "max_window_layers", "max_window_layers", &mwl, NULL)) return -1;
            if (sw > 0 && mwl < cfg->n_layers) {
                if (mwl > 0)
                    return gg_errf(p->err,
                                   "%s: sliding window on layers %lld..%lld only ('max_window_layers' %lld) "
                                   "is not supported",
                                   p->label, (long long)mwl, (long long)cfg->n_layers - 1, (long long)mwl);
                cfg->sliding_window = sw;
            }
        }
    }
    if (cfg->sliding_window < 0)
        return gg_errf(p->err, "%s: 'sliding_window' must not be negative (got %lld)", p->label,
                       (long long)cfg->sliding_window);
    return 0;
}

static int parse_falcon(parse_ctx *p, const json_t *root, gg_hf_config *cfg) {
    static const char *const k_vocab[] = {"vocab_size", NULL}, *const k_hidden[] = {"hidden_size", NULL},
                             *const k_layers[] = {"num_hidden_layers", "n_layer", NULL},
                             *const k_heads[] = {"num_attention_heads", "n_head", NULL};
    const char *layers_key = NULL, *heads_key = NULL;
    int alibi = 0, new_arch = 0, multi_query = 1, bias = 0, found;

    if (opt_bool(p, root, "alibi", &alibi)) return -1;
    if (alibi) return gg_errf(p->err, "%s: alibi is not supported ('alibi': true)", p->label);

    if (req_int(p, root, k_vocab, &cfg->vocab_size, NULL) || req_int(p, root, k_hidden, &cfg->hidden_size, NULL) ||
        req_int(p, root, k_layers, &cfg->n_layers, &layers_key) ||
        req_int(p, root, k_heads, &cfg->n_heads, &heads_key))
        return -1;
    if (check_range(p, "vocab_size", cfg->vocab_size, MAX_SIZE) ||
        check_range(p, "hidden_size", cfg->hidden_size, MAX_SIZE) ||
        check_range(p, layers_key, cfg->n_layers, MAX_LAYERS) || check_range(p, heads_key, cfg->n_heads, MAX_HEADS))
        return -1;
    if (cfg->hidden_size % cfg->n_heads != 0)
        return gg_errf(p->err, "%s: 'hidden_size' (%lld) is not a multiple of '%s' (%lld)", p->label,
                       (long long)cfg->hidden_size, heads_key, (long long)cfg->n_heads);
    cfg->head_dim = cfg->hidden_size / cfg->n_heads;

    cfg->ffn_size = 4 * cfg->hidden_size;
    if (opt_int(p, root, "ffn_hidden_size", "ffn_hidden_size", &cfg->ffn_size, NULL)) return -1;
    if (check_range(p, "ffn_hidden_size", cfg->ffn_size, MAX_SIZE)) return -1;

    if (opt_bool(p, root, "new_decoder_architecture", &new_arch) ||
        opt_bool(p, root, "multi_query", &multi_query))
        return -1;
    if (new_arch) {
        const char *kv_key = "num_kv_heads";
        cfg->n_kv_heads = cfg->n_heads;
        if (opt_int(p, root, "num_kv_heads", "num_kv_heads", &cfg->n_kv_heads, &found)) return -1;
        if (!found) {
            if (opt_int(p, root, "n_head_kv", "n_head_kv", &cfg->n_kv_heads, &found)) return -1;
            if (found) kv_key = "n_head_kv";
        }
        if (check_range(p, kv_key, cfg->n_kv_heads, MAX_HEADS)) return -1;
        if (cfg->n_heads % cfg->n_kv_heads != 0)
            return gg_errf(p->err, "%s: '%s' (%lld) is not a multiple of '%s' (%lld)", p->label, heads_key,
                           (long long)cfg->n_heads, kv_key, (long long)cfg->n_kv_heads);
        cfg->falcon_qkv = GG_FALCON_GROUPED;
        int64_t nln = 2;
        if (opt_int(p, root, "num_ln_in_parallel_attn", "num_ln_in_parallel_attn", &nln, NULL)) return -1;
        if (nln != 1 && nln != 2)
            return gg_errf(p->err, "%s: 'num_ln_in_parallel_attn' must be 1 or 2 (got %lld)", p->label,
                           (long long)nln);
        cfg->parallel_attn = 1; /* the new decoder architecture is always parallel */
    } else {
        if (multi_query) {
            cfg->n_kv_heads = 1;
            cfg->falcon_qkv = GG_FALCON_MULTI_QUERY;
        } else {
            cfg->n_kv_heads = cfg->n_heads;
            cfg->falcon_qkv = GG_FALCON_INTERLEAVED;
        }
        cfg->parallel_attn = 1;
        if (opt_bool(p, root, "parallel_attn", &cfg->parallel_attn)) return -1;
    }

    cfg->context_length = 2048;
    if (opt_int(p, root, "max_position_embeddings", "max_position_embeddings", &cfg->context_length, NULL))
        return -1;
    if (check_range(p, "max_position_embeddings", cfg->context_length, MAX_SIZE)) return -1;

    cfg->norm = GG_NORM_LAYER;
    cfg->norm_eps = 1e-5;
    if (opt_num(p, root, "layer_norm_epsilon", "layer_norm_epsilon", &cfg->norm_eps, NULL)) return -1;

    const char *act = "gelu";
    if (opt_str(p, root, "activation", "activation", &act)) return -1;
    if (strcmp(act, "gelu") != 0)
        return gg_errf(p->err, "%s: 'activation' is '%.60s'; FalconForCausalLM supports only 'gelu'", p->label,
                       act);
    cfg->mlp = GG_MLP_GELU;
    cfg->embed_scale = 1.0;

    if (opt_bool(p, root, "bias", &bias)) return -1;
    cfg->attn_bias = cfg->mlp_bias = bias;
    cfg->tied_embeddings = 1;
    if (opt_bool(p, root, "tie_word_embeddings", &cfg->tied_embeddings)) return -1;
    cfg->sliding_window = 0;
    return 0;
}

int gg_hf_config_parse(gg_hf_config *cfg, const char *json, size_t len, const char *label, gg_err *err) {
    parse_ctx p = {label ? label : "config.json", err};
    json_error_t je;
    memset(cfg, 0, sizeof *cfg);
    if (!json) return gg_errf(err, "%s: no data", p.label);
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return gg_errf(err, "%s: invalid JSON at line %d, column %d: %s", p.label, je.line, je.column, je.text);
    int rc = -1;
    if (!json_is_object(root)) {
        gg_errf(err, "%s: the top level is %s, expected an object", p.label, gg_json_kind(root));
        goto out;
    }
    if (resolve_arch(&p, root, cfg)) goto out;

    const char *dtype = NULL;
    if (opt_str(&p, root, "dtype", "dtype", &dtype)) goto out;
    if (!dtype && opt_str(&p, root, "torch_dtype", "torch_dtype", &dtype)) goto out;
    if (dtype) {
        if (strlen(dtype) >= sizeof cfg->dtype) {
            gg_errf(err, "%s: 'dtype' value '%.40s' is too long", p.label, dtype);
            goto out;
        }
        snprintf(cfg->dtype, sizeof cfg->dtype, "%s", dtype);
    }

    if (strcmp(cfg->arch, "falcon") == 0) {
        if (parse_falcon(&p, root, cfg)) goto out;
    } else {
        cfg->falcon_qkv = GG_FALCON_NONE;
        cfg->parallel_attn = 0;
        if (parse_llama_family(&p, root, cfg)) goto out;
    }
    if (!(cfg->norm_eps > 0)) {
        gg_errf(err, "%s: '%s' must be positive (got %g)", p.label,
                cfg->norm == GG_NORM_LAYER ? "layer_norm_epsilon" : "rms_norm_eps", cfg->norm_eps);
        goto out;
    }
    if (parse_rope(&p, root, cfg)) goto out;
    if (token_id(&p, root, "bos_token_id", &cfg->bos_id) || token_id(&p, root, "eos_token_id", &cfg->eos_id))
        goto out;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int gg_hf_config_load(gg_hf_config *cfg, const char *path, gg_err *err) {
    char *buf;
    size_t n;
    if (gg_read_small_file(path, MAX_CONFIG_BYTES, "a config.json", &buf, &n, err)) return -1;
    int rc = gg_hf_config_parse(cfg, buf, n, path, err);
    free(buf);
    return rc;
}

/* ---- canonical mapping -------------------------------------------------- */

enum slot {
    SL_ATTN_NORM_W, SL_ATTN_NORM_B, SL_Q_W, SL_Q_B, SL_K_W, SL_K_B, SL_V_W, SL_V_B, SL_O_W, SL_O_B,
    SL_MLP_NORM_W, SL_MLP_NORM_B, SL_GATE_W, SL_GATE_B, SL_UP_W, SL_UP_B, SL_DOWN_W, SL_DOWN_B,
    SL_QKV_W, SL_QKV_B, /* falcon fused source; output as q/k/v */
    SL_EMBED, SL_FINAL_W, SL_FINAL_B, SL_LM_HEAD,
    SL_COUNT
};

static const char *const SLOT_NAME[SL_COUNT] = {
    "attn_norm.weight", "attn_norm.bias", "attn.q.weight", "attn.q.bias", "attn.k.weight", "attn.k.bias",
    "attn.v.weight", "attn.v.bias", "attn.o.weight", "attn.o.bias", "mlp_norm.weight", "mlp_norm.bias",
    "mlp.gate.weight", "mlp.gate.bias", "mlp.up.weight", "mlp.up.bias", "mlp.down.weight", "mlp.down.bias",
    "attn.qkv.weight", "attn.qkv.bias", "embed.weight", "final_norm.weight", "final_norm.bias", "lm_head.weight",
};

/* When an entry is expected. */
enum when { W_ALWAYS, W_ATTN_BIAS, W_O_BIAS, W_MLP_BIAS, W_UNTIED, W_F_ONE, W_F_TWO, W_F_SEQ };

typedef struct entry {
    const char *hf; /* suffix after the layer prefix, or the full global name */
    int slot, when;
} entry;

static const entry LLAMA_LAYER[] = {
    {"input_layernorm.weight", SL_ATTN_NORM_W, W_ALWAYS},
    {"self_attn.q_proj.weight", SL_Q_W, W_ALWAYS},
    {"self_attn.q_proj.bias", SL_Q_B, W_ATTN_BIAS},
    {"self_attn.k_proj.weight", SL_K_W, W_ALWAYS},
    {"self_attn.k_proj.bias", SL_K_B, W_ATTN_BIAS},
    {"self_attn.v_proj.weight", SL_V_W, W_ALWAYS},
    {"self_attn.v_proj.bias", SL_V_B, W_ATTN_BIAS},
    {"self_attn.o_proj.weight", SL_O_W, W_ALWAYS},
    {"self_attn.o_proj.bias", SL_O_B, W_O_BIAS},
    {"post_attention_layernorm.weight", SL_MLP_NORM_W, W_ALWAYS},
    {"mlp.gate_proj.weight", SL_GATE_W, W_ALWAYS},
    {"mlp.gate_proj.bias", SL_GATE_B, W_MLP_BIAS},
    {"mlp.up_proj.weight", SL_UP_W, W_ALWAYS},
    {"mlp.up_proj.bias", SL_UP_B, W_MLP_BIAS},
    {"mlp.down_proj.weight", SL_DOWN_W, W_ALWAYS},
    {"mlp.down_proj.bias", SL_DOWN_B, W_MLP_BIAS},
};
static const entry LLAMA_GLOBAL[] = {
    {"model.embed_tokens.weight", SL_EMBED, W_ALWAYS},
    {"model.norm.weight", SL_FINAL_W, W_ALWAYS},
    {"lm_head.weight", SL_LM_HEAD, W_UNTIED},
};
static const entry FALCON_LAYER[] = {
    {"input_layernorm.weight", SL_ATTN_NORM_W, W_F_ONE},
    {"input_layernorm.bias", SL_ATTN_NORM_B, W_F_ONE},
    {"ln_attn.weight", SL_ATTN_NORM_W, W_F_TWO},
    {"ln_attn.bias", SL_ATTN_NORM_B, W_F_TWO},
    {"ln_mlp.weight", SL_MLP_NORM_W, W_F_TWO},
    {"ln_mlp.bias", SL_MLP_NORM_B, W_F_TWO},
    {"post_attention_layernorm.weight", SL_MLP_NORM_W, W_F_SEQ},
    {"post_attention_layernorm.bias", SL_MLP_NORM_B, W_F_SEQ},
    {"self_attention.query_key_value.weight", SL_QKV_W, W_ALWAYS},
    {"self_attention.query_key_value.bias", SL_QKV_B, W_ATTN_BIAS},
    {"self_attention.dense.weight", SL_O_W, W_ALWAYS},
    {"self_attention.dense.bias", SL_O_B, W_O_BIAS},
    {"mlp.dense_h_to_4h.weight", SL_UP_W, W_ALWAYS},
    {"mlp.dense_h_to_4h.bias", SL_UP_B, W_MLP_BIAS},
    {"mlp.dense_4h_to_h.weight", SL_DOWN_W, W_ALWAYS},
    {"mlp.dense_4h_to_h.bias", SL_DOWN_B, W_MLP_BIAS},
};
static const entry FALCON_GLOBAL[] = {
    {"transformer.word_embeddings.weight", SL_EMBED, W_ALWAYS},
    {"transformer.ln_f.weight", SL_FINAL_W, W_ALWAYS},
    {"transformer.ln_f.bias", SL_FINAL_B, W_ALWAYS},
    {"lm_head.weight", SL_LM_HEAD, W_UNTIED},
};

/* Buffers some checkpoints carry that the model does not use. */
static int ignorable(const char *name) {
    static const char *const suffixes[] = {"rotary_emb.inv_freq", "maybe_rotary.inv_freq"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t m = strlen(suffixes[i]);
        if (n >= m && strcmp(name + n - m, suffixes[i]) == 0) return 1;
    }
    return 0;
}

typedef struct map_ctx {
    const gg_hf_config *cfg;
    int falcon, two_norms;
    const entry *layer, *global;
    size_t nlayer, nglobal;
    const char *prefix; /* "model.layers." / "transformer.h." */
    const gg_st_tensor **lfound; /* [n_layers][nlayer] */
    const gg_st_tensor **gfound; /* [nglobal] */
    char where[512];             /* names the checkpoint in messages */
    gg_err *err;
} map_ctx;

static int required(const map_ctx *m, int when) {
    const gg_hf_config *c = m->cfg;
    switch (when) {
    case W_ALWAYS: return 1;
    case W_ATTN_BIAS: return c->attn_bias;
    case W_O_BIAS: return c->attn_bias && strcmp(c->arch, "qwen2") != 0;
    case W_MLP_BIAS: return c->mlp_bias;
    case W_UNTIED: return !c->tied_embeddings;
    case W_F_ONE: return !m->two_norms;
    case W_F_TWO: return m->two_norms;
    case W_F_SEQ: return !m->two_norms && !c->parallel_attn;
    }
    return 0;
}

/* Parse "<prefix>N.<rest>": returns 1 and sets *layer, *rest; 0 when the
 * name does not have that form. */
static int split_layer(const char *name, const char *prefix, uint64_t *layer, const char **rest) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0) return 0;
    const char *s = name + pl;
    uint64_t v = 0;
    size_t nd = 0;
    while (s[nd] >= '0' && s[nd] <= '9') {
        if (nd >= 12) return 0;
        v = v * 10 + (uint64_t)(s[nd] - '0');
        nd++;
    }
    if (nd == 0 || s[nd] != '.' || (nd > 1 && s[0] == '0')) return 0;
    *layer = v;
    *rest = s + nd + 1;
    return 1;
}

static void shape_str(char *buf, size_t cap, uint32_t ndim, const uint64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (uint32_t i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", i ? "," : "", (unsigned long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Expected shape of a slot, and the config fields it comes from. */
static void expected_shape(const gg_hf_config *c, int slot, uint32_t *ndim, uint64_t shape[2], char *why,
                           size_t cap) {
    int falcon = strcmp(c->arch, "falcon") == 0;
    uint64_t H = (uint64_t)c->hidden_size, hd = (uint64_t)c->head_dim, nh = (uint64_t)c->n_heads,
             kv = (uint64_t)c->n_kv_heads, F = (uint64_t)c->ffn_size, V = (uint64_t)c->vocab_size;
    const char *heads_key = "num_attention_heads";
    const char *ffn_key = falcon ? "ffn_hidden_size" : "intermediate_size";
    char kvdesc[96];
    if (!falcon) snprintf(kvdesc, sizeof kvdesc, "num_key_value_heads=%llu", (unsigned long long)kv);
    else if (c->falcon_qkv == GG_FALCON_GROUPED) snprintf(kvdesc, sizeof kvdesc, "num_kv_heads=%llu", (unsigned long long)kv);
    else if (c->falcon_qkv == GG_FALCON_MULTI_QUERY) snprintf(kvdesc, sizeof kvdesc, "multi_query: 1 kv head");
    else snprintf(kvdesc, sizeof kvdesc, "kv heads=%llu", (unsigned long long)kv);

    *ndim = 1;
    shape[1] = 0;
    switch (slot) {
    case SL_ATTN_NORM_W: case SL_ATTN_NORM_B: case SL_MLP_NORM_W: case SL_MLP_NORM_B:
    case SL_FINAL_W: case SL_FINAL_B: case SL_O_B: case SL_DOWN_B:
        shape[0] = H;
        snprintf(why, cap, "hidden_size=%llu", (unsigned long long)H);
        return;
    case SL_Q_W: case SL_Q_B:
        shape[0] = nh * hd;
        snprintf(why, cap, "%s=%llu, head_dim=%llu, hidden_size=%llu", heads_key, (unsigned long long)nh,
                 (unsigned long long)hd, (unsigned long long)H);
        break;
    case SL_K_W: case SL_K_B: case SL_V_W: case SL_V_B:
        shape[0] = kv * hd;
        snprintf(why, cap, "%s, head_dim=%llu, hidden_size=%llu", kvdesc, (unsigned long long)hd,
                 (unsigned long long)H);
        break;
    case SL_QKV_W: case SL_QKV_B:
        shape[0] = (nh + 2 * kv) * hd;
        snprintf(why, cap, "%s=%llu, %s, head_dim=%llu, hidden_size=%llu", heads_key, (unsigned long long)nh,
                 kvdesc, (unsigned long long)hd, (unsigned long long)H);
        break;
    case SL_O_W:
        *ndim = 2;
        shape[0] = H;
        shape[1] = nh * hd;
        snprintf(why, cap, "hidden_size=%llu, %s=%llu, head_dim=%llu", (unsigned long long)H, heads_key,
                 (unsigned long long)nh, (unsigned long long)hd);
        return;
    case SL_GATE_W: case SL_GATE_B: case SL_UP_W: case SL_UP_B:
        shape[0] = F;
        snprintf(why, cap, "%s=%llu, hidden_size=%llu", ffn_key, (unsigned long long)F, (unsigned long long)H);
        break;
    case SL_DOWN_W:
        *ndim = 2;
        shape[0] = H;
        shape[1] = F;
        snprintf(why, cap, "hidden_size=%llu, %s=%llu", (unsigned long long)H, ffn_key, (unsigned long long)F);
        return;
    case SL_EMBED: case SL_LM_HEAD:
        *ndim = 2;
        shape[0] = V;
        shape[1] = H;
        snprintf(why, cap, "vocab_size=%llu, hidden_size=%llu", (unsigned long long)V, (unsigned long long)H);
        return;
    }
    /* weights of q/k/v/qkv/gate/up: [rows, hidden]; their biases: [rows] */
    switch (slot) {
    case SL_Q_W: case SL_K_W: case SL_V_W: case SL_QKV_W: case SL_GATE_W: case SL_UP_W:
        *ndim = 2;
        shape[1] = H;
        break;
    default: break;
    }
}

static void canon_name(char *buf, size_t cap, int layer, int slot) {
    if (layer >= 0) snprintf(buf, cap, "layers.%d.%s", layer, SLOT_NAME[slot]);
    else snprintf(buf, cap, "%s", SLOT_NAME[slot]);
}

static const char *tfile(const map_ctx *m, const gg_st_tensor *t) { return t->file ? t->file : m->where; }

static int check_tensor(map_ctx *m, const gg_st_tensor *t, int layer, int slot) {
    char cname[96], why[256], got[128], want[64];
    uint32_t nd;
    uint64_t sh[2];
    canon_name(cname, sizeof cname, layer, slot);
    if (t->type < 0)
        return gg_errf(m->err, "%s: tensor '%.200s' (%s) has dtype %s; only F32, F16 and BF16 are supported",
                       tfile(m, t), t->name, cname, t->dtype);
    expected_shape(m->cfg, slot, &nd, sh, why, sizeof why);
    if (t->ndim != nd || t->shape[0] != sh[0] || (nd == 2 && t->shape[1] != sh[1])) {
        shape_str(got, sizeof got, t->ndim, t->shape);
        shape_str(want, sizeof want, nd, sh);
        if (slot == SL_QKV_W || slot == SL_QKV_B) {
            snprintf(cname, sizeof cname, "layers.%d.attn.{q,k,v}.%s", layer, slot == SL_QKV_W ? "weight" : "bias");
        }
        return gg_errf(m->err, "%s: %s (tensor '%.200s'): shape %s, expected %s from config (%s)", tfile(m, t),
                       cname, t->name, got, want, why);
    }
    return 0;
}

static int push_seg(gg_canon_tensor *o, uint64_t row0, uint64_t nrows) {
    if (o->nseg > 0) {
        gg_row_seg *last = &o->seg[o->nseg - 1];
        if (last->row0 + last->nrows == row0) {
            last->nrows += nrows;
            return 0;
        }
    }
    gg_row_seg *s = realloc(o->seg, (o->nseg + 1) * sizeof *s);
    if (!s) return -1;
    o->seg = s;
    o->seg[o->nseg].row0 = row0;
    o->seg[o->nseg].nrows = nrows;
    o->nseg++;
    return 0;
}

/* Rows of q (which 0), k (1) or v (2) inside Falcon's fused query_key_value. */
static int falcon_segs(const gg_hf_config *c, int which, gg_canon_tensor *o) {
    uint64_t hd = (uint64_t)c->head_dim, nh = (uint64_t)c->n_heads, kv = (uint64_t)c->n_kv_heads;
    switch (c->falcon_qkv) {
    case GG_FALCON_MULTI_QUERY:
        if (which == 0) return push_seg(o, 0, nh * hd);
        return push_seg(o, (nh + (uint64_t)which - 1) * hd, hd);
    case GG_FALCON_GROUPED: {
        uint64_t qpg = nh / kv, stride = (qpg + 2) * hd;
        for (uint64_t g = 0; g < kv; g++) {
            int rc = which == 0 ? push_seg(o, g * stride, qpg * hd)
                                : push_seg(o, g * stride + (qpg + (uint64_t)which - 1) * hd, hd);
            if (rc) return -1;
        }
        return 0;
    }
    case GG_FALCON_INTERLEAVED:
        for (uint64_t h = 0; h < nh; h++)
            if (push_seg(o, h * 3 * hd + (uint64_t)which * hd, hd)) return -1;
        return 0;
    case GG_FALCON_NONE: break;
    }
    return -1;
}

static gg_canon_role role_of(int slot, uint32_t ndim) {
    if (slot == SL_EMBED || slot == SL_LM_HEAD) return GG_ROLE_EMBED;
    return ndim == 2 ? GG_ROLE_LINEAR : GG_ROLE_VECTOR;
}

/* Append canonical tensor(s) for slot from src (NULL: nothing). */
static int emit(map_ctx *m, gg_canon_tensor *out, size_t *n, int layer, int slot, const gg_st_tensor *src,
                int split) {
    if (!src) return 0;
    gg_canon_tensor *o = &out[*n];
    memset(o, 0, sizeof *o);
    canon_name(o->name, sizeof o->name, layer, slot);
    o->src = src;
    char why[256];
    expected_shape(m->cfg, slot, &o->ndim, o->shape, why, sizeof why);
    o->role = role_of(slot, o->ndim);
    if (split >= 0 && falcon_segs(m->cfg, split, o)) {
        free(o->seg);
        return gg_errf(m->err, "out of memory");
    }
    (*n)++;
    return 0;
}

void gg_canon_free(gg_canon_tensor *t, size_t n) {
    if (!t) return;
    for (size_t i = 0; i < n; i++) free(t[i].seg);
    free(t);
}

static int map_fail(map_ctx *m, gg_canon_tensor *out, size_t n) {
    gg_canon_free(out, n);
    free(m->lfound);
    return -1;
}

int gg_canon_map(const gg_hf_config *cfg, const gg_st_set *st, gg_canon_tensor **out_p, size_t *n_p,
                 gg_err *err) {
    map_ctx m;
    memset(&m, 0, sizeof m);
    m.cfg = cfg;
    m.err = err;
    *out_p = NULL;
    *n_p = 0;
    if (cfg->n_layers <= 0 || cfg->n_layers > MAX_LAYERS || cfg->n_heads <= 0 || cfg->n_heads > MAX_HEADS ||
        cfg->n_kv_heads <= 0 || cfg->n_kv_heads > MAX_HEADS || cfg->n_heads % cfg->n_kv_heads != 0 ||
        cfg->vocab_size <= 0 || cfg->vocab_size > MAX_SIZE || cfg->hidden_size <= 0 || cfg->hidden_size > MAX_SIZE ||
        cfg->head_dim <= 0 || cfg->head_dim > MAX_SIZE || cfg->ffn_size <= 0 || cfg->ffn_size > MAX_SIZE)
        return gg_errf(err, "gg_canon_map: invalid config for %s (sizes out of range)", cfg->hf_class);
    m.falcon = strcmp(cfg->arch, "falcon") == 0;
    if (m.falcon && cfg->falcon_qkv == GG_FALCON_NONE)
        return gg_errf(err, "gg_canon_map: falcon config without a query_key_value layout");
    if (m.falcon) {
        m.layer = FALCON_LAYER, m.nlayer = sizeof FALCON_LAYER / sizeof FALCON_LAYER[0];
        m.global = FALCON_GLOBAL, m.nglobal = sizeof FALCON_GLOBAL / sizeof FALCON_GLOBAL[0];
        m.prefix = "transformer.h.";
    } else {
        m.layer = LLAMA_LAYER, m.nlayer = sizeof LLAMA_LAYER / sizeof LLAMA_LAYER[0];
        m.global = LLAMA_GLOBAL, m.nglobal = sizeof LLAMA_GLOBAL / sizeof LLAMA_GLOBAL[0];
        m.prefix = "model.layers.";
    }
    size_t nst = gg_st_count(st);

    /* Which file(s): one file → its path; several → their directory. */
    m.where[0] = '\0';
    for (size_t i = 0; i < nst; i++) {
        const char *f = gg_st_at(st, i)->file;
        if (!f) continue;
        if (!m.where[0]) {
            snprintf(m.where, sizeof m.where, "%s", f);
        } else if (strcmp(m.where, f) != 0) {
            const char *slash = strrchr(f, '/');
            if (slash) snprintf(m.where, sizeof m.where, "%.*s", (int)(slash - f), f);
            else snprintf(m.where, sizeof m.where, ".");
            break;
        }
    }
    if (!m.where[0]) snprintf(m.where, sizeof m.where, "checkpoint");
    if (nst == 0) return gg_errf(err, "%s: no tensors", m.where);

    /* Falcon's new decoder architecture: two norms (ln_attn, ln_mlp) or one. */
    if (m.falcon && cfg->falcon_qkv == GG_FALCON_GROUPED) {
        for (size_t i = 0; i < nst && !m.two_norms; i++) {
            uint64_t L;
            const char *rest;
            if (split_layer(gg_st_at(st, i)->name, m.prefix, &L, &rest) &&
                (strncmp(rest, "ln_attn.", 8) == 0 || strncmp(rest, "ln_mlp.", 7) == 0))
                m.two_norms = 1;
        }
    }

    size_t nl = (size_t)cfg->n_layers;
    m.lfound = calloc(nl * m.nlayer + m.nglobal, sizeof *m.lfound);
    if (!m.lfound) return gg_errf(err, "out of memory");
    m.gfound = m.lfound + nl * m.nlayer;

    /* 1. Every checkpoint tensor: known, used, right dtype and shape. */
    for (size_t i = 0; i < nst; i++) {
        const gg_st_tensor *t = gg_st_at(st, i);
        if (ignorable(t->name)) continue;
        uint64_t L;
        const char *rest;
        const entry *e = NULL;
        const gg_st_tensor **slotp = NULL;
        int layer = -1;
        if (split_layer(t->name, m.prefix, &L, &rest)) {
            if (L >= nl) {
                gg_errf(err, "%s: tensor '%.200s': layer index %llu out of range (config has %lld layers)", tfile(&m, t),
                        t->name, (unsigned long long)L, (long long)cfg->n_layers);
                return map_fail(&m, NULL, 0);
            }
            for (size_t k = 0; k < m.nlayer; k++) {
                if (strcmp(rest, m.layer[k].hf) == 0) {
                    e = &m.layer[k];
                    slotp = &m.lfound[L * m.nlayer + k];
                    layer = (int)L;
                    break;
                }
            }
        } else {
            for (size_t k = 0; k < m.nglobal; k++) {
                if (strcmp(t->name, m.global[k].hf) == 0) {
                    e = &m.global[k];
                    slotp = &m.gfound[k];
                    break;
                }
            }
        }
        if (!e) {
            gg_errf(err, "%s: unexpected tensor '%.200s' (not part of a %s checkpoint)", tfile(&m, t), t->name,
                    cfg->hf_class);
            return map_fail(&m, NULL, 0);
        }
        if (!required(&m, e->when)) {
            if (e->when == W_UNTIED) continue; /* tied: lm_head.weight is the embedding; dropped */
            const char *why = "";
            switch (e->when) {
            case W_ATTN_BIAS: case W_O_BIAS: why = " (the config declares no attention biases)"; break;
            case W_MLP_BIAS: why = " (the config declares no MLP biases)"; break;
            case W_F_ONE: why = " (the checkpoint also has ln_attn/ln_mlp norms)"; break;
            case W_F_TWO: why = " (ln_attn/ln_mlp need new_decoder_architecture)"; break;
            case W_F_SEQ: why = " (the config has parallel attention: no second norm)"; break;
            default: break;
            }
            gg_errf(err, "%s: unexpected tensor '%.200s'%s", tfile(&m, t), t->name, why);
            return map_fail(&m, NULL, 0);
        }
        if (check_tensor(&m, t, layer, e->slot)) return map_fail(&m, NULL, 0);
        *slotp = t;
    }

    /* 2. Every expected tensor present. */
    for (size_t k = 0; k < m.nglobal; k++) {
        if (required(&m, m.global[k].when) && !m.gfound[k]) {
            gg_errf(err, "%s: missing tensor '%s' (%s)", m.where, m.global[k].hf, SLOT_NAME[m.global[k].slot]);
            return map_fail(&m, NULL, 0);
        }
    }
    for (size_t L = 0; L < nl; L++) {
        for (size_t k = 0; k < m.nlayer; k++) {
            if (required(&m, m.layer[k].when) && !m.lfound[L * m.nlayer + k]) {
                char cname[96];
                int slot = m.layer[k].slot;
                if (slot == SL_QKV_W || slot == SL_QKV_B)
                    snprintf(cname, sizeof cname, "layers.%zu.attn.{q,k,v}.%s", L, slot == SL_QKV_W ? "weight" : "bias");
                else
                    canon_name(cname, sizeof cname, (int)L, slot);
                gg_errf(err, "%s: missing tensor '%s%zu.%s' (%s)", m.where, m.prefix, L, m.layer[k].hf, cname);
                return map_fail(&m, NULL, 0);
            }
        }
    }

    /* 3. Canonical tensors, in order. */
    size_t cap = 4 + nl * 20, n = 0;
    gg_canon_tensor *out = calloc(cap, sizeof *out);
    if (!out) {
        gg_errf(err, "out of memory");
        return map_fail(&m, NULL, 0);
    }
    const gg_st_tensor *gs[SL_COUNT] = {0};
    for (size_t k = 0; k < m.nglobal; k++)
        if (m.gfound[k] && required(&m, m.global[k].when)) gs[m.global[k].slot] = m.gfound[k];
    if (emit(&m, out, &n, -1, SL_EMBED, gs[SL_EMBED], -1)) return map_fail(&m, out, n);
    for (size_t L = 0; L < nl; L++) {
        const gg_st_tensor *ls[SL_COUNT] = {0};
        for (size_t k = 0; k < m.nlayer; k++)
            if (m.lfound[L * m.nlayer + k]) ls[m.layer[k].slot] = m.lfound[L * m.nlayer + k];
        static const int order[] = {SL_ATTN_NORM_W, SL_ATTN_NORM_B, SL_Q_W, SL_Q_B, SL_K_W, SL_K_B,
                                    SL_V_W, SL_V_B, SL_O_W, SL_O_B, SL_MLP_NORM_W, SL_MLP_NORM_B,
                                    SL_GATE_W, SL_GATE_B, SL_UP_W, SL_UP_B, SL_DOWN_W, SL_DOWN_B};
        for (size_t j = 0; j < sizeof order / sizeof order[0]; j++) {
            int s = order[j], split = -1;
            const gg_st_tensor *src = ls[s];
            if (m.falcon) {
                switch (s) {
                case SL_Q_W: src = ls[SL_QKV_W], split = 0; break;
                case SL_K_W: src = ls[SL_QKV_W], split = 1; break;
                case SL_V_W: src = ls[SL_QKV_W], split = 2; break;
                case SL_Q_B: src = ls[SL_QKV_B], split = 0; break;
                case SL_K_B: src = ls[SL_QKV_B], split = 1; break;
                case SL_V_B: src = ls[SL_QKV_B], split = 2; break;
                default: break;
                }
            }
            if (emit(&m, out, &n, (int)L, s, src, split)) return map_fail(&m, out, n);
        }
    }
    if (emit(&m, out, &n, -1, SL_FINAL_W, gs[SL_FINAL_W], -1) ||
        emit(&m, out, &n, -1, SL_FINAL_B, gs[SL_FINAL_B], -1) ||
        emit(&m, out, &n, -1, SL_LM_HEAD, gs[SL_LM_HEAD], -1))
        return map_fail(&m, out, n);
    free(m.lfound);
    *out_p = out;
    *n_p = n;
    return 0;
}

/* ---- metadata ----------------------------------------------------------- */

int gg_hf_config_to_meta(const gg_hf_config *c, gg_writer *w, gg_err *err) {
    static const char *const norms[] = {"rms", "rms1p", "layernorm"};
    static const char *const mlps[] = {"swiglu", "geglu_tanh", "gelu"};
    static const char *const ropes[] = {"default", "llama3", "linear"};
    if ((unsigned)c->norm > 2 || (unsigned)c->mlp > 2 || (unsigned)c->rope > 2)
        return gg_errf(err, "gg_hf_config_to_meta: invalid config (norm/mlp/rope kind out of range)");
    const char *norm = norms[c->norm], *mlp = mlps[c->mlp], *rope = ropes[c->rope];
    const struct {
        const char *key;
        int64_t v;
    } ints[] = {
        {"model.vocab_size", c->vocab_size},
        {"model.hidden_size", c->hidden_size},
        {"model.n_layers", c->n_layers},
        {"model.n_heads", c->n_heads},
        {"model.n_kv_heads", c->n_kv_heads},
        {"model.head_dim", c->head_dim},
        {"model.ffn_size", c->ffn_size},
        {"model.context_length", c->context_length},
        {"model.rope.original_context", c->rope_original_context},
        {"model.sliding_window", c->sliding_window},
        {"model.bos_id", c->bos_id},
        {"model.eos_id", c->eos_id},
    };
    const struct {
        const char *key;
        double v;
    } dbls[] = {
        {"model.norm_eps", c->norm_eps},
        {"model.embed_scale", c->embed_scale},
        {"model.rope.theta", c->rope_theta},
        {"model.rope.factor", c->rope_factor},
        {"model.rope.low_freq_factor", c->rope_low_freq_factor},
        {"model.rope.high_freq_factor", c->rope_high_freq_factor},
    };
    const struct {
        const char *key;
        int v;
    } bools[] = {
        {"model.parallel_attn", c->parallel_attn},
        {"model.tied_embeddings", c->tied_embeddings},
        {"model.attn_bias", c->attn_bias},
        {"model.mlp_bias", c->mlp_bias},
    };
    const struct {
        const char *key, *v;
    } strs[] = {
        {"general.architecture", c->arch},
        {"general.hf_class", c->hf_class},
        {"model.norm", norm},
        {"model.mlp", mlp},
        {"model.rope.type", rope},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (gg_writer_set_str(w, strs[i].key, strs[i].v, strlen(strs[i].v), err)) return -1;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (gg_writer_set_i64(w, ints[i].key, ints[i].v, err)) return -1;
    for (size_t i = 0; i < sizeof dbls / sizeof dbls[0]; i++)
        if (gg_writer_set_f64(w, dbls[i].key, dbls[i].v, err)) return -1;
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++)
        if (gg_writer_set_bool(w, bools[i].key, bools[i].v ? 1 : 0, err)) return -1;
    return 0;
}

/* ---- Falcon q/k/v row segments (public view of falcon_segs) -------------- */

int gg_falcon_qkv_segs(const gg_hf_config *cfg, int which, gg_row_seg **seg, size_t *nseg, gg_err *err) {
    *seg = NULL;
    *nseg = 0;
    if (which < 0 || which > 2)
        return gg_errf(err, "gg_falcon_qkv_segs: which must be 0 (q), 1 (k) or 2 (v), got %d", which);
    if (strcmp(cfg->arch, "falcon") != 0 || cfg->falcon_qkv == GG_FALCON_NONE)
        return gg_errf(err, "gg_falcon_qkv_segs: %s is not a Falcon config with a fused query_key_value",
                       cfg->hf_class[0] ? cfg->hf_class : "config");
    if (cfg->n_heads <= 0 || cfg->n_heads > MAX_HEADS || cfg->n_kv_heads <= 0 || cfg->n_kv_heads > MAX_HEADS ||
        cfg->n_heads % cfg->n_kv_heads != 0 || cfg->head_dim <= 0 || cfg->head_dim > MAX_SIZE)
        return gg_errf(err, "gg_falcon_qkv_segs: invalid config for %s (head counts out of range)", cfg->hf_class);
    gg_canon_tensor o;
    memset(&o, 0, sizeof o);
    if (falcon_segs(cfg, which, &o)) {
        free(o.seg);
        return gg_errf(err, "out of memory");
    }
    *seg = o.seg;
    *nseg = o.nseg;
    return 0;
}
