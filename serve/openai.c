/* openai.c — the OpenAI request shapes: parsing and checking a
 * /v1/completions or /v1/chat/completions body into scheduler requests
 * (gg_oa_parse), the models list, and the JSON helpers the other openai_*
 * files share (openai_internal.h). The per-token callback and the responses
 * are in openai_stream.c; the tokenizer and adapter endpoints in
 * openai_endpoints.c. See server.h. */
#define GG_SERVE_INTERNAL
#include "serve/server.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/chat.h"
#include "serve/openai_internal.h"

#define MAX_CHOICES 64
#define MAX_MESSAGES 1024

/* ---- small JSON helpers ---- */

json_t *oa_jreal(double x) {
    if (isnan(x)) return json_null();
    if (isinf(x)) return json_real(x < 0 ? -9999.0 : 9999.0);
    return json_real(x);
}

/* A UTF-8 JSON string of bytes that may not be valid (never: pieces are
 * whole characters; but be safe): invalid bytes become U+FFFD. */
json_t *oa_jstr(const char *s, size_t n) {
    if (gg_utf8_valid(s, n)) return json_stringn(s, n);
    gg_sbuf b = {0};
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) gg_sbuf_add(&b, s + i, 1);
        else gg_sbuf_adds(&b, "\xEF\xBF\xBD");
    }
    json_t *r = json_stringn(b.p ? b.p : "", b.n);
    gg_sbuf_free(&b);
    return r;
}

json_t *oa_jbytes(const char *s, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

char *oa_err(int *status, int code, const char *type, const char *param, const char *ecode, const char *fmt,
             ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *status = code;
    return gg_srv_error_json(msg, type, param, ecode);
}

char *oa_dump(json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* ---- models ---- */

int gg_srv_find_model(gg_srv *s, const char *name) {
    if (!name || !*name || strcmp(name, s->model_name) == 0) return -1;
    int h = -2;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < GG_SRV_MAX_ADAPTERS; i++)
        if (s->ad[i].used && strcmp(s->ad[i].name, name) == 0) {
            h = s->ad[i].handle;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    return h;
}

json_t *oa_model_obj(gg_srv *s, const char *id, const char *parent) {
    json_t *m = json_pack("{s:s, s:s, s:I, s:s}", "id", id, "object", "model", "created", (json_int_t)s->created,
                          "owned_by", "gg");
    if (parent) {
        json_object_set_new(m, "parent", json_string(parent));
        json_object_set_new(m, "root", json_string(parent));
    }
    return m;
}

char *gg_oa_models(gg_srv *s) {
    json_t *data = json_array();
    json_t *base = oa_model_obj(s, s->model_name, NULL);
    json_object_set_new(base, "max_model_len", json_integer(s->slot_ctx));
    json_array_append_new(data, base);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < GG_SRV_MAX_ADAPTERS; i++)
        if (s->ad[i].used) json_array_append_new(data, oa_model_obj(s, s->ad[i].name, s->model_name));
    pthread_mutex_unlock(&s->mu);
    return oa_dump(json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* ---- prompts ---- */

int oa_tokenize(gg_srv *s, const char *text, size_t n, int add_special, int32_t **ids, size_t *nids,
                    char **msg) {
    gg_err err;
    if (gg_tokenizer_encode(s->tok, text, n, add_special, ids, nids, &err)) {
        *msg = strdup(err.msg);
        return -1;
    }
    return 0;
}

/* A JSON array of token ids into ids (malloc'd). */
int oa_ids_of(gg_srv *s, json_t *a, int32_t **ids, size_t *n, const char **why) {
    size_t k = json_array_size(a);
    *ids = malloc((k ? k : 1) * sizeof **ids);
    if (!*ids) return *why = "out of memory", -1;
    for (size_t i = 0; i < k; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_integer(v)) return free(*ids), *why = "token ids must be integers", -1;
        json_int_t x = json_integer_value(v);
        if (x < 0 || x >= s->vocab) return free(*ids), *why = "a token id is outside the vocabulary", -1;
        (*ids)[i] = (int32_t)x;
    }
    *n = k;
    return 0;
}

static int all_ints(json_t *a) {
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) if (!json_is_integer(v)) return 0;
    return 1;
}

/* Text of a chat message's content: a string, or an array of parts of
 * which the {"type":"text","text":...} ones count. */
static char *content_text(json_t *c) {
    if (json_is_string(c)) return strdup(json_string_value(c));
    if (json_is_null(c)) return strdup("");
    if (!json_is_array(c)) return NULL;
    gg_sbuf b = {0};
    size_t i;
    json_t *p;
    gg_sbuf_adds(&b, "");
    json_array_foreach(c, i, p) {
        json_t *t = json_object_get(p, "type"), *x = json_object_get(p, "text");
        if (!json_is_string(t) || strcmp(json_string_value(t), "text") != 0 || !json_is_string(x)) {
            gg_sbuf_free(&b);
            return NULL;
        }
        gg_sbuf_adds(&b, json_string_value(x));
    }
    return b.p;
}

/* ---- jobs ---- */

void oa_job_free(gg_job *j) {
    for (int i = 0; i < j->n_choices; i++) {
        gg_choice *c = &j->ch[i];
        free(c->prompt);
        gg_detok_free(&c->dt);
        gg_stopper_free(&c->st);
        gg_sbuf_free(&c->text);
        free(c->error);
        if (c->lp) json_decref((json_t *)c->lp);
    }
    free(j->ch);
    free(j->model);
    gg_sbuf_free(&j->sse);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

void gg_job_release(gg_job *j) {
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (!left) oa_job_free(j);
}

void gg_job_cancel(gg_job *j) {
    uint64_t ids[MAX_CHOICES];
    int n = 0;
    pthread_mutex_lock(&j->mu);
    for (int i = 0; i < j->n_choices; i++)
        if (j->ch[i].submitted && !j->ch[i].done) ids[n++] = j->ch[i].sched_id;
    pthread_mutex_unlock(&j->mu);
    for (int i = 0; i < n; i++) gg_sched_cancel(j->srv->sched, ids[i]);
}

static int64_t get_int(json_t *o, const char *k, int *present, int *bad) {
    json_t *v = json_object_get(o, k);
    *present = v && !json_is_null(v);
    if (!*present) return 0;
    if (!json_is_integer(v)) {
        *bad = 1;
        return 0;
    }
    return (int64_t)json_integer_value(v);
}

static double get_num(json_t *o, const char *k, double def, int *bad) {
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return def;
    if (!json_is_number(v)) {
        *bad = 1;
        return def;
    }
    return json_number_value(v);
}

int oa_get_bool(json_t *o, const char *k, int def, int *bad) {
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return def;
    if (!json_is_boolean(v)) {
        *bad = 1;
        return def;
    }
    return json_is_true(v);
}

/* The chat prompt text of messages (malloc'd), or NULL with *errjson. */
static char *render_chat(gg_srv *s, json_t *msgs, int *status, char **errjson) {
    size_t n = json_array_size(msgs);
    if (!json_is_array(msgs) || n == 0) return *errjson = BAD("messages", "'messages' must be a non-empty array"), NULL;
    if (n > MAX_MESSAGES) return *errjson = BAD("messages", "at most %d messages", MAX_MESSAGES), NULL;
    if (!s->chat_template)
        return *errjson = BAD("messages", "the model has no chat template (start ggserve with --chat-template)"), NULL;
    gg_chat_msg *m = calloc(n, sizeof *m);
    char **texts = calloc(n, sizeof *texts);
    char *out = NULL;
    *errjson = NULL;
    if (!m || !texts) goto done;
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(msgs, i);
        json_t *r = json_object_get(o, "role");
        if (!json_is_object(o) || !json_is_string(r)) {
            *errjson = BAD("messages", "messages[%zu] needs a string 'role'", i);
            goto done;
        }
        texts[i] = content_text(json_object_get(o, "content"));
        if (!texts[i]) {
            *errjson = BAD("messages", "messages[%zu].content must be a string or an array of text parts", i);
            goto done;
        }
        m[i] = (gg_chat_msg){json_string_value(r), texts[i]};
    }
    gg_chat_opts co = {.add_generation_prompt = 1, .bos_token = gg_tokenizer_bos_token(s->tok),
                       .eos_token = gg_tokenizer_eos_token(s->tok)};
    size_t len;
    gg_err err;
    if (gg_chat_render(s->chat_template, m, n, &co, &out, &len, &err)) {
        *errjson = BAD("messages", "chat template: %s", err.msg);
        out = NULL;
    }
done:
    if (texts)
        for (size_t i = 0; i < n; i++) free(texts[i]);
    free(texts);
    free(m);
    if (!out && !*errjson) *errjson = oa_err(status, 500, "server_error", NULL, NULL, "out of memory");
    return out;
}

static gg_job *job_new(gg_srv *s, int chat, int n_choices) {
    gg_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->ch = calloc((size_t)n_choices, sizeof *j->ch);
    if (!j->ch) {
        free(j);
        return NULL;
    }
    pthread_mutex_init(&j->mu, NULL);
    j->refs = 1;
    j->srv = s;
    j->chat = chat;
    j->fd = -1;
    j->n_choices = n_choices;
    for (int i = 0; i < n_choices; i++) {
        j->ch[i].job = j;
        j->ch[i].index = i;
        j->ch[i].prev_id = -1;
    }
    return j;
}

/* Add one prompt (ids, taken) as choice i. */
static int set_prompt(gg_job *j, int i, int32_t *ids, size_t n) {
    gg_choice *c = &j->ch[i];
    c->prompt = ids;
    c->n_prompt = n;
    c->prev_id = j->echo ? -1 : ids[n - 1]; /* the context of the first reported token */
    /* Echo: the prompt's tokens are reported and give text; else they
     * are only the detokeniser's context. */
    return gg_detok_init(&c->dt, j->srv->tok, ids, j->echo ? 0 : n);
}

gg_job *gg_oa_parse(gg_srv *s, int chat, const char *body, size_t len, int *status, char **errjson) {
    json_error_t je;
    gg_job *j = NULL;
    *errjson = NULL;
    json_t *o = json_loadb(body, len, 0, &je);
    if (!o) {
        *errjson = BAD(NULL, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(o)) {
        *errjson = BAD(NULL, "the request body must be a JSON object");
        goto fail;
    }
    int bad = 0, present;
    /* model */
    json_t *mv = json_object_get(o, "model");
    if (mv && !json_is_null(mv) && !json_is_string(mv)) {
        *errjson = BAD("model", "'model' must be a string");
        goto fail;
    }
    const char *model = json_is_string(mv) ? json_string_value(mv) : NULL;
    int adapter = gg_srv_find_model(s, model);
    if (adapter == -2) {
        *errjson = oa_err(status, 404, "invalid_request_error", "model", "model_not_found",
                           "The model '%s' does not exist (see GET /v1/models)", model);
        goto fail;
    }
    /* n */
    int64_t n = get_int(o, "n", &present, &bad);
    if (bad || (present && n != 1)) {
        *errjson = BAD("n", "only n = 1 is supported");
        goto fail;
    }
    int64_t bo = get_int(o, "best_of", &present, &bad);
    if (bad || (present && bo != 1)) {
        *errjson = BAD("best_of", "only best_of = 1 is supported");
        goto fail;
    }
    /* prompts */
    int32_t *pids[MAX_CHOICES];
    size_t plen[MAX_CHOICES];
    int np = 0;
    int echo = chat ? 0 : oa_get_bool(o, "echo", 0, &bad);
    if (bad) {
        *errjson = BAD("echo", "'echo' must be a boolean");
        goto fail;
    }
    if (chat) {
        char *text = render_chat(s, json_object_get(o, "messages"), status, errjson);
        if (!text) goto fail;
        char *msg = NULL;
        int rc = oa_tokenize(s, text, strlen(text), 0, &pids[0], &plen[0], &msg);
        free(text);
        if (rc) {
            *errjson = BAD("messages", "%s", msg ? msg : "tokenizer failed");
            free(msg);
            goto fail;
        }
        np = 1;
    } else {
        json_t *p = json_object_get(o, "prompt");
        const char *why = NULL;
        if (json_is_string(p)) {
            char *msg = NULL;
            if (oa_tokenize(s, json_string_value(p), json_string_length(p), 1, &pids[0], &plen[0], &msg)) {
                *errjson = BAD("prompt", "%s", msg ? msg : "tokenizer failed");
                free(msg);
                goto fail;
            }
            np = 1;
        } else if (json_is_array(p) && json_array_size(p) > 0 && all_ints(p)) {
            if (oa_ids_of(s, p, &pids[0], &plen[0], &why)) {
                *errjson = BAD("prompt", "%s", why);
                goto fail;
            }
            np = 1;
        } else if (json_is_array(p) && json_array_size(p) > 0) {
            if (json_array_size(p) > MAX_CHOICES) {
                *errjson = BAD("prompt", "at most %d prompts in one request", MAX_CHOICES);
                goto fail;
            }
            size_t i;
            json_t *e;
            json_array_foreach(p, i, e) {
                char *msg = NULL;
                int rc = 0;
                if (json_is_string(e)) rc = oa_tokenize(s, json_string_value(e), json_string_length(e), 1, &pids[np],
                                                     &plen[np], &msg);
                else if (json_is_array(e) && all_ints(e)) rc = oa_ids_of(s, e, &pids[np], &plen[np], &why);
                else {
                    why = "'prompt' must be a string, a list of strings, a list of token ids or a list of lists of token ids";
                    rc = -1;
                }
                if (rc) {
                    *errjson = BAD("prompt", "prompt[%zu]: %s", i, msg ? msg : why ? why : "tokenizer failed");
                    free(msg);
                    goto fail_prompts;
                }
                np++;
            }
        } else {
            *errjson = BAD("prompt", "'prompt' must be a string, a list of strings, a list of token ids or a list "
                                     "of lists of token ids (non-empty)");
            goto fail;
        }
    }
    for (int i = 0; i < np; i++)
        if (plen[i] == 0) {
            *errjson = BAD(chat ? "messages" : "prompt", "the prompt has no tokens");
            goto fail_prompts;
        }
    j = job_new(s, chat, np);
    if (!j) {
        *errjson = oa_err(status, 500, "server_error", NULL, NULL, "out of memory");
        goto fail_prompts;
    }
    j->echo = echo;
    j->adapter = adapter;
    j->model = strdup(model && *model ? model : s->model_name);
    for (int i = 0; i < np; i++) {
        if (set_prompt(j, i, pids[i], plen[i])) {
            for (int k = i + 1; k < np; k++) free(pids[k]);
            np = 0;
            *errjson = oa_err(status, 500, "server_error", NULL, NULL, "out of memory");
            goto fail;
        }
    }
    np = 0; /* owned by j now */

    /* stream */
    j->stream = oa_get_bool(o, "stream", 0, &bad);
    if (bad) {
        *errjson = BAD("stream", "'stream' must be a boolean");
        goto fail;
    }
    json_t *so = json_object_get(o, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so) || (j->include_usage = oa_get_bool(so, "include_usage", 0, &bad), bad)) {
            *errjson = BAD("stream_options", "'stream_options' must be an object with a boolean include_usage");
            goto fail;
        }
    }
    /* logprobs */
    if (chat) {
        j->logprobs = oa_get_bool(o, "logprobs", 0, &bad);
        int64_t t = get_int(o, "top_logprobs", &present, &bad);
        if (bad || (present && (t < 0 || t > GG_SCHED_MAX_TOP))) {
            *errjson = BAD("logprobs", "'logprobs' must be a boolean and 'top_logprobs' an integer from 0 to %d",
                           GG_SCHED_MAX_TOP);
            goto fail;
        }
        if (present && t > 0 && !j->logprobs) {
            *errjson = BAD("top_logprobs", "'top_logprobs' needs 'logprobs': true");
            goto fail;
        }
        j->n_top = (int)t;
    } else {
        json_t *lv = json_object_get(o, "logprobs");
        if (lv && !json_is_null(lv) && !json_is_false(lv)) {
            if (json_is_true(lv)) j->n_top = 0;
            else if (json_is_integer(lv) && json_integer_value(lv) >= 0 && json_integer_value(lv) <= GG_SCHED_MAX_TOP)
                j->n_top = (int)json_integer_value(lv);
            else {
                *errjson = BAD("logprobs", "'logprobs' must be an integer from 0 to %d", GG_SCHED_MAX_TOP);
                goto fail;
            }
            j->logprobs = 1;
        }
    }
    /* sampling */
    gg_sample_params_default(&j->sp);
    j->sp.temp = (float)get_num(o, "temperature", 1.0, &bad);
    j->sp.top_p = (float)get_num(o, "top_p", 1.0, &bad);
    j->sp.min_p = (float)get_num(o, "min_p", 0.0, &bad);
    j->sp.repeat_penalty = (float)get_num(o, "repetition_penalty", 1.0, &bad);
    double fp = get_num(o, "frequency_penalty", 0, &bad), pp = get_num(o, "presence_penalty", 0, &bad);
    int64_t tk = get_int(o, "top_k", &present, &bad);
    j->sp.top_k = present ? (int)(tk < 0 ? 0 : tk > 1 << 30 ? 1 << 30 : tk) : 0;
    if (bad) {
        *errjson = BAD(NULL, "temperature, top_p, min_p, repetition_penalty, frequency_penalty and presence_penalty "
                             "must be numbers, top_k an integer");
        goto fail;
    }
    if (!(j->sp.temp >= 0 && j->sp.temp <= 2)) {
        *errjson = BAD("temperature", "'temperature' must be from 0 to 2");
        goto fail;
    }
    if (!(j->sp.top_p > 0 && j->sp.top_p <= 1)) {
        *errjson = BAD("top_p", "'top_p' must be greater than 0 and at most 1");
        goto fail;
    }
    if (!(j->sp.min_p >= 0 && j->sp.min_p <= 1)) {
        *errjson = BAD("min_p", "'min_p' must be from 0 to 1");
        goto fail;
    }
    if (!(j->sp.repeat_penalty > 0 && j->sp.repeat_penalty <= 100)) {
        *errjson = BAD("repetition_penalty", "'repetition_penalty' must be greater than 0");
        goto fail;
    }
    if (!(fp >= -2 && fp <= 2) || !(pp >= -2 && pp <= 2)) {
        *errjson = BAD("frequency_penalty", "'frequency_penalty' and 'presence_penalty' must be from -2 to 2");
        goto fail;
    }
    j->sp.freq_penalty = (float)fp;
    j->sp.presence_penalty = (float)pp;
    json_t *sv = json_object_get(o, "seed");
    if (sv && !json_is_null(sv)) {
        if (!json_is_integer(sv)) {
            *errjson = BAD("seed", "'seed' must be an integer");
            goto fail;
        }
        j->sp.seed = (uint64_t)json_integer_value(sv);
    } else {
        pthread_mutex_lock(&s->mu);
        uint64_t k = ++s->next_id;
        pthread_mutex_unlock(&s->mu);
        j->sp.seed = (uint64_t)time(NULL) ^ (k * 0x9E3779B97F4A7C15ull);
    }
    j->ignore_eos = oa_get_bool(o, "ignore_eos", 0, &bad);
    if (bad) {
        *errjson = BAD("ignore_eos", "'ignore_eos' must be a boolean");
        goto fail;
    }
    /* stop */
    json_t *st = json_object_get(o, "stop");
    if (st && !json_is_null(st)) {
        json_t *one = json_is_string(st) ? st : NULL;
        size_t k = one ? 1 : json_array_size(st);
        if ((!one && !json_is_array(st)) || k > GG_MAX_STOPS) {
            *errjson = BAD("stop", "'stop' must be a string or a list of at most %d strings", GG_MAX_STOPS);
            goto fail;
        }
        for (size_t i = 0; i < k; i++) {
            json_t *e = one ? one : json_array_get(st, i);
            if (!json_is_string(e) || json_string_length(e) == 0 || json_string_length(e) > 256 ||
                strlen(json_string_value(e)) != json_string_length(e)) {
                *errjson = BAD("stop", "stop strings must be non-empty strings of at most 256 bytes");
                goto fail;
            }
            for (int c = 0; c < j->n_choices; c++)
                if (gg_stopper_add(&j->ch[c].st, json_string_value(e))) {
                    *errjson = oa_err(status, 500, "server_error", NULL, NULL, "out of memory");
                    goto fail;
                }
        }
    }
    /* max_tokens and the context */
    int64_t mt = get_int(o, "max_tokens", &present, &bad);
    if (!present && chat) mt = get_int(o, "max_completion_tokens", &present, &bad);
    if (bad || (present && mt < 0)) {
        *errjson = BAD("max_tokens", "'max_tokens' must be a non-negative integer");
        goto fail;
    }
    size_t longest = 0;
    for (int i = 0; i < j->n_choices; i++)
        if (j->ch[i].n_prompt > longest) longest = j->ch[i].n_prompt;
    if ((int64_t)longest >= s->slot_ctx + (present && mt == 0)) {
        *errjson = oa_err(status, 400, "invalid_request_error", chat ? "messages" : "prompt",
                           "context_length_exceeded",
                           "This model's context is %lld tokens per request; the prompt has %zu tokens",
                           (long long)s->slot_ctx, longest);
        goto fail;
    }
    if (!present) {
        mt = chat ? s->slot_ctx - (int64_t)longest : s->o.max_tokens_default;
        if ((int64_t)longest + mt > s->slot_ctx) mt = s->slot_ctx - (int64_t)longest;
    } else if ((int64_t)longest + mt > s->slot_ctx) {
        *errjson = oa_err(status, 400, "invalid_request_error", "max_tokens", "context_length_exceeded",
                           "This model's context is %lld tokens per request; you requested %lld tokens (%zu in the "
                           "prompt, %lld for the completion)",
                           (long long)s->slot_ctx, (long long)(longest + (size_t)mt), longest, (long long)mt);
        goto fail;
    }
    if (mt == 0 && !j->echo) {
        *errjson = BAD("max_tokens", "'max_tokens': 0 needs 'echo': true");
        goto fail;
    }
    j->max_tokens = mt;
    /* the id */
    pthread_mutex_lock(&s->mu);
    uint64_t k = ++s->next_id;
    pthread_mutex_unlock(&s->mu);
    snprintf(j->id, sizeof j->id, "%s-%llx%06llx", chat ? "chatcmpl" : "cmpl", (unsigned long long)time(NULL),
             (unsigned long long)(k & 0xFFFFFF));
    json_decref(o);
    return j;
fail_prompts:
    for (int i = 0; i < np; i++) free(pids[i]);
fail:
    json_decref(o);
    if (j) oa_job_free(j);
    if (!*errjson) *errjson = oa_err(status, 500, "server_error", NULL, NULL, "out of memory");
    return NULL;
}
