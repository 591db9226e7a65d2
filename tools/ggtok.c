/* ggtok — encode or decode text with a model's tokenizer, one line of stdin
 * to one line of stdout, exactly as Hugging Face `tokenizers` does.
 *
 *   ggtok -m SRC [--jsonl] [--no-special] [--decode] [--skip-special] [--threads N] [-v]
 *   ggtok -m SRC --chat [--template NAME|FILE] [--add-generation-prompt]
 *
 * SRC is a .gg model (its stored tokenizer.json / tokenizer_config.json), an
 * HF folder or a tokenizer.json file.
 *
 * Plain mode: each stdin line (without its '\n'; a last line without '\n'
 * counts) becomes its ids separated by spaces. The line is any bytes: NUL
 * bytes are kept, invalid UTF-8 is read as Rust's String::from_utf8_lossy
 * reads it (one U+FFFD per maximal invalid sequence), the way the tokenizer
 * library takes any bytes. With --decode, each line of ids separated
 * by spaces or tabs becomes the decoded text, with every newline inside it
 * written as the two characters `\n` (so one line in gives one line out;
 * nothing else is escaped, so this is not reversible when the text holds a
 * literal backslash-n: --jsonl is the lossless mode). Decoding a line that
 * came from plain encoding gives back that line.
 *
 * --jsonl: each line is a JSON object. Encoding replaces its "text" (a
 * string) by "ids" at the same place; decoding replaces its "ids" (an array
 * of integers) by "text". Every other member is copied byte for byte, in
 * order (a member named like the output field is dropped; duplicate keys
 * are an error). Blank lines stay blank. Output is compact, non-ASCII
 * characters as they are.
 *
 * Special tokens: encoding adds them as HF's add_special_tokens=True
 * (the post-processor's BOS/EOS) unless --no-special; decoding keeps them
 * unless --skip-special (HF's skip_special_tokens).
 *
 * --chat: each line {"messages": [{"role","content"}...]} is rendered with
 * the chat template (the model's, or --template) and encoded without added
 * special tokens (as apply_chat_template does); "messages" is replaced by
 * "text" (the prompt) and "ids".
 *
 * --threads N processes N lines at a time (output order is input order).
 * -v prints a summary on stderr: lines, tokens, seconds, tokens/s.
 * Output is block-buffered unless stdout is a terminal.
 * Errors are one line, "ggtok: stdin line N: ...", exit status 1; the lines
 * before it have been written. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "ggfmt/ggfmt.h"
#include "ggfmt/utf8.h"
#include "models/chat.h"
#include "models/tokenizer.h"
#include "tools/common.h"

static const char *TOOL = "ggtok";

enum { BATCH_LINES = 4096, BATCH_BYTES = 8 << 20 };

typedef struct ctx {
    const gg_tokenizer *tok;
    int jsonl, special, decode, skip_special;
    int chat, gen_prompt;   /* --chat, --add-generation-prompt */
    const char *template_src; /* --chat: Jinja source */
} ctx;

/* One input line and what it became: out (ending in '\n') or err. */
typedef struct line {
    char *in;
    size_t inlen;
    long no;
    char *out;
    size_t outlen;
    size_t ntok; /* ids encoded or decoded */
    char *err;
} line;

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) gg_die(TOOL, "out of memory");
    return q;
}

static void buf_reserve(buf *b, size_t extra) {
    if (b->n + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra) cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

static void buf_put(buf *b, const char *s, size_t n) {
    buf_reserve(b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void set_err(line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(line *l, const char *fmt, ...) {
    char msg[GG_ERR_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    l->err = strdup(msg);
    if (!l->err) gg_die(TOOL, "out of memory");
}

static void set_out(line *l, buf *b) {
    l->out = b->p;
    l->outlen = b->n;
}

/* Append the decimal form of a non-negative id. */
static void put_id(buf *b, int32_t id) {
    char tmp[16];
    int k = 0;
    uint32_t v = id < 0 ? (uint32_t)(-(int64_t)id) : (uint32_t)id;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (id < 0) tmp[k++] = '-';
    buf_reserve(b, (size_t)k);
    while (k) b->p[b->n++] = tmp[--k];
}

/* A short, printable quote of bad input for an error message. */
static void quote(char *dst, size_t cap, const char *s, size_t n) {
    size_t j = 0, lim = n < cap - 4 ? n : cap - 4;
    for (size_t i = 0; i < lim; i++) {
        unsigned char ch = (unsigned char)s[i];
        dst[j++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    if (lim < n) memcpy(dst + j, "...", 3), j += 3;
    dst[j] = 0;
}

static void encode_plain(const ctx *c, line *l) {
    int32_t *ids = NULL;
    size_t n = 0;
    gg_err e;
    if (gg_tokenizer_encode(c->tok, l->in, l->inlen, c->special, &ids, &n, &e)) {
        set_err(l, "%s", e.msg);
        return;
    }
    buf b = {0};
    buf_reserve(&b, n * 8 + 1);
    for (size_t i = 0; i < n; i++) {
        if (i) buf_put(&b, " ", 1);
        put_id(&b, ids[i]);
    }
    buf_put(&b, "\n", 1);
    free(ids);
    l->ntok = n;
    set_out(l, &b);
}

static void decode_plain(const ctx *c, line *l) {
    const char *p = l->in, *end = l->in + l->inlen;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    while (p < end) {
        if (*p == ' ' || *p == '\t' || *p == '\r') {
            p++;
            continue;
        }
        const char *s = p;
        while (p < end && *p != ' ' && *p != '\t' && *p != '\r') p++;
        int64_t v = 0;
        int ok = 1;
        for (const char *q = s; q < p && ok; q++) {
            if (*q < '0' || *q > '9') ok = 0;
            else if ((v = v * 10 + (*q - '0')) > INT32_MAX) ok = 0;
        }
        if (!ok) {
            char qs[48];
            quote(qs, sizeof qs, s, (size_t)(p - s));
            free(ids);
            set_err(l, "'%s' is not a token id", qs);
            return;
        }
        if (n == cap) ids = xrealloc(ids, (cap = cap ? cap * 2 : 64) * sizeof *ids);
        ids[n++] = (int32_t)v;
    }
    char *text = NULL;
    size_t len = 0;
    gg_err e;
    int rc = gg_tokenizer_decode(c->tok, ids, n, c->skip_special, &text, &len, &e);
    free(ids);
    if (rc) {
        set_err(l, "%s", e.msg);
        return;
    }
    l->ntok = n;
    buf b = {0};
    buf_reserve(&b, len + 1);
    for (const char *q = text, *qe = text + len; q < qe;) {
        const char *nl = memchr(q, '\n', (size_t)(qe - q));
        buf_put(&b, q, (size_t)((nl ? nl : qe) - q));
        if (!nl) break;
        buf_put(&b, "\\n", 2);
        q = nl + 1;
    }
    buf_put(&b, "\n", 1);
    free(text);
    set_out(l, &b);
}

static int key_is(const char *k, size_t klen, const char *name) {
    return klen == strlen(name) && !memcmp(k, name, klen);
}

/* Append s[0..n) (valid UTF-8) as a JSON string, non-ASCII as is. */
static void put_json_string(buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    buf_reserve(b, n + 2);
    b->p[b->n++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char e = 0;
        switch (ch) {
        case '"': e = '"'; break;
        case '\\': e = '\\'; break;
        case '\n': e = 'n'; break;
        case '\r': e = 'r'; break;
        case '\t': e = 't'; break;
        case '\b': e = 'b'; break;
        case '\f': e = 'f'; break;
        default: break;
        }
        if (e) {
            char esc[2] = {'\\', e};
            buf_put(b, esc, 2);
        } else if (ch < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            buf_put(b, esc, 6);
        } else {
            buf_reserve(b, 1);
            b->p[b->n++] = (char)ch;
        }
    }
    buf_put(b, "\"", 1);
}

/* A scanner over JSON text that jansson has already accepted (so it is
 * well formed): used to pass fields through byte for byte. */
static const char *skip_ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}
static const char *skip_string(const char *p, const char *e) {
    for (p++; p < e && *p != '"'; p++)
        if (*p == '\\') p++;
    return p + 1;
}
static const char *skip_value(const char *p, const char *e) {
    if (*p == '"') return skip_string(p, e);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < e) {
            if (*p == '"') {
                p = skip_string(p, e);
                continue;
            }
            if (*p == '{' || *p == '[') depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0) return p + 1;
            p++;
        }
        return p;
    }
    while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' && *p != '\n' &&
           *p != '\r')
        p++;
    return p;
}

/* The object text src (parsed as obj) with its member `from` replaced in
 * place by "to": val (JSON text), any member already named `to` dropped,
 * every other member copied byte for byte; then '\n'. */
static void rewrite_object(buf *b, const char *src, size_t len, json_t *obj, const char *from,
                           const char *to, const buf *val) {
    const char *p = skip_ws(src, src + len), *e = src + len;
    void *it = json_object_iter(obj);
    int first = 1;
    buf_put(b, "{", 1);
    p = skip_ws(p + 1, e); /* past '{' */
    while (p < e && *p != '}' && it) {
        const char *k0 = p, *k1 = skip_string(p, e);
        p = skip_ws(skip_ws(k1, e) + 1, e); /* past ':' */
        const char *v0 = p, *v1 = skip_value(p, e);
        p = skip_ws(v1, e);
        if (p < e && *p == ',') p = skip_ws(p + 1, e);
        const char *k = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it);
        it = json_object_iter_next(obj, it);
        if (key_is(k, klen, to)) continue;
        if (!first) buf_put(b, ",", 1);
        first = 0;
        if (key_is(k, klen, from)) {
            put_json_string(b, to, strlen(to));
            buf_put(b, ":", 1);
            buf_put(b, val->p, val->n);
        } else {
            buf_put(b, k0, (size_t)(k1 - k0));
            buf_put(b, ":", 1);
            buf_put(b, v0, (size_t)(v1 - v0));
        }
    }
    buf_put(b, "}\n", 2);
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return 0;
    return 1;
}

/* Integers are read as reals so that a big integer in a field passed
 * through is no error (ids are checked to be whole numbers). */
enum { JSONL_FLAGS = JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL };

/* The JSON object of a --jsonl / --chat line, or NULL when the line is
 * done: a blank line (output blank) or an error (set on l). */
static json_t *line_object(line *l) {
    if (is_blank(l->in, l->inlen)) {
        buf b = {0};
        buf_put(&b, "\n", 1);
        set_out(l, &b);
        return NULL;
    }
    json_error_t je;
    json_t *obj = json_loadb(l->in, l->inlen, JSONL_FLAGS, &je);
    if (!obj) {
        set_err(l, "bad JSON at column %d: %s", je.column, je.text);
        return NULL;
    }
    if (!json_is_object(obj)) {
        json_decref(obj);
        set_err(l, "expected a JSON object");
        return NULL;
    }
    return obj;
}

static void do_jsonl(const ctx *c, line *l) {
    buf b = {0};
    json_t *obj = line_object(l);
    if (!obj) return;
    buf val = {0};
    gg_err e;
    if (!c->decode) {
        json_t *t = json_object_get(obj, "text");
        if (!t || !json_is_string(t)) {
            json_decref(obj);
            set_err(l, t ? "\"text\" is not a string" : "no \"text\" field");
            return;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        if (gg_tokenizer_encode(c->tok, json_string_value(t), json_string_length(t), c->special, &ids, &n,
                                &e)) {
            json_decref(obj);
            set_err(l, "%s", e.msg);
            return;
        }
        buf_reserve(&val, n * 8 + 2);
        buf_put(&val, "[", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) buf_put(&val, ",", 1);
            put_id(&val, ids[i]);
        }
        buf_put(&val, "]", 1);
        free(ids);
        l->ntok = n;
    } else {
        json_t *a = json_object_get(obj, "ids");
        if (!a || !json_is_array(a)) {
            json_decref(obj);
            set_err(l, a ? "\"ids\" is not an array" : "no \"ids\" field");
            return;
        }
        size_t n = json_array_size(a);
        int32_t *ids = xrealloc(NULL, n * sizeof *ids);
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_array_get(a, i);
            double x = json_is_number(v) ? json_number_value(v) : -1;
            if (!(x >= 0 && x <= INT32_MAX && x == (double)(int32_t)x)) {
                free(ids);
                json_decref(obj);
                set_err(l, "ids[%zu] is not a token id", i);
                return;
            }
            ids[i] = (int32_t)x;
        }
        char *text = NULL;
        size_t len = 0;
        int rc = gg_tokenizer_decode(c->tok, ids, n, c->skip_special, &text, &len, &e);
        free(ids);
        if (rc) {
            json_decref(obj);
            set_err(l, "%s", e.msg);
            return;
        }
        if (gg_utf8_invalid_at(text, len) != (size_t)-1) {
            free(text);
            json_decref(obj);
            set_err(l, "decoded text is not valid UTF-8");
            return;
        }
        put_json_string(&val, text, len);
        free(text);
        l->ntok = n;
    }
    buf_reserve(&b, l->inlen + val.n + 16);
    rewrite_object(&b, l->in, l->inlen, obj, c->decode ? "ids" : "text", c->decode ? "text" : "ids", &val);
    free(val.p);
    json_decref(obj);
    set_out(l, &b);
}

/* --chat: {"messages": [{"role","content"}...], "add_generation_prompt"?}
 * → the rendered prompt as "text" and its ids as "ids" (encoded without
 * adding special tokens, as HF's apply_chat_template does: the template
 * writes them). */
static void do_chat(const ctx *c, line *l) {
    buf b = {0};
    json_t *obj = line_object(l);
    if (!obj) return;
    json_t *m = json_object_get(obj, "messages");
    size_t n = json_is_array(m) ? json_array_size(m) : 0;
    if (!json_is_array(m)) {
        json_decref(obj);
        set_err(l, m ? "\"messages\" is not an array" : "no \"messages\" field");
        return;
    }
    gg_chat_msg *msgs = xrealloc(NULL, (n ? n : 1) * sizeof *msgs);
    for (size_t i = 0; i < n; i++) {
        json_t *mi = json_array_get(m, i), *r = json_object_get(mi, "role"), *t = json_object_get(mi, "content");
        if (!json_is_string(r) || !json_is_string(t)) {
            free(msgs);
            json_decref(obj);
            set_err(l, "messages[%zu] needs string \"role\" and \"content\"", i);
            return;
        }
        msgs[i] = (gg_chat_msg){json_string_value(r), json_string_value(t)};
    }
    json_t *g = json_object_get(obj, "add_generation_prompt");
    gg_chat_opts o = {.add_generation_prompt = g ? json_is_true(g) : c->gen_prompt,
                      .bos_token = gg_tokenizer_bos_token(c->tok),
                      .eos_token = gg_tokenizer_eos_token(c->tok)};
    char *text = NULL;
    size_t tlen = 0;
    gg_err e;
    int rc = gg_chat_render(c->template_src, msgs, n, &o, &text, &tlen, &e);
    free(msgs);
    if (rc) {
        json_decref(obj);
        set_err(l, "%s", e.msg);
        return;
    }
    int32_t *ids = NULL;
    size_t nid = 0;
    if (gg_tokenizer_encode(c->tok, text, tlen, 0, &ids, &nid, &e)) {
        free(text);
        json_decref(obj);
        set_err(l, "%s", e.msg);
        return;
    }
    /* "text":"...","ids":[...] in the place of "messages". */
    buf val = {0};
    put_json_string(&val, text, tlen);
    buf_put(&val, ",\"ids\":[", 8);
    for (size_t i = 0; i < nid; i++) {
        if (i) buf_put(&val, ",", 1);
        put_id(&val, ids[i]);
    }
    buf_put(&val, "]", 1);
    l->ntok = nid;
    free(ids);
    free(text);
    json_object_del(obj, "ids"); /* an input "ids" would be duplicated */
    buf_reserve(&b, l->inlen + val.n + 16);
    rewrite_object(&b, l->in, l->inlen, obj, "messages", "text", &val);
    free(val.p);
    json_decref(obj);
    set_out(l, &b);
}

static void process(const ctx *c, line *l) {
    if (c->chat) do_chat(c, l);
    else if (c->jsonl) do_jsonl(c, l);
    else if (c->decode) decode_plain(c, l);
    else encode_plain(c, l);
}

typedef struct pool {
    const ctx *c;
    line *lines;
    size_t n;
    atomic_size_t next;
} pool;

static void *worker(void *arg) {
    pool *p = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n) return NULL;
        process(p->c, &p->lines[i]);
    }
}

/* Process lines[0..n) on nthreads threads, write them in order, free them,
 * add their ids to *ntok; exit at the first line in error (after writing
 * the lines before it). */
static void run_batch(const ctx *c, line *lines, size_t n, int nthreads, uint64_t *ntok) {
    if (nthreads <= 1 || n <= 1) {
        for (size_t i = 0; i < n; i++) process(c, &lines[i]);
    } else {
        pool p = {.c = c, .lines = lines, .n = n};
        atomic_init(&p.next, 0);
        pthread_t th[256];
        int k = nthreads - 1, started = 0;
        for (int t = 0; t < k; t++, started++)
            if (pthread_create(&th[t], NULL, worker, &p)) break;
        worker(&p);
        for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    }
    for (size_t i = 0; i < n; i++) {
        line *l = &lines[i];
        if (l->err) {
            fflush(stdout);
            gg_die(TOOL, "stdin line %ld: %s", l->no, l->err);
        }
        if (fwrite(l->out, 1, l->outlen, stdout) != l->outlen)
            gg_die(TOOL, "writing stdout: %s", strerror(errno));
        *ntok += l->ntok;
        free(l->out);
        free(l->in);
        memset(l, 0, sizeof *l);
    }
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static int has_gg_magic(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char m[8];
    size_t k = fread(m, 1, sizeof m, f);
    fclose(f);
    return k == sizeof m && !memcmp(m, GG_MAGIC, sizeof m);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: ggtok -m SRC [options] < INPUT > OUTPUT\n"
            "Encode each line of stdin into token ids (or decode ids into text) with the\n"
            "tokenizer of SRC: a .gg model, an HF folder or a tokenizer.json.\n"
            "\n"
            "  -m, --model SRC     the tokenizer's source (required)\n"
            "      --jsonl         lines are JSON objects: {\"text\": ...} -> {\"ids\": [...]}\n"
            "                      (with --decode the reverse); other fields pass through\n"
            "      --decode        ids -> text (plain mode: ids separated by spaces in, the\n"
            "                      text out with each newline written as \\n)\n"
            "      --no-special    encode without the BOS/EOS tokens the model adds\n"
            "                      (default: as HF add_special_tokens=True)\n"
            "      --skip-special  decode without special tokens (HF skip_special_tokens)\n"
            "      --chat          lines are {\"messages\": [{\"role\",\"content\"}...]}: render\n"
            "                      them with the chat template, output {\"text\", \"ids\"}\n"
            "                      (ids without added BOS/EOS: the template writes them)\n"
            "      --template T    chat template: alpaca, chatml, llama2, llama3 or a Jinja\n"
            "                      file (default: the model's chat_template)\n"
            "      --add-generation-prompt\n"
            "                      end the prompt with the assistant header (a line's own\n"
            "                      \"add_generation_prompt\" field wins)\n"
            "      --threads N     process N lines at a time (default 1)\n"
            "  -v, --verbose       a summary on stderr: lines, tokens, seconds, tokens/s\n"
            "  -h, --help          this help\n"
            "      --version       print the version\n");
}

int main(int argc, char **argv) {
    ctx c = {.special = 1};
    const char *src = NULL;
    long nthreads = 1;
    int verbose = 0;
    const char *template_arg = NULL;
    enum { O_JSONL = 256, O_NOSPECIAL, O_DECODE, O_SKIP, O_THREADS, O_VERSION, O_CHAT, O_TEMPLATE, O_GENPROMPT };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},     {"jsonl", no_argument, 0, O_JSONL},
        {"no-special", no_argument, 0, O_NOSPECIAL}, {"decode", no_argument, 0, O_DECODE},
        {"skip-special", no_argument, 0, O_SKIP},  {"threads", required_argument, 0, O_THREADS},
        {"verbose", no_argument, 0, 'v'},          {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, O_VERSION},    {"chat", no_argument, 0, O_CHAT},
        {"template", required_argument, 0, O_TEMPLATE},
        {"add-generation-prompt", no_argument, 0, O_GENPROMPT}, {0, 0, 0, 0}};
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":m:vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'm': src = optarg; break;
        case O_JSONL: c.jsonl = 1; break;
        case O_NOSPECIAL: c.special = 0; break;
        case O_DECODE: c.decode = 1; break;
        case O_SKIP: c.skip_special = 1; break;
        case O_THREADS:
            if (gg_parse_int(optarg, 1, 256, &nthreads))
                gg_die(TOOL, "--threads: '%s' is not a number from 1 to 256", optarg);
            break;
        case O_CHAT: c.chat = 1; break;
        case O_TEMPLATE: template_arg = optarg; break;
        case O_GENPROMPT: c.gen_prompt = 1; break;
        case 'v': verbose = 1; break;
        case 'h': usage(stdout); return 0;
        case O_VERSION: printf("ggtok %s\n", GG_VERSION_STRING); return 0;
        case ':': gg_die(TOOL, "%s needs an argument (see ggtok --help)", argv[optind - 1]);
        default: gg_die(TOOL, "unknown option '%s' (see ggtok --help)", argv[optind - 1]);
        }
    }
    if (optind < argc) gg_die(TOOL, "unexpected argument '%s': input is read from stdin", argv[optind]);
    if (!src) gg_die(TOOL, "missing -m SRC (a .gg model, an HF folder or a tokenizer.json)");

    double t0 = gg_now();
    gg_err err;
    gg_file *f = NULL;
    gg_tokenizer *tok = NULL;
    if (has_gg_magic(src) || ends_with(src, ".gg")) {
        if (gg_file_open(&f, src, GG_OPEN_NO_SPOTCHECK, &err)) gg_die(TOOL, "%s", err.msg);
        if (gg_tokenizer_load_gg(&tok, f, &err)) {
            gg_file_close(f);
            gg_die(TOOL, "%s", err.msg);
        }
    } else if (gg_tokenizer_load_path(&tok, src, &err)) {
        gg_die(TOOL, "%s", err.msg);
    }
    c.tok = tok;
    char *template_file = NULL;
    if (c.chat && c.decode) gg_die(TOOL, "--chat and --decode do not go together");
    if (template_arg && !c.chat) gg_die(TOOL, "--template needs --chat");
    if (c.chat) {
        if (template_arg && gg_chat_builtin(template_arg)) c.template_src = gg_chat_builtin(template_arg);
        else if (template_arg) {
            FILE *tf = fopen(template_arg, "rb");
            if (!tf) gg_die(TOOL, "--template '%s': not a built-in (alpaca, chatml, llama2, llama3) and not a readable file: %s",
                            template_arg, strerror(errno));
            size_t cap = 0, n = 0, k;
            char chunk[65536];
            while ((k = fread(chunk, 1, sizeof chunk, tf)) > 0) {
                template_file = xrealloc(template_file, (cap = n + k + 1));
                memcpy(template_file + n, chunk, k);
                n += k;
            }
            fclose(tf);
            if (!template_file) template_file = xrealloc(NULL, 1);
            template_file[n] = 0;
            c.template_src = template_file;
        } else if (!(c.template_src = gg_tokenizer_chat_template(tok)))
            gg_die(TOOL, "%s has no chat_template: pass --template alpaca|chatml|llama2|llama3|FILE", src);
    }
    double t1 = gg_now();

    static char obuf[1 << 20];
    if (!isatty(STDOUT_FILENO)) setvbuf(stdout, obuf, _IOFBF, sizeof obuf);

    /* One line at a time with one thread (output follows input closely);
     * batches of lines with several. */
    size_t max_lines = nthreads > 1 ? BATCH_LINES : 1;
    line *lines = xrealloc(NULL, max_lines * sizeof *lines);
    memset(lines, 0, max_lines * sizeof *lines);
    size_t nl = 0, bytes = 0;
    uint64_t ntok = 0;
    long no = 0;
    for (;;) {
        char *lp = NULL;
        size_t cap = 0;
        errno = 0;
        ssize_t r = getline(&lp, &cap, stdin);
        if (r < 0) {
            free(lp);
            if (ferror(stdin)) gg_die(TOOL, "reading stdin: %s", strerror(errno ? errno : EIO));
            break;
        }
        size_t len = (size_t)r;
        if (len && lp[len - 1] == '\n') len--;
        lines[nl++] = (line){.in = lp, .inlen = len, .no = ++no};
        bytes += len;
        if (nl == max_lines || bytes >= BATCH_BYTES) {
            run_batch(&c, lines, nl, (int)nthreads, &ntok);
            nl = bytes = 0;
        }
    }
    run_batch(&c, lines, nl, (int)nthreads, &ntok);
    free(lines);
    if (fflush(stdout) || ferror(stdout)) gg_die(TOOL, "writing stdout: %s", strerror(errno ? errno : EIO));
    if (verbose) {
        double t2 = gg_now(), dt = t2 - t1;
        fprintf(stderr, "ggtok: %ld lines, %llu tokens %s in %.3f s (%.0f tokens/s), load %.3f s\n", no,
                (unsigned long long)ntok, c.decode ? "decoded" : "encoded", dt, dt > 0 ? (double)ntok / dt : 0.0,
                t1 - t0);
    }
    free(template_file);
    gg_tokenizer_free(tok);
    if (f) gg_file_close(f);
    return 0;
}
