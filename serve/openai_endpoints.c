/* openai_endpoints.c — the small JSON endpoints besides completions:
 * tokenize, detokenize, tokenizer_info, and adding or removing adapters at
 * run time. See server.h. */
#define GG_SERVE_INTERNAL
#include "serve/server.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/openai_internal.h"

/* ---- tokenizer endpoints ---- */

char *gg_oa_tokenize(gg_srv *s, const char *body, size_t len, int *status) {
    json_error_t je;
    json_t *o = json_loadb(body, len, 0, &je);
    if (!o) return BAD(NULL, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    json_t *p = json_object_get(o, "prompt");
    if (!p) p = json_object_get(o, "content");
    if (!p) p = json_object_get(o, "text");
    int bad = 0;
    int add = json_is_object(o) ? oa_get_bool(o, "add_special_tokens", 1, &bad) : 1;
    if (!json_is_string(p) || bad) {
        json_decref(o);
        return BAD("prompt", "expected {\"prompt\": STRING, \"add_special_tokens\": BOOL}");
    }
    int32_t *ids;
    size_t n;
    char *msg = NULL;
    if (oa_tokenize(s, json_string_value(p), json_string_length(p), add, &ids, &n, &msg)) {
        json_decref(o);
        char *e = BAD("prompt", "%s", msg ? msg : "tokenizer failed");
        free(msg);
        return e;
    }
    json_decref(o);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    free(ids);
    *status = 200;
    return oa_dump(json_pack("{s:o, s:I, s:I}", "tokens", a, "count", (json_int_t)n, "max_model_len",
                          (json_int_t)s->slot_ctx));
}

char *gg_oa_detokenize(gg_srv *s, const char *body, size_t len, int *status) {
    json_error_t je;
    json_t *o = json_loadb(body, len, 0, &je);
    if (!o) return BAD(NULL, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    json_t *t = json_object_get(o, "tokens");
    int32_t *ids = NULL;
    size_t n = 0;
    const char *why = "expected {\"tokens\": [ID, ...]}";
    if (!json_is_array(t) || oa_ids_of(s, t, &ids, &n, &why)) {
        json_decref(o);
        return BAD("tokens", "%s", why);
    }
    json_decref(o);
    char *text;
    size_t tl;
    gg_err err;
    int rc = gg_tokenizer_decode(s->tok, ids, n, 0, &text, &tl, &err);
    free(ids);
    if (rc) return BAD("tokens", "%s", err.msg);
    json_t *r = json_pack("{s:o}", "prompt", oa_jstr(text, tl));
    free(text);
    *status = 200;
    return oa_dump(r);
}

static json_t *str_or_null(const char *s) { return s ? oa_jstr(s, strlen(s)) : json_null(); }

char *gg_oa_tokenizer_info(gg_srv *s) {
    return oa_dump(json_pack("{s:o, s:o, s:o, s:o, s:I, s:I, s:s}", "eos_token", str_or_null(gg_tokenizer_eos_token(s->tok)),
                          "bos_token", str_or_null(gg_tokenizer_bos_token(s->tok)), "pad_token", json_null(),
                          "chat_template", str_or_null(s->chat_template), "model_max_length", (json_int_t)s->slot_ctx,
                          "vocab_size", (json_int_t)gg_tokenizer_vocab_size(s->tok), "tokenizer_class",
                          "PreTrainedTokenizerFast"));
}

/* ---- adapters at run time ---- */

char *gg_oa_adapter_post(gg_srv *s, const char *body, size_t len, int *status) {
    json_error_t je;
    json_t *o = json_loadb(body, len, 0, &je);
    if (!o) return BAD(NULL, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    json_t *nv = json_object_get(o, "name"), *pv = json_object_get(o, "path"), *sv = json_object_get(o, "scale");
    char *r = NULL;
    if (!json_is_string(nv) || !json_is_string(pv) || (sv && !json_is_number(sv))) {
        r = BAD(NULL, "expected {\"name\": STRING, \"path\": STRING (inside --adapter-dir), \"scale\": NUMBER}");
        goto out;
    }
    const char *name = json_string_value(nv);
    double scale = sv ? json_number_value(sv) : 1.0;
    if (!gg_srv_name_ok(name) || strcmp(name, s->model_name) == 0) {
        r = BAD("name", "adapter names are 1 to 64 of A-Z a-z 0-9 . _ - (not starting with '.') and not the base's");
        goto out;
    }
    if (!(scale >= -1e6 && scale <= 1e6)) {
        r = BAD("scale", "'scale' out of range");
        goto out;
    }
    if (!s->adapter_dir) {
        r = oa_err(status, 403, "permission_error", "path", NULL,
                    "loading adapters at run time is off: start ggserve with --adapter-dir DIR");
        goto out;
    }
    char *full;
    gg_err err;
    if (strlen(json_string_value(pv)) != json_string_length(pv) ||
        gg_srv_confine(s->adapter_dir, json_string_value(pv), &full, &err)) {
        r = BAD("path", "%s", strlen(json_string_value(pv)) != json_string_length(pv) ? "NUL in path" : err.msg);
        goto out;
    }
    if (gg_srv_find_model(s, name) != -2) {
        free(full);
        r = oa_err(status, 409, "invalid_request_error", "name", "model_exists", "the model '%s' already exists",
                    name);
        goto out;
    }
    if (gg_srv_adapter_load(s, name, full, (float)scale, &err)) {
        free(full);
        r = BAD("path", "%s", err.msg);
        goto out;
    }
    free(full);
    *status = 200;
    r = oa_dump(oa_model_obj(s, name, s->model_name));
out:
    json_decref(o);
    return r;
}

char *gg_oa_adapter_delete(gg_srv *s, const char *name, int *status) {
    int handle = -1;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < GG_SRV_MAX_ADAPTERS; i++)
        if (s->ad[i].used && strcmp(s->ad[i].name, name) == 0) {
            handle = s->ad[i].handle;
            s->ad[i].used = 0;
            free(s->ad[i].path);
            s->ad[i].path = NULL;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    if (handle < 0)
        return oa_err(status, 404, "invalid_request_error", "model", "model_not_found", "no adapter named '%s'",
                       name);
    gg_err err;
    if (gg_sched_adapter_remove(s->sched, handle, &err))
        return oa_err(status, 500, "server_error", NULL, NULL, "%s", err.msg);
    *status = 200;
    return oa_dump(json_pack("{s:s, s:s, s:b}", "id", name, "object", "model", "deleted", 1));
}
