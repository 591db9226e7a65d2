/* openai.c — the OpenAI request and response shapes: parsing and checking
 * a /v1/completions or /v1/chat/completions body into scheduler requests,
 * the per-token callback (text with stop strings and whole characters,
 * logprobs with text_offset, SSE chunks), the final responses, and the
 * small JSON endpoints (models, tokenize, detokenize, tokenizer_info,
 * adapters). See server.h. */
#define GG_SERVE_INTERNAL
#include "serve/server.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/chat.h"

#define MAX_CHOICES 64
#define MAX_MESSAGES 1024

/* ---- small JSON helpers ---- */

static json_t *jreal(double x) {
    if (isnan(x)) return json_null();
    if (isinf(x)) return json_real(x < 0 ? -9999.0 : 9999.0);
    return json_real(x);
}

/* A UTF-8 JSON string of bytes that may not be valid (never: pieces are
 * whole characters; but be safe): invalid bytes become U+FFFD. */
static json_t *jstr(const char *s, size_t n) {
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

static json_t *jbytes(const char *s, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

static char *err_out(int *status, int code, const char *type, const char *param, const char *ecode,
                     const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static char *err_out(int *status, int code, const char *type, const char *param, const char *ecode,
                     const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *status = code;
    return gg_srv_error_json(msg, type, param, ecode);
}
#define BAD(param, ...) err_out(status, 400, "invalid_request_error", param, NULL, __VA_ARGS__)

static char *dump(json_t *o) {
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

static json_t *model_obj(gg_srv *s, const char *id, const char *parent) {
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
    json_t *base = model_obj(s, s->model_name, NULL);
    json_object_set_new(base, "max_model_len", json_integer(s->slot_ctx));
    json_array_append_new(data, base);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < GG_SRV_MAX_ADAPTERS; i++)
        if (s->ad[i].used) json_array_append_new(data, model_obj(s, s->ad[i].name, s->model_name));
    pthread_mutex_unlock(&s->mu);
    return dump(json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* ---- prompts ---- */

static int tokenize(gg_srv *s, const char *text, size_t n, int add_special, int32_t **ids, size_t *nids,
                    char **msg) {
    gg_err err;
    if (gg_tokenizer_encode(s->tok, text, n, add_special, ids, nids, &err)) {
        *msg = strdup(err.msg);
        return -1;
    }
    return 0;
}

/* A JSON array of token ids into ids (malloc'd). */
static int ids_of(gg_srv *s, json_t *a, int32_t **ids, size_t *n, const char **why) {
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

static void job_free(gg_job *j) {
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
    if (!left) job_free(j);
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

static int get_bool(json_t *o, const char *k, int def, int *bad) {
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
    if (!out && !*errjson) *errjson = err_out(status, 500, "server_error", NULL, NULL, "out of memory");
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
        *errjson = err_out(status, 404, "invalid_request_error", "model", "model_not_found",
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
    int echo = chat ? 0 : get_bool(o, "echo", 0, &bad);
    if (bad) {
        *errjson = BAD("echo", "'echo' must be a boolean");
        goto fail;
    }
    if (chat) {
        char *text = render_chat(s, json_object_get(o, "messages"), status, errjson);
        if (!text) goto fail;
        char *msg = NULL;
        int rc = tokenize(s, text, strlen(text), 0, &pids[0], &plen[0], &msg);
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
            if (tokenize(s, json_string_value(p), json_string_length(p), 1, &pids[0], &plen[0], &msg)) {
                *errjson = BAD("prompt", "%s", msg ? msg : "tokenizer failed");
                free(msg);
                goto fail;
            }
            np = 1;
        } else if (json_is_array(p) && json_array_size(p) > 0 && all_ints(p)) {
            if (ids_of(s, p, &pids[0], &plen[0], &why)) {
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
                if (json_is_string(e)) rc = tokenize(s, json_string_value(e), json_string_length(e), 1, &pids[np],
                                                     &plen[np], &msg);
                else if (json_is_array(e) && all_ints(e)) rc = ids_of(s, e, &pids[np], &plen[np], &why);
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
        *errjson = err_out(status, 500, "server_error", NULL, NULL, "out of memory");
        goto fail_prompts;
    }
    j->echo = echo;
    j->adapter = adapter;
    j->model = strdup(model && *model ? model : s->model_name);
    for (int i = 0; i < np; i++) {
        if (set_prompt(j, i, pids[i], plen[i])) {
            for (int k = i + 1; k < np; k++) free(pids[k]);
            np = 0;
            *errjson = err_out(status, 500, "server_error", NULL, NULL, "out of memory");
            goto fail;
        }
    }
    np = 0; /* owned by j now */

    /* stream */
    j->stream = get_bool(o, "stream", 0, &bad);
    if (bad) {
        *errjson = BAD("stream", "'stream' must be a boolean");
        goto fail;
    }
    json_t *so = json_object_get(o, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so) || (j->include_usage = get_bool(so, "include_usage", 0, &bad), bad)) {
            *errjson = BAD("stream_options", "'stream_options' must be an object with a boolean include_usage");
            goto fail;
        }
    }
    /* logprobs */
    if (chat) {
        j->logprobs = get_bool(o, "logprobs", 0, &bad);
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
    j->ignore_eos = get_bool(o, "ignore_eos", 0, &bad);
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
                    *errjson = err_out(status, 500, "server_error", NULL, NULL, "out of memory");
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
        *errjson = err_out(status, 400, "invalid_request_error", chat ? "messages" : "prompt",
                           "context_length_exceeded",
                           "This model's context is %lld tokens per request; the prompt has %zu tokens",
                           (long long)s->slot_ctx, longest);
        goto fail;
    }
    if (!present) {
        mt = chat ? s->slot_ctx - (int64_t)longest : s->o.max_tokens_default;
        if ((int64_t)longest + mt > s->slot_ctx) mt = s->slot_ctx - (int64_t)longest;
    } else if ((int64_t)longest + mt > s->slot_ctx) {
        *errjson = err_out(status, 400, "invalid_request_error", "max_tokens", "context_length_exceeded",
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
    if (j) job_free(j);
    if (!*errjson) *errjson = err_out(status, 500, "server_error", NULL, NULL, "out of memory");
    return NULL;
}

/* ---- per-token events ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static json_t *lp_new(const gg_job *j) {
    if (j->chat) return json_pack("{s:[]}", "content");
    return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

static void lp_add(gg_job *j, gg_choice *c, json_t *lp, const gg_sched_event *ev, const char *piece, size_t plen,
                   size_t offset) {
    const gg_tokenizer *tok = j->srv->tok;
    int ntop = ev->n_top < j->n_top ? ev->n_top : j->n_top;
    if (j->chat) {
        json_t *top = json_array();
        for (int i = 0; i < ntop; i++) {
            char *k = gg_detok_piece(tok, c->prev_id, ev->top_ids[i]);
            if (!k) continue;
            json_array_append_new(top, json_pack("{s:o, s:o, s:o}", "token", jstr(k, strlen(k)), "logprob",
                                                 jreal(ev->top_logprobs[i]), "bytes", jbytes(k, strlen(k))));
            free(k);
        }
        json_array_append_new(json_object_get(lp, "content"),
                              json_pack("{s:o, s:o, s:o, s:o}", "token", jstr(piece, plen), "logprob",
                                        jreal(ev->logprob), "bytes", jbytes(piece, plen), "top_logprobs", top));
        return;
    }
    json_array_append_new(json_object_get(lp, "tokens"), jstr(piece, plen));
    json_array_append_new(json_object_get(lp, "token_logprobs"), jreal(ev->logprob));
    json_array_append_new(json_object_get(lp, "text_offset"), json_integer((json_int_t)offset));
    json_t *top = json_null();
    if (ev->n_top > 0 && j->n_top > 0) {
        top = json_object();
        for (int i = 0; i < ntop; i++) {
            char *k = gg_detok_piece(tok, c->prev_id, ev->top_ids[i]);
            if (!k) continue;
            if (gg_utf8_valid(k, strlen(k)) && !json_object_get(top, k))
                json_object_set_new(top, k, jreal(ev->top_logprobs[i]));
            free(k);
        }
    }
    json_array_append_new(json_object_get(lp, "top_logprobs"), top);
}

static void sse_put(gg_job *j, json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) return;
    gg_sbuf_adds(&j->sse, "data: ");
    gg_sbuf_adds(&j->sse, s);
    gg_sbuf_adds(&j->sse, "\n\n");
    free(s);
}

static json_t *chunk_head(gg_job *j) {
    return json_pack("{s:s, s:s, s:I, s:s}", "id", j->id, "object", j->chat ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)time(NULL), "model", j->model);
}

/* One SSE chunk for choice c: text (may be empty), lp (stolen, may be
 * NULL), finish (NULL: none), role (chat: the opening delta). */
static void sse_chunk(gg_job *j, gg_choice *c, const char *text, size_t n, json_t *lp, const char *finish, int role) {
    json_t *ch = json_pack("{s:i}", "index", c->index);
    if (j->chat) {
        json_t *delta = json_object();
        if (role) {
            json_object_set_new(delta, "role", json_string("assistant"));
            json_object_set_new(delta, "content", json_string(""));
        } else if (!finish) {
            json_object_set_new(delta, "content", jstr(text ? text : "", n));
        }
        json_object_set_new(ch, "delta", delta);
    } else {
        json_object_set_new(ch, "text", jstr(text ? text : "", n));
    }
    json_object_set_new(ch, "logprobs", lp ? lp : json_null());
    json_object_set_new(ch, "finish_reason", finish ? json_string(finish) : json_null());
    json_t *o = chunk_head(j);
    json_object_set_new(o, "choices", json_pack("[o]", ch));
    sse_put(j, o);
}

static json_t *usage(gg_job *j) {
    int64_t p = 0, g = 0;
    for (int i = 0; i < j->n_choices; i++) {
        p += (int64_t)j->ch[i].n_prompt;
        g += j->ch[i].n_gen;
    }
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)p, "completion_tokens", (json_int_t)g,
                     "total_tokens", (json_int_t)(p + g));
}

static const char *finish_name(gg_finish f) {
    switch (f) {
    case GG_FINISH_LENGTH: return "length";
    case GG_FINISH_STOP: return "stop";
    case GG_FINISH_CANCELLED: return "cancelled";
    default: return "error";
    }
}

static int on_event(void *user, const gg_sched_event *ev) {
    gg_choice *c = user;
    gg_job *j = c->job;
    gg_srv *s = j->srv;
    int stop = 0, final = ev->finish != GG_FINISH_NONE, gen = 0;
    double t = now_s();
    gg_sbuf emit = {0};
    json_t *lp_delta = NULL;
    pthread_mutex_lock(&j->mu);
    if (j->stream && j->chat && c->n_events == 0) sse_chunk(j, c, NULL, 0, NULL, NULL, 1);
    c->n_events++;
    if (ev->id >= 0) {
        int eos = !ev->is_prompt && !j->ignore_eos && (ev->id == s->eos[0] || ev->id == s->eos[1]);
        if (!ev->is_prompt) {
            c->n_gen++;
            gen = 1;
            if (j->t_first == 0) j->t_first = t;
        }
        if (!eos && !c->st.hit && !c->error) {
            char *add;
            size_t alen;
            gg_err err;
            if (gg_detok_push(&c->dt, ev->id, &add, &alen, &err)) {
                c->error = strdup(err.msg);
                stop = 1;
            } else {
                size_t off = c->text_bytes;
                c->text_bytes += alen;
                if (j->logprobs) {
                    json_t *target = j->stream ? (lp_delta = lp_new(j)) : (c->lp ? c->lp : (c->lp = lp_new(j)));
                    lp_add(j, c, target, ev, add, alen, off);
                }
                if (ev->is_prompt) gg_sbuf_add(&emit, add, alen);
                else if (gg_stopper_feed(&c->st, add, alen, 0, &emit) == 0 && c->st.hit) stop = 1;
                free(add);
            }
        } else if (eos && !c->st.hit && !c->error) {
            /* The scheduler runs with ignore_eos and the end-of-sequence
             * token ends the request here: it adds no text but is reported
             * (usage, and its place in the logprobs, which
             * lm-evaluation-harness reads by position). */
            if (j->logprobs) {
                json_t *target = j->stream ? (lp_delta = lp_new(j)) : (c->lp ? c->lp : (c->lp = lp_new(j)));
                lp_add(j, c, target, ev, "", 0, c->text_bytes);
            }
            c->finish = "stop";
            stop = 1;
        }
        c->prev_id = ev->id;
    }
    if (final && !c->done) {
        if (!c->st.hit && !c->error && (ev->finish == GG_FINISH_STOP || ev->finish == GG_FINISH_LENGTH))
            gg_stopper_feed(&c->st, "", 0, 1, &emit);
        c->finish = c->st.hit || c->finish ? "stop" : finish_name(ev->finish);
        if (ev->finish == GG_FINISH_ERROR && !c->error) c->error = strdup(ev->error ? ev->error : "generation failed");
        c->done = 1;
        j->n_done++;
    }
    int all_done = j->n_done == j->n_choices;
    if (j->stream && !j->sse_ended) {
        if (emit.n || lp_delta) sse_chunk(j, c, emit.p, emit.n, lp_delta, NULL, 0);
        else if (lp_delta) json_decref(lp_delta);
        if (final) {
            if (c->error) {
                char *es = gg_srv_error_json(c->error, "server_error", NULL, NULL);
                json_t *e = es ? json_loads(es, 0, NULL) : NULL;
                free(es);
                if (e) sse_put(j, e);
            }
            sse_chunk(j, c, NULL, 0, NULL, c->finish, 0);
            if (all_done) {
                if (j->include_usage) {
                    json_t *o = chunk_head(j);
                    json_object_set_new(o, "choices", json_array());
                    json_object_set_new(o, "usage", usage(j));
                    sse_put(j, o);
                }
                gg_sbuf_adds(&j->sse, "data: [DONE]\n\n");
                j->sse_ended = 1;
            }
        }
    } else if (!j->stream) {
        if (lp_delta) json_decref(lp_delta);
        gg_sbuf_add(&c->text, emit.p ? emit.p : "", emit.n);
    } else if (lp_delta) {
        json_decref(lp_delta);
    }
    gg_sbuf_free(&emit);
    /* Wake the connection (after unlocking: it stays suspended, so valid,
     * until resumed). */
    struct MHD_Connection *wake = NULL;
    if (j->suspended && (j->stream ? j->sse.n > 0 || j->sse_ended : all_done)) {
        j->suspended = 0;
        wake = j->conn;
    }
    int left = final ? --j->refs : 1;
    int cancelled = final && ev->finish == GG_FINISH_CANCELLED, stop_hit = final && c->st.hit;
    pthread_mutex_unlock(&j->mu);
    if (wake) MHD_resume_connection(wake);

    gg_metrics *m = &s->met;
    if (gen || final) {
        pthread_mutex_lock(&m->mu);
        if (gen) m->gen_tokens++;
        if (cancelled) m->cancelled++;
        if (stop_hit) m->stop_strings++;
        pthread_mutex_unlock(&m->mu);
    }
    if (!left) job_free(j);
    return stop;
}

int gg_oa_submit(gg_job *j, char **errjson) {
    gg_srv *s = j->srv;
    int status = 0;
    *errjson = NULL;
    for (int i = 0; i < j->n_choices; i++) {
        gg_choice *c = &j->ch[i];
        gg_sched_req r = {.prompt = c->prompt, .n_prompt = c->n_prompt, .adapter = j->adapter, .sample = j->sp,
                          .max_tokens = j->max_tokens, .ignore_eos = 1 /* on_event stops at EOS */, .echo = j->echo,
                          .n_top = j->logprobs ? j->n_top : 0, .cb = on_event, .user = c};
        if (j->sp.seed) r.sample.seed = j->sp.seed + (uint64_t)i;
        pthread_mutex_lock(&j->mu);
        j->refs++;
        pthread_mutex_unlock(&j->mu);
        uint64_t id = 0;
        gg_err err;
        pthread_mutex_lock(&s->mu);
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        int rc = stopping ? GG_SCHED_EFULL : gg_sched_submit(s->sched, &r, &id, &err);
        if (stopping) snprintf(err.msg, sizeof err.msg, "the server is shutting down");
        if (rc != 0) {
            pthread_mutex_lock(&j->mu);
            j->refs--;
            pthread_mutex_unlock(&j->mu);
            gg_job_cancel(j);
            if (rc == GG_SCHED_EFULL) {
                *errjson = err_out(&status, 503, "server_error", NULL, "server_overloaded",
                                   "The server is busy (%s); retry later", err.msg);
            } else if (j->adapter >= 0 && gg_srv_find_model(s, j->model) == -2) {
                *errjson = err_out(&status, 404, "invalid_request_error", "model", "model_not_found",
                                   "The model '%s' was removed", j->model);
            } else {
                *errjson = err_out(&status, 400, "invalid_request_error", NULL, NULL, "%s", err.msg);
            }
            return status;
        }
        pthread_mutex_lock(&j->mu);
        c->sched_id = id;
        c->submitted = 1;
        pthread_mutex_unlock(&j->mu);
        pthread_mutex_lock(&s->met.mu);
        s->met.prompt_tokens += c->n_prompt;
        pthread_mutex_unlock(&s->met.mu);
    }
    return 0;
}

/* A choice that never ran (submit failed part way) counts as done for the
 * connection's side: the caller answers with the error. */

char *gg_oa_response(gg_job *j, int *status) {
    pthread_mutex_lock(&j->mu);
    for (int i = 0; i < j->n_choices; i++)
        if (j->ch[i].error) {
            char *e = err_out(status, 500, "server_error", NULL, NULL, "%s", j->ch[i].error);
            pthread_mutex_unlock(&j->mu);
            return e;
        }
    json_t *choices = json_array();
    for (int i = 0; i < j->n_choices; i++) {
        gg_choice *c = &j->ch[i];
        json_t *lp = c->lp ? json_incref((json_t *)c->lp) : j->logprobs ? lp_new(j) : json_null();
        json_t *text = jstr(c->text.p ? c->text.p : "", c->text.n);
        json_t *o;
        if (j->chat)
            o = json_pack("{s:i, s:{s:s, s:o}, s:o, s:s}", "index", i, "message", "role", "assistant", "content", text,
                          "logprobs", lp, "finish_reason", c->finish ? c->finish : "stop");
        else
            o = json_pack("{s:i, s:o, s:o, s:s}", "index", i, "text", text, "logprobs", lp, "finish_reason",
                          c->finish ? c->finish : "stop");
        json_array_append_new(choices, o);
    }
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:o, s:o}", "id", j->id, "object",
                          j->chat ? "chat.completion" : "text_completion", "created", (json_int_t)time(NULL), "model",
                          j->model, "choices", choices, "usage", usage(j));
    pthread_mutex_unlock(&j->mu);
    *status = 200;
    return dump(o);
}

/* ---- tokenizer endpoints ---- */

char *gg_oa_tokenize(gg_srv *s, const char *body, size_t len, int *status) {
    json_error_t je;
    json_t *o = json_loadb(body, len, 0, &je);
    if (!o) return BAD(NULL, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    json_t *p = json_object_get(o, "prompt");
    if (!p) p = json_object_get(o, "content");
    if (!p) p = json_object_get(o, "text");
    int bad = 0;
    int add = json_is_object(o) ? get_bool(o, "add_special_tokens", 1, &bad) : 1;
    if (!json_is_string(p) || bad) {
        json_decref(o);
        return BAD("prompt", "expected {\"prompt\": STRING, \"add_special_tokens\": BOOL}");
    }
    int32_t *ids;
    size_t n;
    char *msg = NULL;
    if (tokenize(s, json_string_value(p), json_string_length(p), add, &ids, &n, &msg)) {
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
    return dump(json_pack("{s:o, s:I, s:I}", "tokens", a, "count", (json_int_t)n, "max_model_len",
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
    if (!json_is_array(t) || ids_of(s, t, &ids, &n, &why)) {
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
    json_t *r = json_pack("{s:o}", "prompt", jstr(text, tl));
    free(text);
    *status = 200;
    return dump(r);
}

static json_t *str_or_null(const char *s) { return s ? jstr(s, strlen(s)) : json_null(); }

char *gg_oa_tokenizer_info(gg_srv *s) {
    return dump(json_pack("{s:o, s:o, s:o, s:o, s:I, s:I, s:s}", "eos_token", str_or_null(gg_tokenizer_eos_token(s->tok)),
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
        r = err_out(status, 403, "permission_error", "path", NULL,
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
        r = err_out(status, 409, "invalid_request_error", "name", "model_exists", "the model '%s' already exists",
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
    r = dump(model_obj(s, name, s->model_name));
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
        return err_out(status, 404, "invalid_request_error", "model", "model_not_found", "no adapter named '%s'",
                       name);
    gg_err err;
    if (gg_sched_adapter_remove(s->sched, handle, &err))
        return err_out(status, 500, "server_error", NULL, NULL, "%s", err.msg);
    *status = 200;
    return dump(json_pack("{s:s, s:s, s:b}", "id", name, "object", "model", "deleted", 1));
}
