/* data.c — the training-data pipeline (see data.h): JSONL loading and
 * masking per format, truncation and statistics, the train/validation split,
 * the debug view, and the batcher (per-epoch permutation, packing, flat
 * micro-batches). */
#include "models/data.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/chat.h"

/* ---- small helpers ---- */

static const char *const format_names[] = {"auto", "alpaca", "sharegpt", "chat", "completion", "pretokenized"};
#define N_FORMATS (sizeof format_names / sizeof format_names[0])

int gg_data_format_from_name(const char *name, gg_data_format *out, gg_err *err) {
    for (size_t i = 0; name && i < N_FORMATS; i++)
        if (!strcmp(name, format_names[i])) {
            *out = (gg_data_format)i;
            return 0;
        }
    return gg_errf(err, "unknown data format '%s' (auto, alpaca, sharegpt, chat, completion, pretokenized)",
                   name ? name : "");
}

const char *gg_data_format_name(gg_data_format f) {
    return (unsigned)f < N_FORMATS ? format_names[f] : "?";
}

gg_data_opts gg_data_opts_default(void) {
    gg_data_opts o = {0};
    o.format = GG_DATA_AUTO;
    o.add_eos = 1;
    return o;
}

/* splitmix64: the one random stream of this file */
static uint64_t mix_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A stream keyed by (seed, a, b). */
static uint64_t mix_key(uint64_t seed, uint64_t a, uint64_t b) {
    uint64_t s = seed;
    uint64_t k = mix_next(&s);
    s = k ^ (a * 0xd1b54a32d192ed03ull);
    k = mix_next(&s);
    s = k ^ (b * 0x8cb92ba72f3d8dd7ull);
    return mix_next(&s);
}

/* Uniform in [0, n), n >= 1, without modulo bias. */
static uint64_t mix_below(uint64_t *s, uint64_t n) {
    uint64_t lim = (0 - n) % n; /* 2^64 mod n */
    for (;;) {
        uint64_t r = mix_next(s);
        if (r >= lim) return r % n;
    }
}

/* ---- token vectors (a sample under construction) ---- */

typedef struct tvec {
    int32_t *ids, *labels;
    size_t n, cap;
} tvec;

static int tv_reserve(tvec *v, size_t extra) {
    if (v->n + extra <= v->cap) return 0;
    size_t cap = v->cap ? v->cap : 256;
    while (cap < v->n + extra) cap *= 2;
    int32_t *a = realloc(v->ids, cap * sizeof *a);
    if (!a) return -1;
    v->ids = a;
    int32_t *b = realloc(v->labels, cap * sizeof *b);
    if (!b) return -1;
    v->labels = b;
    v->cap = cap;
    return 0;
}

static int tv_push(tvec *v, const int32_t *ids, size_t n, int trained) {
    if (tv_reserve(v, n)) return -1;
    for (size_t i = 0; i < n; i++) {
        v->ids[v->n + i] = ids[i];
        v->labels[v->n + i] = trained ? ids[i] : GG_DATA_IGNORE;
    }
    v->n += n;
    return 0;
}

static void tv_free(tvec *v) {
    free(v->ids);
    free(v->labels);
    memset(v, 0, sizeof *v);
}

/* ---- the dataset store ---- */

static int ds_add_sample(gg_dataset *d, const tvec *v, uint32_t line, uint32_t file, int truncated) {
    if (d->n_samples == d->cap_samples) {
        size_t cap = d->cap_samples ? d->cap_samples * 2 : 256;
        gg_sample *s = realloc(d->s, cap * sizeof *s);
        if (!s) return -1;
        d->s = s;
        d->cap_samples = cap;
    }
    if (d->n_tokens + v->n > d->cap_tokens) {
        size_t cap = d->cap_tokens ? d->cap_tokens : 4096;
        while (cap < d->n_tokens + v->n) cap *= 2;
        int32_t *a = realloc(d->ids, cap * sizeof *a);
        if (!a) return -1;
        d->ids = a;
        int32_t *b = realloc(d->labels, cap * sizeof *b);
        if (!b) return -1;
        d->labels = b;
        d->cap_tokens = cap;
    }
    memcpy(d->ids + d->n_tokens, v->ids, v->n * sizeof *v->ids);
    memcpy(d->labels + d->n_tokens, v->labels, v->n * sizeof *v->labels);
    uint32_t trained = 0;
    for (size_t i = 1; i < v->n; i++) trained += v->labels[i] >= 0;
    gg_sample *s = &d->s[d->n_samples++];
    s->off = d->n_tokens;
    s->n = (uint32_t)v->n;
    s->n_trained = trained;
    s->line = line;
    s->file = file;
    s->truncated = truncated;
    d->n_tokens += v->n;
    d->n_trained += trained;
    d->n_truncated += truncated != 0;
    return 0;
}

void gg_data_free(gg_dataset *d) {
    if (!d) return;
    free(d->s);
    free(d->ids);
    free(d->labels);
    for (size_t i = 0; i < d->n_files; i++) free(d->files[i]);
    free(d->files);
    memset(d, 0, sizeof *d);
}

/* ---- one line ---- */

typedef struct ld {
    const char *path;
    size_t line;
    const gg_tokenizer *tok;
    const gg_data_opts *o;
    const char *tmpl; /* resolved chat template, NULL until needed */
    int fatal;        /* the error is not the line's fault: skip_bad does not apply */
    gg_err *err;
} ld;

__attribute__((format(printf, 2, 3))) static int line_err(ld *c, const char *fmt, ...) {
    char msg[GG_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++) /* data quoted in a message must not break the line */
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return gg_errf(c->err, "%s:%zu: %s", c->path, c->line, msg);
}

static int fatal_err(ld *c, const char *msg) {
    c->fatal = 1;
    return line_err(c, "%s", msg);
}

static int encode(ld *c, const char *text, size_t len, int add_special, int32_t **ids, size_t *n) {
    gg_err e = {{0}};
    if (gg_tokenizer_encode(c->tok, text, len, add_special, ids, n, &e)) return line_err(c, "%s", e.msg);
    return 0;
}

static int push_text(ld *c, tvec *v, const char *text, size_t len, int add_special, int trained) {
    int32_t *ids;
    size_t n;
    if (encode(c, text, len, add_special, &ids, &n)) return -1;
    int rc = tv_push(v, ids, n, trained);
    free(ids);
    return rc ? line_err(c, "out of memory") : 0;
}

/* EOS appended (trained) unless add_eos is off or the ids already end with it. */
static int push_eos(ld *c, tvec *v) {
    if (!c->o->add_eos) return 0;
    int32_t eos = gg_tokenizer_eos_id(c->tok);
    if (eos < 0) return fatal_err(c, "the tokenizer has no EOS token (tokenizer_config.json eos_token); "
                                     "cannot append EOS (turn add_eos off)");
    if (v->n && v->ids[v->n - 1] == eos) return 0;
    return tv_push(v, &eos, 1, 1) ? line_err(c, "out of memory") : 0;
}

/* A string field: 0 with *s / *len, 1 when absent or null, -1 on error. */
static int get_str(ld *c, json_t *obj, const char *key, const char *where, const char **s, size_t *len) {
    json_t *f = json_object_get(obj, key);
    if (!f || json_is_null(f)) return 1;
    if (!json_is_string(f)) return line_err(c, "%s\"%s\" is not a string", where, key);
    *s = json_string_value(f);
    *len = json_string_length(f);
    return 0;
}

static int need_str(ld *c, json_t *obj, const char *key, const char *where, int nonempty, const char **s,
                    size_t *len) {
    int rc = get_str(c, obj, key, where, s, len);
    if (rc > 0) return line_err(c, "%smissing \"%s\"", where, key);
    if (rc < 0) return -1;
    if (nonempty && !*len) return line_err(c, "%s\"%s\" is empty", where, key);
    return 0;
}

/* ---- alpaca ---- */

static const char alpaca_with_input[] =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n";
static const char alpaca_no_input[] =
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n";

static int build_alpaca(ld *c, json_t *obj, tvec *v) {
    const char *ins, *in = "", *out;
    size_t ins_n, in_n = 0, out_n;
    if (need_str(c, obj, "instruction", "", 1, &ins, &ins_n)) return -1;
    if (get_str(c, obj, "input", "", &in, &in_n) < 0) return -1;
    if (need_str(c, obj, "output", "", 1, &out, &out_n)) return -1;
    const char *head = in_n ? alpaca_with_input : alpaca_no_input;
    size_t cap = strlen(head) + ins_n + in_n + 64;
    char *p = malloc(cap);
    if (!p) return line_err(c, "out of memory");
    int len;
    if (in_n) len = snprintf(p, cap, "%s%s\n\n### Input:\n%s\n\n### Response:\n", head, ins, in);
    else len = snprintf(p, cap, "%s%s\n\n### Response:\n", head, ins);
    int rc = push_text(c, v, p, (size_t)len, 1, c->o->train_on_inputs);
    free(p);
    if (rc || push_text(c, v, out, out_n, 0, 1)) return -1;
    return push_eos(c, v);
}

/* ---- completion ---- */

static int build_completion(ld *c, json_t *obj, tvec *v) {
    const char *s;
    size_t n;
    if (need_str(c, obj, "text", "", 1, &s, &n)) return -1;
    if (push_text(c, v, s, n, 1, 1)) return -1;
    return push_eos(c, v);
}

/* ---- pretokenized ---- */

static int get_int_array(ld *c, json_t *obj, const char *key, json_t **arr) {
    *arr = json_object_get(obj, key);
    if (!*arr || json_is_null(*arr)) return 1;
    if (!json_is_array(*arr)) return line_err(c, "\"%s\" is not an array", key);
    return 0;
}

static int build_pretokenized(ld *c, json_t *obj, tvec *v) {
    json_t *ids, *labels;
    int rc = get_int_array(c, obj, "input_ids", &ids);
    if (rc > 0) return line_err(c, "missing \"input_ids\"");
    if (rc < 0) return -1;
    size_t n = json_array_size(ids);
    if (!n) return line_err(c, "\"input_ids\" is empty");
    rc = get_int_array(c, obj, "labels", &labels);
    if (rc < 0) return -1;
    if (rc == 0 && json_array_size(labels) != n)
        return line_err(c, "\"labels\" has %zu items, \"input_ids\" %zu", json_array_size(labels), n);
    if (tv_reserve(v, n)) return line_err(c, "out of memory");
    size_t vocab = c->tok ? gg_tokenizer_vocab_size(c->tok) : c->o->vocab;
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(ids, i);
        if (!json_is_integer(x)) return line_err(c, "input_ids[%zu] is not an integer", i);
        json_int_t id = json_integer_value(x);
        if (id < 0 || (unsigned long long)id >= vocab)
            return line_err(c, "input_ids[%zu] = %lld is out of range (vocabulary of %zu)", i, (long long)id, vocab);
        json_int_t lab = id;
        if (rc == 0) {
            json_t *y = json_array_get(labels, i);
            if (!json_is_integer(y)) return line_err(c, "labels[%zu] is not an integer", i);
            lab = json_integer_value(y);
            if (lab != GG_DATA_IGNORE && (lab < 0 || (unsigned long long)lab >= vocab))
                return line_err(c, "labels[%zu] = %lld is neither -100 nor a token id (vocabulary of %zu)", i,
                                (long long)lab, vocab);
        }
        v->ids[i] = (int32_t)id;
        v->labels[i] = c->o->train_on_inputs ? (int32_t)id : (int32_t)lab;
    }
    v->n = n;
    return 0;
}

/* ---- chat / sharegpt ---- */

static const char *sharegpt_role(const char *from) {
    static const char *const map[][2] = {{"system", "system"}, {"human", "user"},         {"user", "user"},
                                         {"gpt", "assistant"}, {"assistant", "assistant"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(from, map[i][0])) return map[i][1];
    return NULL;
}

/* The messages of a chat (key "messages": role/content) or sharegpt
 * (key "conversations": from/value) line; *msgs is malloc'd, strings
 * borrowed from obj. */
static int get_messages(ld *c, json_t *obj, int sharegpt, gg_chat_msg **msgs, size_t *n) {
    const char *key = sharegpt ? "conversations" : "messages";
    const char *rk = sharegpt ? "from" : "role", *ck = sharegpt ? "value" : "content";
    json_t *arr = json_object_get(obj, key);
    if (!arr) return line_err(c, "missing \"%s\"", key);
    if (!json_is_array(arr)) return line_err(c, "\"%s\" is not an array", key);
    *n = json_array_size(arr);
    if (!*n) return line_err(c, "\"%s\" is empty", key);
    *msgs = calloc(*n, sizeof **msgs);
    if (!*msgs) return line_err(c, "out of memory");
    for (size_t i = 0; i < *n; i++) {
        json_t *m = json_array_get(arr, i);
        char where[64];
        snprintf(where, sizeof where, "%s[%zu]: ", key, i);
        if (!json_is_object(m)) return line_err(c, "%sis not an object", where);
        const char *role, *content;
        size_t rl, cl;
        if (need_str(c, m, rk, where, 1, &role, &rl) || need_str(c, m, ck, where, 0, &content, &cl)) return -1;
        if (strlen(role) != rl || strlen(content) != cl) return line_err(c, "%scontains a NUL character", where);
        if (sharegpt && !(role = sharegpt_role(role)))
            return line_err(c, "%sunknown \"from\" value (system, human, user, gpt, assistant)", where);
        (*msgs)[i].role = role;
        (*msgs)[i].content = content;
    }
    return 0;
}

static int resolve_template(ld *c) {
    if (c->tmpl) return 0;
    const char *t = c->o->chat_template;
    if (t) c->tmpl = gg_chat_builtin(t) ? gg_chat_builtin(t) : t;
    else c->tmpl = gg_tokenizer_chat_template(c->tok);
    if (!c->tmpl)
        return fatal_err(c, "the tokenizer has no chat template; give one (--chat-template NAME|FILE)");
    return 0;
}

static int render(ld *c, const gg_chat_msg *msgs, size_t n, int gen, char **out, size_t *len) {
    gg_chat_opts co = {gen, gg_tokenizer_bos_token(c->tok), gg_tokenizer_eos_token(c->tok)};
    gg_err e = {{0}};
    if (gg_chat_render(c->tmpl, msgs, n, &co, out, len, &e)) return line_err(c, "%s", e.msg);
    return 0;
}

static int is_prefix(const char *p, size_t pn, const char *s, size_t sn) {
    return pn <= sn && !memcmp(p, s, pn);
}

static size_t lcp(const int32_t *a, size_t an, const int32_t *b, size_t bn) {
    size_t i = 0;
    while (i < an && i < bn && a[i] == b[i]) i++;
    return i;
}

/* Token count of rendering msgs[0..n) (+ generation prompt), which must be a
 * text prefix of t; *common gets its common token prefix with ids. */
static int prefix_span(ld *c, const gg_chat_msg *msgs, size_t n, int gen, const char *t, size_t tn,
                       const int32_t *ids, size_t nids, size_t *ntok, size_t *common) {
    char *p;
    size_t pn;
    if (render(c, msgs, n, gen, &p, &pn)) return -1;
    if (!is_prefix(p, pn, t, tn)) {
        free(p);
        return 1;
    }
    int32_t *pid;
    int rc = encode(c, p, pn, 0, &pid, ntok);
    free(p);
    if (rc) return -1;
    *common = lcp(pid, *ntok, ids, nids);
    free(pid);
    return 0;
}

/* The trained span [*s, *e) of assistant message i (see data.h). */
static int assistant_span(ld *c, const gg_chat_msg *msgs, size_t i, const char *t, size_t tn, const int32_t *ids,
                          size_t n, size_t *s, size_t *e) {
    size_t nt, common;
    int rc = prefix_span(c, msgs, i, 1, t, tn, ids, n, &nt, &common);
    if (rc > 0) rc = prefix_span(c, msgs, i, 0, t, tn, ids, n, &nt, &common);
    if (rc > 0)
        return line_err(c, "the chat template renders the conversation before message %zu (0-based) differently "
                           "from the whole conversation; cannot find the assistant turn", i);
    if (rc) return -1;
    *s = common;
    rc = prefix_span(c, msgs, i + 1, 0, t, tn, ids, n, &nt, &common);
    if (rc > 0)
        return line_err(c, "the chat template renders assistant message %zu (0-based) differently inside the "
                           "conversation than at its end; cannot mask it (use another template)", i);
    if (rc) return -1;
    *e = common < nt && common < n ? common + 1 : common;
    if (*e < *s) *e = *s;
    return 0;
}

static int build_conversation(ld *c, const gg_chat_msg *msgs, size_t nm, tvec *v) {
    char *t;
    size_t tn;
    if (render(c, msgs, nm, 0, &t, &tn)) return -1;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = encode(c, t, tn, 0, &ids, &n);
    if (!rc && tv_push(v, ids, n, 0)) rc = line_err(c, "out of memory");
    size_t s = 0, e = 0;
    for (size_t i = 0; i < nm && !rc; i++) {
        if (strcmp(msgs[i].role, "assistant")) continue;
        rc = assistant_span(c, msgs, i, t, tn, ids, n, &s, &e);
        for (size_t k = s; k < e && !rc; k++) v->labels[k] = v->ids[k];
    }
    free(t);
    free(ids);
    if (rc) return -1;
    if (!strcmp(msgs[nm - 1].role, "assistant") && c->o->add_eos) {
        int special = 0;
        for (size_t k = s; k < e; k++) special |= gg_tokenizer_is_special(c->tok, v->ids[k]);
        if (!special) {
            for (size_t k = e; k < v->n; k++) v->labels[k] = v->ids[k];
            if (push_eos(c, v)) return -1;
        }
    }
    if (c->o->train_on_inputs && v->n) memcpy(v->labels, v->ids, v->n * sizeof *v->ids);
    return 0;
}

static int build_chat(ld *c, json_t *obj, int sharegpt, tvec *v) {
    gg_chat_msg *msgs = NULL;
    size_t n = 0;
    int rc = get_messages(c, obj, sharegpt, &msgs, &n);
    if (!rc) rc = resolve_template(c);
    if (!rc) rc = build_conversation(c, msgs, n, v);
    free(msgs);
    return rc;
}

/* ---- format detection and the load loop ---- */

static gg_data_format detect(json_t *obj) {
    static const struct {
        const char *key;
        gg_data_format f;
    } keys[] = {{"instruction", GG_DATA_ALPACA},
                {"conversations", GG_DATA_SHAREGPT},
                {"messages", GG_DATA_CHAT},
                {"text", GG_DATA_COMPLETION},
                {"input_ids", GG_DATA_PRETOKENIZED}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (json_object_get(obj, keys[i].key)) return keys[i].f;
    return GG_DATA_AUTO;
}

static int build(ld *c, gg_data_format f, json_t *obj, tvec *v) {
    if (!c->tok && f != GG_DATA_PRETOKENIZED)
        return fatal_err(c, "not pretokenized data, and there is no tokenizer (only pretokenized data works "
                            "without one)");
    switch (f) {
    case GG_DATA_ALPACA: return build_alpaca(c, obj, v);
    case GG_DATA_SHAREGPT: return build_chat(c, obj, 1, v);
    case GG_DATA_CHAT: return build_chat(c, obj, 0, v);
    case GG_DATA_COMPLETION: return build_completion(c, obj, v);
    case GG_DATA_PRETOKENIZED: return build_pretokenized(c, obj, v);
    default: return fatal_err(c, "no data format");
    }
}

/* ---- the load loop: chunks of lines, tokenized by worker threads, merged
 * in line order (so the result never depends on the thread count) ---- */

/* One non-blank line and what became of it. */
typedef struct job {
    size_t off, len; /* into the chunk's text */
    size_t line;
    gg_data_format fmt; /* detected (auto) or given; GG_DATA_AUTO when unknown */
    int rc, fatal, truncated;
    size_t trained;
    gg_err err;
    tvec v;
} job;

typedef struct chunk {
    char *text;
    size_t len, cap;
    job *jobs;
    size_t n, cap_jobs;
    /* shared with the workers */
    const char *path;
    const gg_tokenizer *tok;
    const gg_data_opts *o;
    size_t next; /* atomic: the next job to take */
} chunk;

/* Parse, build and truncate one line (any thread). */
static void run_job(chunk *ck, job *jb) {
    ld c = {ck->path, jb->line, ck->tok, ck->o, NULL, 0, &jb->err};
    jb->v.n = 0;
    jb->fmt = ck->o->format;
    json_error_t je;
    json_t *obj = json_loadb(ck->text + jb->off, jb->len, JSON_REJECT_DUPLICATES, &je);
    if (!obj) {
        jb->rc = line_err(&c, "bad JSON at column %d: %s", je.column, je.text);
        return;
    }
    jb->rc = 0;
    if (!json_is_object(obj)) jb->rc = line_err(&c, "not a JSON object");
    else if (jb->fmt == GG_DATA_AUTO && (jb->fmt = detect(obj)) == GG_DATA_AUTO)
        jb->rc = line_err(&c, "no known field (instruction, conversations, messages, text, input_ids)");
    if (!jb->rc) jb->rc = build(&c, jb->fmt, obj, &jb->v);
    json_decref(obj);
    jb->fatal = c.fatal;
    if (jb->rc) return;
    jb->truncated = ck->o->seq_len && jb->v.n > ck->o->seq_len;
    if (jb->truncated) jb->v.n = ck->o->seq_len;
    if (jb->v.n > UINT32_MAX) jb->rc = fatal_err(&c, "sample longer than 2^32 tokens"), jb->fatal = 1;
    jb->trained = 0;
    for (size_t i = 1; i < jb->v.n; i++) jb->trained += jb->v.labels[i] >= 0;
}

static void *worker(void *arg) {
    chunk *ck = arg;
    for (;;) {
        size_t i = __atomic_fetch_add(&ck->next, 1, __ATOMIC_RELAXED);
        if (i >= ck->n) return NULL;
        run_job(ck, &ck->jobs[i]);
    }
}

static void run_chunk(chunk *ck, int n_threads) {
    ck->next = 0;
    pthread_t th[GG_DATA_MAX_THREADS];
    int started = 0;
    size_t want = ck->n < (size_t)n_threads ? ck->n : (size_t)n_threads;
    for (size_t t = 1; t < want; t++)
        if (!pthread_create(&th[started], NULL, worker, ck)) started++;
    worker(ck); /* this thread works too; if no thread started it does all */
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
}

typedef struct file_state {
    gg_data_format fmt; /* of the file (auto: from its first valid line) */
    size_t fmt_line;
} file_state;

/* Take the chunk's results in line order: 0, or -1 with the error. */
static int merge_chunk(chunk *ck, file_state *fs, gg_dataset *d, uint32_t file, gg_err *err) {
    for (size_t i = 0; i < ck->n; i++) {
        job *jb = &ck->jobs[i];
        int rc = jb->rc, fatal = jb->fatal;
        if (ck->o->format == GG_DATA_AUTO && jb->fmt != GG_DATA_AUTO && fs->fmt != GG_DATA_AUTO && jb->fmt != fs->fmt) {
            rc = gg_errf(&jb->err, "%s:%zu: a %s line in a file of %s lines (format from line %zu)", ck->path, jb->line,
                         gg_data_format_name(jb->fmt), gg_data_format_name(fs->fmt), fs->fmt_line);
            fatal = 0;
        } else if (!rc) {
            if (fs->fmt == GG_DATA_AUTO) {
                fs->fmt = jb->fmt;
                fs->fmt_line = jb->line;
            }
            if (!jb->trained) d->n_no_targets++;
            else if (ds_add_sample(d, &jb->v, (uint32_t)jb->line, file, jb->truncated))
                rc = gg_errf(&jb->err, "%s:%zu: out of memory", ck->path, jb->line), fatal = 1;
        }
        if (!rc) continue;
        if (ck->o->skip_bad && !fatal) {
            d->n_skipped++;
            continue;
        }
        *err = jb->err;
        return -1;
    }
    return 0;
}

/* Add a line to the chunk (copying its text). */
static int chunk_add(chunk *ck, const char *s, size_t len, size_t line) {
    if (ck->n == ck->cap_jobs) {
        size_t cap = ck->cap_jobs ? ck->cap_jobs * 2 : 64;
        job *j = realloc(ck->jobs, cap * sizeof *j);
        if (!j) return -1;
        memset(j + ck->cap_jobs, 0, (cap - ck->cap_jobs) * sizeof *j);
        ck->jobs = j;
        ck->cap_jobs = cap;
    }
    if (ck->len + len + 1 > ck->cap) {
        size_t cap = ck->cap ? ck->cap : 1 << 16;
        while (cap < ck->len + len + 1) cap *= 2;
        char *t = realloc(ck->text, cap);
        if (!t) return -1;
        ck->text = t;
        ck->cap = cap;
    }
    memcpy(ck->text + ck->len, s, len);
    job *jb = &ck->jobs[ck->n++];
    jb->off = ck->len;
    jb->len = len;
    jb->line = line;
    ck->len += len + 1;
    return 0;
}

static void chunk_free(chunk *ck) {
    for (size_t i = 0; i < ck->cap_jobs; i++) tv_free(&ck->jobs[i].v);
    free(ck->jobs);
    free(ck->text);
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n' && s[i] != '\f' && s[i] != '\v') return 0;
    return 1;
}

static int n_threads_of(const gg_data_opts *o) {
    long n = o->n_threads > 0 ? o->n_threads : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > GG_DATA_MAX_THREADS ? GG_DATA_MAX_THREADS : (int)n;
}

static int load_lines(const char *path, FILE *fp, const gg_tokenizer *tok, const gg_data_opts *o, gg_dataset *d,
                      uint32_t file, gg_err *err) {
    int nt = n_threads_of(o);
    chunk ck = {.path = path, .tok = tok, .o = o};
    file_state fs = {o->format, 0};
    char *buf = NULL;
    size_t cap = 0, line = 0, max_lines = 64 * (size_t)nt;
    int rc = 0, eof = 0;
    errno = 0;
    while (!rc && !eof) {
        ck.n = ck.len = 0;
        ssize_t got = 0;
        while (ck.n < max_lines && ck.len < (16u << 20) && (got = getline(&buf, &cap, fp)) >= 0) {
            if (++line > UINT32_MAX) {
                rc = gg_errf(err, "%s: more than 2^32 lines", path);
                break;
            }
            size_t len = (size_t)got;
            while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) len--;
            if (is_blank(buf, len)) continue;
            if (chunk_add(&ck, buf, len, line)) {
                rc = gg_errf(err, "%s:%zu: out of memory", path, line);
                break;
            }
        }
        eof = got < 0;
        if (rc) break;
        run_chunk(&ck, nt);
        rc = merge_chunk(&ck, &fs, d, file, err);
    }
    if (!rc && ferror(fp)) rc = gg_errf(err, "%s: read error: %s", path, strerror(errno ? errno : EIO));
    free(buf);
    chunk_free(&ck);
    return rc;
}

int gg_data_load(gg_dataset *out, const char *path, const gg_tokenizer *tok, const gg_data_opts *o,
                 gg_err *err) {
    gg_data_opts dflt = gg_data_opts_default();
    if (!o) o = &dflt;
    if (!tok && !o->vocab) return gg_errf(err, "%s: no tokenizer and no vocabulary size", path);
    if ((unsigned)o->format >= N_FORMATS) return gg_errf(err, "%s: bad data format %d", path, (int)o->format);
    if (out->n_files >= UINT32_MAX) return gg_errf(err, "%s: too many files", path);
    FILE *fp = fopen(path, "rb");
    if (!fp) return gg_errf(err, "%s: %s", path, strerror(errno));
    char **files = realloc(out->files, (out->n_files + 1) * sizeof *files);
    char *name = strdup(path);
    if (files) out->files = files;
    if (!files || !name) {
        free(name);
        fclose(fp);
        return gg_errf(err, "%s: out of memory", path);
    }
    gg_dataset before = *out;
    out->files[out->n_files++] = name;
    int rc = load_lines(path, fp, tok, o, out, (uint32_t)before.n_files, err);
    fclose(fp);
    if (rc) { /* back to the state before the call (the buffers may have moved) */
        free(name);
        before.s = out->s;
        before.cap_samples = out->cap_samples;
        before.ids = out->ids;
        before.labels = out->labels;
        before.cap_tokens = out->cap_tokens;
        before.files = out->files;
        *out = before;
    }
    return rc;
}

/* ---- split ---- */

static void recount(gg_dataset *d) {
    d->n_tokens = d->n_trained = d->n_truncated = 0;
    for (size_t i = 0; i < d->n_samples; i++) {
        d->n_tokens += d->s[i].n;
        d->n_trained += d->s[i].n_trained;
        d->n_truncated += d->s[i].truncated != 0;
    }
}

static int split_count(size_t n, double amount, size_t *count, gg_err *err) {
    if (!(amount >= 0) || isinf(amount)) return gg_errf(err, "validation size %g is not a fraction or a count", amount);
    if (amount < 1) {
        double r = floor(amount * (double)n + 0.5);
        *count = (size_t)r;
        if (!*count && amount > 0) *count = 1;
    } else {
        if (amount != floor(amount)) return gg_errf(err, "validation count %g is not a whole number", amount);
        if (amount > (double)n) return gg_errf(err, "validation count %g > %zu samples", amount, n);
        *count = (size_t)amount;
    }
    if (*count && *count >= n)
        return gg_errf(err, "a validation set of %zu samples leaves no training sample (%zu samples)", *count, n);
    return 0;
}

/* Copy the files list of src into dst (fresh). */
static int copy_files(gg_dataset *dst, const gg_dataset *src) {
    if (!src->n_files) return 0;
    dst->files = calloc(src->n_files, sizeof *dst->files);
    if (!dst->files) return -1;
    for (size_t i = 0; i < src->n_files; i++) {
        if (!(dst->files[i] = strdup(src->files[i]))) return -1;
        dst->n_files = i + 1;
    }
    return 0;
}

static int copy_sample(gg_dataset *dst, const gg_dataset *src, size_t i) {
    const gg_sample *s = &src->s[i];
    tvec v = {(int32_t *)src->ids + s->off, (int32_t *)src->labels + s->off, s->n, s->n};
    return ds_add_sample(dst, &v, s->line, s->file, s->truncated);
}

int gg_data_split(gg_dataset *all, gg_dataset *val, double amount, uint64_t seed, gg_err *err) {
    memset(val, 0, sizeof *val);
    size_t n = all->n_samples, count = 0;
    if (split_count(n, amount, &count, err)) return -1;
    if (!count) return 0;
    uint32_t *idx = malloc(n * sizeof *idx);
    unsigned char *pick = calloc(n, 1);
    if (!idx || !pick) {
        free(idx);
        free(pick);
        return gg_errf(err, "split: out of memory");
    }
    for (size_t i = 0; i < n; i++) idx[i] = (uint32_t)i;
    uint64_t st = mix_key(seed, 0x5eed5117ull, n);
    for (size_t i = 0; i < count; i++) { /* partial Fisher–Yates: idx[0..count) is the choice */
        size_t j = i + (size_t)mix_below(&st, n - i);
        uint32_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        pick[idx[i]] = 1;
    }
    free(idx);
    int rc = copy_files(val, all);
    for (size_t i = 0; i < n && !rc; i++)
        if (pick[i]) rc = copy_sample(val, all, i);
    if (rc) {
        free(pick);
        gg_data_free(val);
        return gg_errf(err, "split: out of memory");
    }
    size_t k = 0, tok = 0; /* compact *all in place: kept samples move down */
    for (size_t i = 0; i < n; i++) {
        if (pick[i]) continue;
        gg_sample s = all->s[i];
        memmove(all->ids + tok, all->ids + s.off, s.n * sizeof *all->ids);
        memmove(all->labels + tok, all->labels + s.off, s.n * sizeof *all->labels);
        s.off = tok;
        tok += s.n;
        all->s[k++] = s;
    }
    free(pick);
    all->n_samples = k;
    recount(all);
    recount(val);
    return 0;
}

/* ---- debug view ---- */

static void put_escaped(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p == '\r') fputs("\\r", f);
        else if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\x%02x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

void gg_data_summary(const gg_dataset *d, char *buf, size_t cap) {
    snprintf(buf, cap, "%zu samples, %zu tokens, %zu trained, %zu truncated, %zu skipped, %zu no-target",
             d->n_samples, d->n_tokens, d->n_trained, d->n_truncated, d->n_skipped, d->n_no_targets);
}

void gg_data_debug(FILE *f, const gg_dataset *d, const gg_tokenizer *tok, size_t max_samples) {
    size_t m = max_samples && max_samples < d->n_samples ? max_samples : d->n_samples;
    for (size_t i = 0; i < m; i++) {
        const gg_sample *s = &d->s[i];
        fprintf(f, "%s:%u n=%u trained=%u%s\n", s->file < d->n_files ? d->files[s->file] : "?", s->line, s->n,
                s->n_trained, s->truncated ? " truncated" : "");
        const int32_t *ids = gg_data_ids(d, i), *lab = gg_data_labels(d, i);
        for (uint32_t k = 0; k < s->n; k++) {
            const char *p = tok ? gg_tokenizer_piece(tok, ids[k]) : NULL;
            fprintf(f, k % 8 ? " " : k ? "\n  " : "  ");
            fprintf(f, "%d:", (int)ids[k]);
            put_escaped(f, p ? p : "?");
            fprintf(f, ":%c", lab[k] >= 0 ? 'T' : 'M');
        }
        fputc('\n', f);
    }
    char sum[256];
    gg_data_summary(d, sum, sizeof sum);
    fprintf(f, "data: %s\n", sum);
}

/* ---- batcher ---- */

struct gg_batcher {
    const gg_dataset *d;
    gg_batch_opts o;
    gg_batcher_state st;
    uint32_t *perm;    /* order of st.epoch */
    uint32_t *scratch; /* another epoch's order (epoch_batches) */
    int64_t cap_tokens;
    gg_batch b;
};

static void perm_fill(uint32_t *perm, size_t n, const gg_batch_opts *o, uint64_t epoch) {
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    if (!o->shuffle) return;
    uint64_t st = mix_key(o->seed, 0xe70c4ull, epoch);
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)mix_below(&st, i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

/* Samples the micro-batch starting at cursor c takes (0 at the end), and its rows. */
static size_t plan(const gg_batcher *b, const uint32_t *perm, size_t c, int64_t *rows) {
    size_t n = b->d->n_samples, k = 0;
    if (!b->o.pack) {
        k = n - c < b->o.micro_batch ? n - c : b->o.micro_batch;
        *rows = (int64_t)k;
        return k;
    }
    size_t r = 0, len = 0;
    for (; c + k < n; k++) {
        size_t sl = b->d->s[perm[c + k]].n;
        if (!r || len + sl > b->o.seq_len) {
            if (r == b->o.micro_batch) break;
            r++;
            len = 0;
        }
        len += sl;
    }
    *rows = (int64_t)r;
    return k;
}

int gg_batcher_new(gg_batcher **out, const gg_dataset *d, const gg_batch_opts *o, gg_err *err) {
    *out = NULL;
    if (!d->n_samples) return gg_errf(err, "batcher: the dataset has no samples");
    if (d->n_samples > UINT32_MAX) return gg_errf(err, "batcher: more than 2^32 samples");
    if (!o->micro_batch) return gg_errf(err, "batcher: micro_batch must be >= 1");
    if (o->pack && !o->seq_len) return gg_errf(err, "batcher: packing needs seq_len");
    size_t longest = 0;
    for (size_t i = 0; i < d->n_samples; i++) {
        const gg_sample *s = &d->s[i];
        if (o->seq_len && s->n > o->seq_len)
            return gg_errf(err, "batcher: %s:%u has %u tokens > seq_len %zu (load with the same seq_len)",
                           s->file < d->n_files ? d->files[s->file] : "?", s->line, s->n, o->seq_len);
        if (s->n > longest) longest = s->n;
    }
    size_t per = o->pack ? o->seq_len : longest;
    if (o->micro_batch > (size_t)INT32_MAX / per) return gg_errf(err, "batcher: micro-batch of more than 2^31 tokens");
    gg_batcher *b = calloc(1, sizeof *b);
    if (!b) return gg_errf(err, "batcher: out of memory");
    b->d = d;
    b->o = *o;
    b->cap_tokens = (int64_t)(o->micro_batch * per);
    size_t ns = o->pack ? o->micro_batch * o->seq_len : o->micro_batch; /* samples per batch, at most */
    if (ns > d->n_samples) ns = d->n_samples;
    size_t nt = (size_t)b->cap_tokens;
    b->perm = malloc(d->n_samples * sizeof *b->perm);
    b->scratch = malloc(d->n_samples * sizeof *b->scratch);
    b->b.ids = malloc(nt * sizeof(int32_t));
    b->b.pos = malloc(nt * sizeof(int32_t));
    b->b.k_lo = malloc(nt * sizeof(int32_t));
    b->b.targets = malloc(nt * sizeof(int32_t));
    b->b.seg = malloc((ns + 1) * sizeof(int64_t));
    b->b.sample = malloc(ns * sizeof(uint32_t));
    b->b.row = malloc(ns * sizeof(uint32_t));
    if (!b->perm || !b->scratch || !b->b.ids || !b->b.pos || !b->b.k_lo || !b->b.targets || !b->b.seg ||
        !b->b.sample || !b->b.row) {
        gg_batcher_free(b);
        return gg_errf(err, "batcher: out of memory");
    }
    perm_fill(b->perm, d->n_samples, o, 0);
    *out = b;
    return 0;
}

void gg_batcher_free(gg_batcher *b) {
    if (!b) return;
    free(b->perm);
    free(b->scratch);
    free(b->b.ids);
    free(b->b.pos);
    free(b->b.k_lo);
    free(b->b.targets);
    free(b->b.seg);
    free(b->b.sample);
    free(b->b.row);
    free(b);
}

/* Lay sample si out at the end of the flat batch. */
static void put_sample(gg_batch *bt, const gg_dataset *d, uint32_t si) {
    const gg_sample *s = &d->s[si];
    const int32_t *ids = gg_data_ids(d, si), *lab = gg_data_labels(d, si);
    int64_t t0 = bt->n;
    for (uint32_t i = 0; i < s->n; i++) {
        int32_t tg = i + 1 < s->n ? lab[i + 1] : GG_DATA_IGNORE;
        bt->ids[t0 + i] = ids[i];
        bt->pos[t0 + i] = (int32_t)i;
        bt->k_lo[t0 + i] = (int32_t)t0;
        bt->targets[t0 + i] = tg < 0 ? GG_DATA_IGNORE : tg;
        bt->n_targets += tg >= 0;
    }
    bt->n += s->n;
}

int gg_batcher_next(gg_batcher *b, gg_batch *out) {
    gg_batch *bt = &b->b;
    bt->n = bt->n_targets = bt->n_samples = bt->n_rows = 0;
    bt->seg[0] = 0;
    size_t c = (size_t)b->st.cursor;
    size_t k = plan(b, b->perm, c, &bt->n_rows);
    int64_t row = -1;
    size_t len = 0;
    for (size_t j = 0; j < k; j++) {
        uint32_t si = b->perm[c + j];
        size_t sl = b->d->s[si].n;
        if (row < 0 || !b->o.pack || len + sl > b->o.seq_len) { /* same rule as plan() */
            row++;
            len = 0;
        }
        len += sl;
        bt->sample[j] = si;
        bt->row[j] = (uint32_t)row;
        put_sample(bt, b->d, si);
        bt->seg[j + 1] = bt->n;
    }
    bt->n_samples = (int64_t)k;
    b->st.cursor += k;
    *out = *bt;
    return k > 0;
}

void gg_batcher_next_epoch(gg_batcher *b) {
    b->st.epoch++;
    b->st.cursor = 0;
    perm_fill(b->perm, b->d->n_samples, &b->o, b->st.epoch);
}

gg_batcher_state gg_batcher_get_state(const gg_batcher *b) { return b->st; }

int gg_batcher_set_state(gg_batcher *b, gg_batcher_state s, gg_err *err) {
    if (s.cursor > b->d->n_samples)
        return gg_errf(err, "batcher: cursor %llu is past the %zu samples of an epoch", (unsigned long long)s.cursor,
                       b->d->n_samples);
    if (s.epoch != b->st.epoch) perm_fill(b->perm, b->d->n_samples, &b->o, s.epoch);
    b->st = s;
    return 0;
}

int64_t gg_batcher_peek_targets(const gg_batcher *b, size_t k, size_t *n_batches) {
    size_t c = (size_t)b->st.cursor, nb = 0;
    int64_t total = 0, rows;
    for (; nb < k; nb++) {
        size_t m = plan(b, b->perm, c, &rows);
        if (!m) break;
        for (size_t j = 0; j < m; j++) total += b->d->s[b->perm[c + j]].n_trained;
        c += m;
    }
    if (n_batches) *n_batches = nb;
    return total;
}

size_t gg_batcher_epoch_batches(gg_batcher *b, uint64_t epoch) {
    size_t n = b->d->n_samples;
    if (!b->o.pack) return (n + b->o.micro_batch - 1) / b->o.micro_batch;
    const uint32_t *perm = b->perm;
    if (epoch != b->st.epoch) {
        perm_fill(b->scratch, n, &b->o, epoch);
        perm = b->scratch;
    }
    size_t c = 0, nb = 0, m;
    int64_t rows;
    while ((m = plan(b, perm, c, &rows))) {
        c += m;
        nb++;
    }
    return nb;
}

int64_t gg_batcher_max_tokens(const gg_batcher *b) { return b->cap_tokens; }

void gg_batch_shard(const gg_batch *b, int rank, int size, gg_batch *out, int32_t *k_lo_buf) {
    memset(out, 0, sizeof *out);
    int64_t rows = b->n_rows, lo_row = rows * rank / size, hi_row = rows * (rank + 1) / size;
    int64_t jlo = 0, jhi;
    while (jlo < b->n_samples && (int64_t)b->row[jlo] < lo_row) jlo++;
    jhi = jlo;
    while (jhi < b->n_samples && (int64_t)b->row[jhi] < hi_row) jhi++;
    if (jhi == jlo) return;
    int64_t t0 = b->seg[jlo], t1 = b->seg[jhi];
    out->n = t1 - t0;
    out->ids = b->ids + t0;
    out->pos = b->pos + t0;
    out->targets = b->targets + t0;
    out->k_lo = k_lo_buf;
    for (int64_t t = t0; t < t1; t++) {
        k_lo_buf[t - t0] = b->k_lo[t] - (int32_t)t0;
        out->n_targets += b->targets[t] >= 0;
    }
    out->n_samples = jhi - jlo;
    out->n_rows = hi_row - lo_row;
    out->seg = b->seg + jlo;
    out->sample = b->sample + jlo;
    out->row = b->row + jlo;
}
