/* task_yaml.c — the YAML subset of task files, read into a jansson tree
 * (gg_task_yaml_parse, task.h). Indentation-based block mappings and
 * sequences, `- key: value` items, flow collections, quoted and plain
 * scalars, | and > block scalars. What lies outside the subset is an error
 * naming its line, never a guess. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "models/task.h"

#define MAX_DEPTH 64

typedef struct yline {
    int indent; /* columns of leading spaces */
    const char *s; /* text after the indentation */
    size_t len;    /* without the line end */
    int no;        /* 1-based */
    int blank;     /* blank or comment only */
} yline;

typedef struct yparser {
    yline *l;
    size_t n;
    const char *label;
    gg_err *err;
    int depth;
} yparser;

static int yerr(yparser *p, int line, const char *fmt, const char *arg) {
    char m[400];
    snprintf(m, sizeof m, fmt, arg ? arg : "");
    for (char *c = m; *c; c++) /* one line, whatever a quoted key held */
        if ((unsigned char)*c < 0x20) *c = ' ';
    return gg_errf(p->err, "%s:%d: %s", p->label, line, m);
}

static size_t next_nonblank(const yparser *p, size_t i) {
    while (i < p->n && p->l[i].blank) i++;
    return i;
}

/* ---- scalars ---- */

static int is_seq_item(const yline *l) { return l->len >= 1 && l->s[0] == '-' && (l->len == 1 || l->s[1] == ' '); }

static void put_utf8(char *o, size_t *k, unsigned long c) {
    if (c < 0x80) o[(*k)++] = (char)c;
    else if (c < 0x800) {
        o[(*k)++] = (char)(0xC0 | (c >> 6));
        o[(*k)++] = (char)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        o[(*k)++] = (char)(0xE0 | (c >> 12));
        o[(*k)++] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[(*k)++] = (char)(0x80 | (c & 0x3F));
    } else {
        o[(*k)++] = (char)(0xF0 | (c >> 18));
        o[(*k)++] = (char)(0x80 | ((c >> 12) & 0x3F));
        o[(*k)++] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[(*k)++] = (char)(0x80 | (c & 0x3F));
    }
}

/* A quoted scalar starting at s[0] (' or "); *used = bytes consumed. */
static json_t *quoted(yparser *p, int line, const char *s, size_t len, size_t *used) {
    char q = s[0];
    char *o = malloc(len * 4 + 1);
    if (!o) return yerr(p, line, "out of memory", NULL), NULL;
    size_t k = 0, i = 1;
    for (; i < len; i++) {
        char c = s[i];
        if (c == q) {
            if (q == '\'' && i + 1 < len && s[i + 1] == '\'') {
                o[k++] = '\'';
                i++;
                continue;
            }
            break;
        }
        if (q == '"' && c == '\\') {
            if (++i >= len) break;
            int nhex = 0;
            switch (s[i]) {
            case 'n': o[k++] = '\n'; break;
            case 't': case '\t': o[k++] = '\t'; break;
            case 'r': o[k++] = '\r'; break;
            case '0':
                free(o);
                return yerr(p, line, "a NUL character (\\0) in a string", NULL), NULL;
            case 'a': o[k++] = '\a'; break;
            case 'b': o[k++] = '\b'; break;
            case 'e': o[k++] = 0x1b; break;
            case 'f': o[k++] = '\f'; break;
            case 'v': o[k++] = '\v'; break;
            case ' ': o[k++] = ' '; break;
            case '"': o[k++] = '"'; break;
            case '/': o[k++] = '/'; break;
            case '\\': o[k++] = '\\'; break;
            case 'x': nhex = 2; break;
            case 'u': nhex = 4; break;
            case 'U': nhex = 8; break;
            default: {
                char b[2] = {s[i], 0};
                free(o);
                return yerr(p, line, "unknown escape \\%s in a double-quoted string", b), NULL;
            }
            }
            if (nhex) {
                unsigned long c32 = 0;
                for (int h = 0; h < nhex; h++) {
                    if (i + 1 >= len || !isxdigit((unsigned char)s[i + 1])) {
                        free(o);
                        return yerr(p, line, "bad hex escape in a double-quoted string", NULL), NULL;
                    }
                    char d = s[++i];
                    c32 = c32 * 16 + (unsigned long)(isdigit((unsigned char)d) ? d - '0' : (tolower((unsigned char)d) - 'a' + 10));
                }
                if (c32 == 0 || c32 > 0x10FFFF || (c32 >= 0xD800 && c32 < 0xE000)) {
                    free(o);
                    return yerr(p, line, "escape outside Unicode (or NUL)", NULL), NULL;
                }
                put_utf8(o, &k, c32);
            }
            continue;
        }
        o[k++] = c;
    }
    if (i >= len) {
        free(o);
        return yerr(p, line, "unterminated quoted string (quoted strings end on their line)", NULL), NULL;
    }
    *used = i + 1;
    json_t *v = json_stringn(o, k);
    free(o);
    if (!v) yerr(p, line, "string is not valid UTF-8", NULL);
    return v;
}

static int ci_in(const char *s, size_t n, const char *const *words) {
    for (; *words; words++)
        if (strlen(*words) == n && memcmp(*words, s, n) == 0) return 1;
    return 0;
}

/* A plain scalar: null, bool (YAML 1.1 as PyYAML), int, float, or a string. */
static json_t *plain(yparser *p, int line, const char *s, size_t n) {
    static const char *const nulls[] = {"null", "Null", "NULL", "~", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", NULL};
    if (n == 0 || ci_in(s, n, nulls)) return json_null();
    if (ci_in(s, n, trues)) return json_true();
    if (ci_in(s, n, falses)) return json_false();
    if (s[0] == '&' || s[0] == '*' || s[0] == '!')
        return yerr(p, line, "anchors, aliases and tags (%s) are not supported", s[0] == '!' ? "e.g. !function" : "& *"),
               NULL;
    if (s[0] == '|' || s[0] == '>') return yerr(p, line, "block scalar indicator in the wrong place", NULL), NULL;
    if (s[0] == '@' || s[0] == '`') return yerr(p, line, "a plain value may not start with @ or `", NULL), NULL;
    char buf[64];
    if (n < sizeof buf) {
        memcpy(buf, s, n);
        buf[n] = 0;
        size_t i = (buf[0] == '-' || buf[0] == '+') ? 1 : 0, digits = 0;
        while (isdigit((unsigned char)buf[i])) i++, digits++;
        if (digits && !buf[i]) {
            errno = 0;
            long long v = strtoll(buf, NULL, 10);
            if (!errno) return json_integer(v);
        }
        if (strpbrk(buf, ".eE") && !strpbrk(buf, "xX")) {
            char *end;
            errno = 0;
            double d = strtod(buf, &end);
            if (!*end && end != buf && !errno && d == d && d - d == 0) return json_real(d);
        }
    }
    json_t *v = json_stringn(s, n);
    if (!v) yerr(p, line, "value is not valid UTF-8", NULL);
    return v;
}

/* ---- flow collections ---- */

typedef struct flow {
    const char *s;
    size_t n, i;
    int line;
} flow;

static void fskip(flow *f) {
    while (f->i < f->n && (f->s[f->i] == ' ' || f->s[f->i] == '\t')) f->i++;
}

static json_t *flow_value(yparser *p, flow *f);

static json_t *flow_scalar(yparser *p, flow *f, int in_map_key) {
    fskip(f);
    if (f->i >= f->n) return yerr(p, f->line, "unexpected end of a flow collection", NULL), NULL;
    char c = f->s[f->i];
    if (c == '"' || c == '\'') {
        size_t used;
        json_t *v = quoted(p, f->line, f->s + f->i, f->n - f->i, &used);
        if (v) f->i += used;
        return v;
    }
    size_t a = f->i;
    while (f->i < f->n) {
        char d = f->s[f->i];
        if (d == ',' || d == ']' || d == '}' || d == '[' || d == '{') break;
        if (d == ':' && (f->i + 1 >= f->n || f->s[f->i + 1] == ' ' || in_map_key)) break;
        if (d == '#' && f->i > a && f->s[f->i - 1] == ' ') return yerr(p, f->line, "a comment inside a flow collection", NULL), NULL;
        f->i++;
    }
    size_t b = f->i;
    while (b > a && (f->s[b - 1] == ' ' || f->s[b - 1] == '\t')) b--;
    return plain(p, f->line, f->s + a, b - a);
}

static json_t *flow_value(yparser *p, flow *f) {
    fskip(f);
    if (f->i >= f->n) return yerr(p, f->line, "unexpected end of a flow collection", NULL), NULL;
    if (++p->depth > MAX_DEPTH) return yerr(p, f->line, "nested too deep", NULL), NULL;
    char c = f->s[f->i];
    json_t *v = NULL;
    if (c == '[') {
        f->i++;
        v = json_array();
        fskip(f);
        if (f->i < f->n && f->s[f->i] == ']') {
            f->i++;
            goto done;
        }
        for (;;) {
            json_t *x = flow_value(p, f);
            if (!x) goto fail;
            json_array_append_new(v, x);
            fskip(f);
            if (f->i < f->n && f->s[f->i] == ',') {
                f->i++;
                fskip(f);
                if (f->i < f->n && f->s[f->i] == ']') { /* trailing comma */
                    f->i++;
                    goto done;
                }
                continue;
            }
            if (f->i < f->n && f->s[f->i] == ']') {
                f->i++;
                goto done;
            }
            yerr(p, f->line, "expected ',' or ']' in a flow list", NULL);
            goto fail;
        }
    } else if (c == '{') {
        f->i++;
        v = json_object();
        fskip(f);
        if (f->i < f->n && f->s[f->i] == '}') {
            f->i++;
            goto done;
        }
        for (;;) {
            json_t *k = flow_scalar(p, f, 1);
            if (!k) goto fail;
            if (!json_is_string(k)) {
                char kb[64];
                char *ks = json_dumps(k, JSON_ENCODE_ANY);
                snprintf(kb, sizeof kb, "%s", ks ? ks : "null");
                free(ks);
                json_decref(k);
                k = json_string(kb);
                if (!k) {
                    yerr(p, f->line, "bad key in a flow mapping", NULL);
                    goto fail;
                }
            }
            fskip(f);
            if (f->i >= f->n || f->s[f->i] != ':') {
                json_decref(k);
                yerr(p, f->line, "expected ':' in a flow mapping", NULL);
                goto fail;
            }
            f->i++;
            json_t *x = flow_value(p, f);
            if (!x) {
                json_decref(k);
                goto fail;
            }
            if (json_object_get(v, json_string_value(k))) {
                yerr(p, f->line, "duplicate key '%s'", json_string_value(k));
                json_decref(k);
                json_decref(x);
                goto fail;
            }
            json_object_set_new(v, json_string_value(k), x);
            json_decref(k);
            fskip(f);
            if (f->i < f->n && f->s[f->i] == ',') {
                f->i++;
                continue;
            }
            if (f->i < f->n && f->s[f->i] == '}') {
                f->i++;
                goto done;
            }
            yerr(p, f->line, "expected ',' or '}' in a flow mapping", NULL);
            goto fail;
        }
    } else {
        v = flow_scalar(p, f, 0);
        p->depth--;
        return v;
    }
done:
    p->depth--;
    return v;
fail:
    p->depth--;
    json_decref(v);
    return NULL;
}

/* Bytes of s[0..n) up to a ` #` comment, trailing blanks trimmed. */
static size_t strip_comment(const char *s, size_t n) {
    size_t e = n;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '#' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t')) {
            e = i;
            break;
        }
    while (e > 0 && (s[e - 1] == ' ' || s[e - 1] == '\t')) e--;
    return e;
}

/* An inline value (after "key: " or "- ") on line *i, which may continue a
 * flow collection over the following lines. */
static json_t *inline_value(yparser *p, size_t *i, const char *s, size_t n) {
    int line = p->l[*i].no;
    if (n && (s[0] == '[' || s[0] == '{')) {
        /* gather lines until the brackets balance */
        size_t cap = n + 2, len = 0;
        char *buf = malloc(cap);
        if (!buf) return yerr(p, line, "out of memory", NULL), NULL;
        const char *cs = s;
        size_t cn = n;
        int depth = 0;
        char q = 0;
        for (;;) {
            for (size_t k = 0; k < cn; k++) {
                char c = cs[k];
                if (q) {
                    if (c == q) q = 0;
                    else if (c == '\\' && q == '"') k++;
                } else if (c == '"' || c == '\'') q = c;
                else if (c == '#' && (k == 0 || cs[k - 1] == ' ')) {
                    cn = k;
                    break;
                } else if (c == '[' || c == '{') depth++;
                else if (c == ']' || c == '}') depth--;
            }
            if (len + cn + 2 > cap) {
                cap = (len + cn + 2) * 2;
                char *nb = realloc(buf, cap);
                if (!nb) {
                    free(buf);
                    return yerr(p, line, "out of memory", NULL), NULL;
                }
                buf = nb;
            }
            memcpy(buf + len, cs, cn);
            len += cn;
            buf[len++] = ' ';
            if (depth <= 0 || q) break;
            size_t j = *i + 1;
            while (j < p->n && p->l[j].blank) j++;
            if (j >= p->n) {
                free(buf);
                return yerr(p, line, "unterminated flow collection", NULL), NULL;
            }
            *i = j;
            cs = p->l[j].s;
            cn = p->l[j].len;
        }
        flow f = {.s = buf, .n = len, .i = 0, .line = line};
        json_t *v = flow_value(p, &f);
        if (v) {
            fskip(&f);
            if (f.i < f.n) {
                json_decref(v);
                v = NULL;
                yerr(p, p->l[*i].no, "unexpected text after a flow collection", NULL);
            }
        }
        free(buf);
        return v;
    }
    if (n && (s[0] == '"' || s[0] == '\'')) {
        size_t used;
        json_t *v = quoted(p, line, s, n, &used);
        if (!v) return NULL;
        if (strip_comment(s + used, n - used) != 0) {
            json_decref(v);
            return yerr(p, line, "unexpected text after a quoted string", NULL), NULL;
        }
        return v;
    }
    return plain(p, line, s, strip_comment(s, n));
}

/* ---- blocks ---- */

static json_t *block(yparser *p, size_t *i, int indent);

/* A | or > block scalar whose header is hdr, the lines after *i. */
static json_t *block_scalar(yparser *p, size_t *i, int parent_indent, const char *hdr, size_t hn) {
    int line = p->l[*i].no;
    char kind = hdr[0], chomp = 'c';
    for (size_t k = 1; k < hn; k++) {
        if (hdr[k] == '-' || hdr[k] == '+') chomp = hdr[k];
        else if (hdr[k] == '#' || hdr[k] == ' ') break;
        else return yerr(p, line, "unsupported block scalar header (use |, |-, |+, >, >-, >+)", NULL), NULL;
    }
    size_t j = *i + 1;
    int bi = -1;
    size_t cap = 256, len = 0;
    char *o = malloc(cap);
    if (!o) return yerr(p, line, "out of memory", NULL), NULL;
    size_t last = *i;
    int prev_text = 0;
    for (; j < p->n; j++) {
        const yline *l = &p->l[j];
        int empty = l->len == 0;
        if (!empty && bi < 0) {
            if (l->indent <= parent_indent) break;
            bi = l->indent;
        }
        if (!empty && l->indent < bi) break;
        if (empty && bi < 0) { /* leading blank line */
            if (len + 2 > cap) o = realloc(o, cap *= 2);
            o[len++] = '\n';
            continue;
        }
        size_t extra = empty ? 0 : (size_t)(l->indent - bi);
        size_t need = len + extra + l->len + 2;
        if (need > cap) {
            while (cap < need) cap *= 2;
            char *no = realloc(o, cap);
            if (!no) {
                free(o);
                return yerr(p, line, "out of memory", NULL), NULL;
            }
            o = no;
        }
        if (kind == '>' && !empty && prev_text && extra == 0 && len && o[len - 1] == '\n') o[len - 1] = ' ';
        memset(o + len, ' ', extra);
        len += extra;
        memcpy(o + len, l->s, empty ? 0 : l->len);
        len += empty ? 0 : l->len;
        o[len++] = '\n';
        prev_text = !empty && extra == 0;
        last = j;
    }
    if (chomp != '+')
        while (len && o[len - 1] == '\n') len--;
    if (chomp == 'c' && len) o[len++] = '\n';
    *i = last + 1;
    json_t *v = json_stringn(o, len);
    free(o);
    if (!v) yerr(p, line, "block scalar is not valid UTF-8", NULL);
    return v;
}

/* The value of "key:" / "- " with rest (s, n) on line *i at indent ind;
 * leaves *i after what it consumed. */
static json_t *entry_value(yparser *p, size_t *i, int ind, const char *s, size_t n, int in_map) {
    n = strip_comment(s, n) == 0 ? 0 : n;
    if (n == 0) {
        size_t j = next_nonblank(p, *i + 1);
        if (j < p->n && p->l[j].indent > ind) {
            *i = j;
            return block(p, i, p->l[j].indent);
        }
        if (in_map && j < p->n && p->l[j].indent == ind && is_seq_item(&p->l[j])) {
            *i = j;
            return block(p, i, ind);
        }
        (*i)++;
        return json_null();
    }
    if (s[0] == '|' || s[0] == '>') return block_scalar(p, i, ind, s, n);
    json_t *v = inline_value(p, i, s, n);
    (*i)++;
    return v;
}

/* Length of a plain mapping key at s (up to ": " or a final ':'), or 0. */
static size_t key_len(const char *s, size_t n) {
    if (!n || s[0] == '-' || s[0] == '[' || s[0] == '{' || s[0] == '#' || s[0] == '"' || s[0] == '\'') return 0;
    for (size_t k = 0; k < n; k++) {
        if (s[k] == ':' && (k + 1 == n || s[k + 1] == ' ')) return k;
        if (s[k] == ' ' && k + 1 < n && s[k + 1] == '#') return 0;
    }
    return 0;
}

static json_t *block(yparser *p, size_t *i, int indent) {
    *i = next_nonblank(p, *i);
    if (*i >= p->n) return json_null();
    if (++p->depth > MAX_DEPTH) return yerr(p, p->l[*i].no, "nested too deep", NULL), NULL;
    json_t *v = NULL;
    if (is_seq_item(&p->l[*i])) {
        v = json_array();
        while (*i < p->n && p->l[*i].indent == indent && is_seq_item(&p->l[*i])) {
            yline *l = &p->l[*i];
            size_t off = 1;
            while (off < l->len && l->s[off] == ' ') off++;
            const char *rest = l->s + off;
            size_t rn = l->len - off;
            json_t *x;
            if (rn && strip_comment(rest, rn) && (key_len(rest, rn) || is_seq_item(&(yline){.s = rest, .len = rn}))) {
                /* "- key: v" or "- - x": the item is a block at the column of rest */
                l->indent += (int)off;
                l->s = rest;
                l->len = rn;
                x = block(p, i, l->indent);
            } else {
                x = entry_value(p, i, indent, rest, rn, 0);
            }
            if (!x) goto fail;
            json_array_append_new(v, x);
            *i = next_nonblank(p, *i);
        }
    } else {
        v = json_object();
        while (*i < p->n && p->l[*i].indent == indent && !is_seq_item(&p->l[*i])) {
            yline *l = &p->l[*i];
            size_t kn;
            json_t *kq = NULL;
            const char *ks = l->s;
            size_t after;
            if (l->s[0] == '"' || l->s[0] == '\'') {
                size_t used;
                kq = quoted(p, l->no, l->s, l->len, &used);
                if (!kq) goto fail;
                if (used >= l->len || l->s[used] != ':') {
                    json_decref(kq);
                    yerr(p, l->no, "expected ':' after a quoted key", NULL);
                    goto fail;
                }
                ks = json_string_value(kq);
                kn = strlen(ks);
                after = used + 1;
            } else {
                kn = key_len(l->s, l->len);
                if (!kn) {
                    yerr(p, l->no, "expected 'key: value' (nested flow keys, multi-line plain values and "
                                   "'? ' keys are not supported)", NULL);
                    goto fail;
                }
                after = kn + 1;
            }
            char key[256];
            if (kn >= sizeof key) {
                json_decref(kq);
                yerr(p, l->no, "key too long", NULL);
                goto fail;
            }
            memcpy(key, ks, kn);
            key[kn] = 0;
            json_decref(kq);
            while (kn && key[kn - 1] == ' ') key[--kn] = 0;
            if (json_object_get(v, key)) {
                yerr(p, l->no, "duplicate key '%s'", key);
                goto fail;
            }
            if (!json_is_object(v) || !kn) {
                yerr(p, l->no, "empty key", NULL);
                goto fail;
            }
            while (after < l->len && l->s[after] == ' ') after++;
            json_t *x = entry_value(p, i, indent, l->s + after, l->len - after, 1);
            if (!x) goto fail;
            json_object_set_new(v, key, x);
            *i = next_nonblank(p, *i);
        }
    }
    if (*i < p->n && p->l[*i].indent > indent) {
        yerr(p, p->l[*i].no, "unexpected indentation", NULL);
        goto fail;
    }
    p->depth--;
    return v;
fail:
    p->depth--;
    json_decref(v);
    return NULL;
}

static int json_key_line(const char *buf, size_t len, const char *key) {
    size_t kn = strlen(key);
    for (size_t i = 0; i + kn + 2 <= len; i++)
        if (buf[i] == '"' && memcmp(buf + i + 1, key, kn) == 0 && buf[i + 1 + kn] == '"') {
            int line = 1;
            for (size_t k = 0; k < i; k++) line += buf[k] == '\n';
            return line;
        }
    return 1;
}

int gg_task_yaml_parse(json_t **out, json_t **lines, const char *buf, size_t len, const char *label, gg_err *err) {
    *out = NULL;
    if (lines) *lines = NULL;
    size_t a = 0;
    while (a < len && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\n' || buf[a] == '\r')) a++;
    if (a < len && buf[a] == '{') {
        json_error_t je;
        json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
        if (!v) {
            for (char *c = je.text; *c; c++)
                if ((unsigned char)*c < 0x20) *c = ' ';
            return gg_errf(err, "%s:%d: %s", label, je.line > 0 ? je.line : 1, je.text);
        }
        if (!json_is_object(v)) {
            json_decref(v);
            return gg_errf(err, "%s:1: a task file must be an object", label);
        }
        if (lines) {
            *lines = json_object();
            const char *k;
            json_t *x;
            json_object_foreach(v, k, x) json_object_set_new(*lines, k, json_integer(json_key_line(buf, len, k)));
        }
        *out = v;
        return 0;
    }
    if (memchr(buf, 0, len)) return gg_errf(err, "%s: a NUL byte in the file", label);
    size_t nl = 1;
    for (size_t i = 0; i < len; i++) nl += buf[i] == '\n';
    yparser p = {.l = calloc(nl, sizeof(yline)), .label = label, .err = err};
    if (!p.l) return gg_errf(err, "out of memory");
    size_t i = 0;
    int no = 0, seen_doc = 0;
    while (i < len || (i == len && no == 0)) {
        size_t e = i;
        while (e < len && buf[e] != '\n') e++;
        no++;
        size_t le = e;
        if (le > i && buf[le - 1] == '\r') le--;
        size_t k = i;
        while (k < le && buf[k] == ' ') k++;
        if (k < le && buf[k] == '\t') {
            free(p.l);
            return gg_errf(err, "%s:%d: a tab in the indentation", label, no);
        }
        yline l = {.indent = (int)(k - i), .s = buf + k, .len = le - k, .no = no};
        l.blank = l.len == 0 || l.s[0] == '#';
        if (l.indent == 0 && l.len >= 3 && (memcmp(l.s, "---", 3) == 0 || memcmp(l.s, "...", 3) == 0) &&
            (l.len == 3 || l.s[3] == ' ')) {
            int content = 0;
            for (size_t j = 0; j < p.n; j++) content |= !p.l[j].blank;
            if (seen_doc || l.s[0] == '.' || content) {
                free(p.l);
                return gg_errf(err, "%s:%d: one document per file (a second '---' or '...')", label, no);
            }
            seen_doc = 1;
            l.blank = 1;
        }
        if (l.len && l.s[0] == '%') {
            free(p.l);
            return gg_errf(err, "%s:%d: YAML directives are not supported", label, no);
        }
        p.l[p.n++] = l;
        i = e + 1;
        if (e >= len) break;
    }
    size_t at = next_nonblank(&p, 0);
    json_t *v = NULL;
    if (at >= p.n) {
        free(p.l);
        return gg_errf(err, "%s:1: the file is empty", label);
    }
    if (p.l[at].indent != 0 || is_seq_item(&p.l[at])) {
        int ln = p.l[at].no;
        free(p.l);
        return gg_errf(err, "%s:%d: a task file is a mapping of keys at column 0", label, ln);
    }
    /* top-level key lines, before the parse rewrites "- key" lines */
    json_t *ln = lines ? json_object() : NULL;
    if (ln)
        for (size_t j = at; j < p.n; j++) {
            size_t kn = key_len(p.l[j].s, p.l[j].len);
            if (!p.l[j].blank && p.l[j].indent == 0 && kn && kn < 256) {
                char key[256];
                memcpy(key, p.l[j].s, kn);
                key[kn] = 0;
                while (kn && key[kn - 1] == ' ') key[--kn] = 0;
                if (!json_object_get(ln, key)) json_object_set_new(ln, key, json_integer(p.l[j].no));
            }
        }
    size_t pos = at;
    v = block(&p, &pos, 0);
    if (v && next_nonblank(&p, pos) < p.n) {
        yerr(&p, p.l[next_nonblank(&p, pos)].no, "unexpected text at the top level", NULL);
        json_decref(v);
        v = NULL;
    }
    free(p.l);
    if (!v) {
        json_decref(ln);
        return -1;
    }
    *out = v;
    if (lines) *lines = ln;
    return 0;
}
