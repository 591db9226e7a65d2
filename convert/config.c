/* config.c — recipe files (config.h): a flat YAML subset or a JSON object
 * → ordered (key, value, line) entries. Both readers are hand-written
 * cursors over the buffer so every error can name its line; nothing here
 * allocates in proportion to anything but the input. */
#include "convert/config.h"
#include "convert/json_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggfmt/utf8.h"

#define MAX_CONFIG_BYTES (4u << 20)
#define MAX_KEY 200

typedef struct cfg_ent {
    char *key, *val;
    int line;
    gg_config_kind kind;
} cfg_ent;

struct gg_config {
    char *label;
    cfg_ent *e;
    size_t n, cap;
};

/* ---- growable string ------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 32;
        while (c < b->len + n + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) return -1;
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int sb_utf8(sbuf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80)
        u[0] = (char)cp, n = 1;
    else if (cp < 0x800)
        u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xE0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[2] = (char)(0x80 | (cp & 0x3F)),
        n = 3;
    else
        u[0] = (char)(0xF0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    return sb_put(b, u, n);
}

/* ---- the parser state ------------------------------------------------------ */

typedef struct P {
    const char *s;
    size_t n, i;
    int line;
    const char *label;
    gg_err *err;
    gg_config *c;
} P;

/* A bounded, printable excerpt of s[0..n) for messages (cap >= 8). */
static const char *excerpt(char *buf, size_t cap, const char *s, size_t n) {
    size_t o = 0, k = 0;
    for (; k < n; k++) {
        unsigned char ch = (unsigned char)s[k];
        int ctl = ch < 0x20 || ch == 0x7f;
        if (o + (ctl ? 4 : 1) + 4 > cap) break; /* keep room for "..." and the NUL */
        if (ctl)
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
        else
            buf[o++] = (char)ch;
    }
    if (k < n) {
        /* do not leave a partial UTF-8 sequence before the ellipsis */
        while (o > 0 && ((unsigned char)buf[o - 1] & 0xC0) == 0x80) o--;
        if (o > 0 && ((unsigned char)buf[o - 1] & 0xC0) == 0xC0) o--;
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

static int perr(P *p, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int perr(P *p, int line, const char *fmt, ...) {
    char m[GG_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    return gg_errf(p->err, "%s:%d: %s", p->label, line, m);
}

static int oom(P *p) { return perr(p, p->line, "out of memory"); }

static void normalise_key(char *k) {
    for (; *k; k++)
        if (*k == '_') *k = '-';
}

/* Keys: 1..MAX_KEY of letters, digits, '_', '-', '.' (so they can be
 * named in messages and matched to flags). */
static int key_check(P *p, const char *key, size_t klen, int line) {
    char eb[80];
    if (!klen) return perr(p, line, "empty key");
    if (klen > MAX_KEY)
        return perr(p, line, "key '%s' is longer than %d characters", excerpt(eb, sizeof eb, key, klen), MAX_KEY);
    for (size_t i = 0; i < klen; i++) {
        char ch = key[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '-' || ch == '.'))
            return perr(p, line, "key '%s' has a character other than letters, digits, '_', '-', '.'",
                        excerpt(eb, sizeof eb, key, klen));
    }
    return 0;
}

/* Append an entry; key is copied and normalised, val is taken (may be NULL
 * for ""). */
static int add_entry(P *p, const char *key, size_t klen, int line, char *val, gg_config_kind kind) {
    gg_config *c = p->c;
    char eb[80];
    if (key_check(p, key, klen, line)) {
        free(val);
        return -1;
    }
    char *k = malloc(klen + 1);
    if (!k) {
        free(val);
        return oom(p);
    }
    memcpy(k, key, klen);
    k[klen] = '\0';
    normalise_key(k);
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->e[i].key, k) == 0) {
            perr(p, line, "duplicate key '%s' (first on line %d)", excerpt(eb, sizeof eb, key, klen), c->e[i].line);
            free(k);
            free(val);
            return -1;
        }
    if (c->n == c->cap) {
        size_t nc = c->cap ? 2 * c->cap : 16;
        cfg_ent *e = realloc(c->e, nc * sizeof *e);
        if (!e) {
            free(k);
            free(val);
            return oom(p);
        }
        c->e = e;
        c->cap = nc;
    }
    if (!val && !(val = calloc(1, 1))) {
        free(k);
        return oom(p);
    }
    c->e[c->n++] = (cfg_ent){k, val, line, kind};
    return 0;
}

/* Append one list item to b (joined with ','). */
static int list_add(P *p, sbuf *b, size_t *count, const char *item, size_t len, int line) {
    if (len == 0) return perr(p, line, "empty list item");
    if (memchr(item, ',', len)) {
        char eb[80];
        return perr(p, line, "list item '%s' contains a ',' (lists are passed on joined with commas)",
                    excerpt(eb, sizeof eb, item, len));
    }
    if ((*count && sb_put(b, ",", 1)) || sb_put(b, item, len)) return oom(p);
    (*count)++;
    return 0;
}

/* ---- scalars (shared) -------------------------------------------------------- */

static int word_in(const char *s, size_t n, const char *const *words) {
    for (; *words; words++)
        if (strlen(*words) == n && memcmp(s, *words, n) == 0) return 1;
    return 0;
}

static const char *const YAML_TRUE[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", NULL};
static const char *const YAML_FALSE[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", NULL};
static const char *const YAML_NULL[] = {"null", "Null", "NULL", "~", NULL};

/* A decimal number: [-+]? (digits [. digits?] | . digits) ([eE] [-+]? digits)? */
static int is_number(const char *s, size_t n) {
    size_t i = 0, d = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) i++;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++, d++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++, d++;
    }
    if (!d) return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+')) i++;
        size_t e = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++, e++;
        if (!e) return 0;
    }
    return i == n;
}

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* nd hex digits at s[*i]; advances *i. */
static int read_hex(P *p, size_t nd, uint32_t *out) {
    uint32_t v = 0;
    for (size_t k = 0; k < nd; k++) {
        int h = p->i < p->n ? hexval((unsigned char)p->s[p->i]) : -1;
        if (h < 0) return perr(p, p->line, "bad escape: expected %zu hex digits", nd);
        v = v * 16 + (uint32_t)h;
        p->i++;
    }
    *out = v;
    return 0;
}

static int put_cp(P *p, sbuf *b, uint32_t cp) {
    if (cp == 0) return perr(p, p->line, "a NUL character (\\0, \\u0000) is not allowed in a string");
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return perr(p, p->line, "escape \\u%04X is not a valid Unicode scalar value", (unsigned)cp);
    return sb_utf8(b, cp) ? oom(p) : 0;
}

/* ---- YAML ---------------------------------------------------------------------- */

static int at_eol(const P *p) { return p->i >= p->n || p->s[p->i] == '\n' || p->s[p->i] == '\r'; }

static void skip_blanks(P *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t')) p->i++;
}

/* After a value: blanks, then a comment or the end of the line. */
static int expect_eol(P *p, const char *after) {
    size_t before = p->i;
    skip_blanks(p);
    if (at_eol(p)) return 0;
    if (p->s[p->i] == '#' && p->i > before) return 0;
    char eb[60];
    size_t e = p->i;
    while (e < p->n && p->s[e] != '\n' && p->s[e] != '\r') e++;
    return perr(p, p->line, "unexpected '%s' after %s", excerpt(eb, sizeof eb, p->s + p->i, e - p->i), after);
}

static void skip_to_eol(P *p) {
    while (p->i < p->n && p->s[p->i] != '\n') p->i++;
}

/* Consume the line break at p->i (if any). */
static void next_line(P *p) {
    skip_to_eol(p);
    if (p->i < p->n) {
        p->i++;
        p->line++;
    }
}

/* A quoted scalar starting at p->s[p->i] (' or "), into b. */
static int yaml_quoted(P *p, sbuf *b) {
    char q = p->s[p->i++];
    int line = p->line;
    for (;;) {
        if (p->i >= p->n || p->s[p->i] == '\n' || p->s[p->i] == '\r')
            return perr(p, line, "unterminated %s-quoted string (strings must close on their line)",
                        q == '"' ? "double" : "single");
        char ch = p->s[p->i];
        if (q == '\'') {
            if (ch == '\'') {
                if (p->i + 1 < p->n && p->s[p->i + 1] == '\'') {
                    if (sb_put(b, "'", 1)) return oom(p);
                    p->i += 2;
                    continue;
                }
                p->i++;
                break;
            }
            if (sb_put(b, &ch, 1)) return oom(p);
            p->i++;
            continue;
        }
        if (ch == '"') {
            p->i++;
            break;
        }
        if (ch != '\\') {
            if (sb_put(b, &ch, 1)) return oom(p);
            p->i++;
            continue;
        }
        p->i++;
        if (p->i >= p->n || p->s[p->i] == '\n' || p->s[p->i] == '\r')
            return perr(p, line, "a line break after '\\' (multi-line strings are not supported)");
        char e = p->s[p->i++];
        uint32_t cp = 0;
        const char *lit = NULL;
        switch (e) {
        case '0': return put_cp(p, b, 0);
        case 'a': lit = "\a"; break;
        case 'b': lit = "\b"; break;
        case 't':
        case '\t': lit = "\t"; break;
        case 'n': lit = "\n"; break;
        case 'v': lit = "\v"; break;
        case 'f': lit = "\f"; break;
        case 'r': lit = "\r"; break;
        case 'e': lit = "\x1b"; break;
        case ' ': lit = " "; break;
        case '"': lit = "\""; break;
        case '/': lit = "/"; break;
        case '\\': lit = "\\"; break;
        case 'N': lit = "\xc2\x85"; break;
        case '_': lit = "\xc2\xa0"; break;
        case 'L': lit = "\xe2\x80\xa8"; break;
        case 'P': lit = "\xe2\x80\xa9"; break;
        case 'x':
            if (read_hex(p, 2, &cp) || put_cp(p, b, cp)) return -1;
            continue;
        case 'u':
            if (read_hex(p, 4, &cp) || put_cp(p, b, cp)) return -1;
            continue;
        case 'U':
            if (read_hex(p, 8, &cp) || put_cp(p, b, cp)) return -1;
            continue;
        default: {
            char eb[16];
            return perr(p, line, "unknown escape '\\%s' in a double-quoted string", excerpt(eb, sizeof eb, &e, 1));
        }
        }
        if (sb_put(b, lit, strlen(lit))) return oom(p);
    }
    return 0;
}

/* Features outside the subset, by the first character of a value. */
static int yaml_unsupported(P *p, char ch, const char *where) {
    switch (ch) {
    case '{': return perr(p, p->line, "nested mappings are not supported (%s is a {...} mapping)", where);
    case '|':
    case '>': return perr(p, p->line, "block scalars ('%c') are not supported (%s); use a quoted string", ch, where);
    case '&': return perr(p, p->line, "anchors ('&') are not supported (%s)", where);
    case '*': return perr(p, p->line, "aliases ('*') are not supported (%s)", where);
    case '!': return perr(p, p->line, "tags ('!') are not supported (%s)", where);
    case '@':
    case '`': return perr(p, p->line, "a plain value cannot start with '%c' (%s); quote it", ch, where);
    case '%': return perr(p, p->line, "directives ('%%') are not supported (%s)", where);
    default: return 0;
    }
}

/* A plain scalar in block context: to the end of the line or a " #" comment,
 * trimmed. Sets *s and *len. */
static int yaml_plain(P *p, const char **s, size_t *len, const char *where) {
    size_t b = p->i, e = b;
    while (e < p->n && p->s[e] != '\n' && p->s[e] != '\r') {
        if (p->s[e] == '#' && e > b && (p->s[e - 1] == ' ' || p->s[e - 1] == '\t')) break;
        e++;
    }
    p->i = e;
    while (e > b && (p->s[e - 1] == ' ' || p->s[e - 1] == '\t')) e--;
    for (size_t k = b; k < e; k++)
        if (p->s[k] == ':' && (k + 1 == e || p->s[k + 1] == ' ' || p->s[k + 1] == '\t'))
            return perr(p, p->line, "nested mappings are not supported (%s contains 'key: value'); quote it", where);
    *s = p->s + b;
    *len = e - b;
    return 0;
}

/* Kind and rendering of a plain scalar. */
static gg_config_kind plain_kind(const char *s, size_t n, const char **text, size_t *tlen) {
    *text = s;
    *tlen = n;
    if (n == 0 || word_in(s, n, YAML_NULL)) {
        *tlen = 0;
        return GG_CFG_NULL;
    }
    if (word_in(s, n, YAML_TRUE)) {
        *text = "true", *tlen = 4;
        return GG_CFG_BOOL;
    }
    if (word_in(s, n, YAML_FALSE)) {
        *text = "false", *tlen = 5;
        return GG_CFG_BOOL;
    }
    return is_number(s, n) ? GG_CFG_NUM : GG_CFG_STR;
}

/* A list item (flow or block) into the joined list. */
static int yaml_item_plain(P *p, sbuf *list, size_t *count, const char *s, size_t n, int line) {
    const char *t;
    size_t tl;
    if (plain_kind(s, n, &t, &tl) == GG_CFG_NULL) return perr(p, line, n ? "a null list item" : "empty list item");
    return list_add(p, list, count, t, tl, line);
}

/* Skip blanks, comments and line breaks inside a flow list. */
static void flow_ws(P *p) {
    for (;;) {
        while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\r')) p->i++;
        if (p->i < p->n && p->s[p->i] == '#' && p->i > 0 &&
            (p->s[p->i - 1] == ' ' || p->s[p->i - 1] == '\t' || p->s[p->i - 1] == '\n'))
            skip_to_eol(p);
        if (p->i < p->n && p->s[p->i] == '\n') {
            p->i++;
            p->line++;
            continue;
        }
        return;
    }
}

/* A flow list "[a, b]" at p->s[p->i] == '['. */
static int yaml_flow_list(P *p, sbuf *list, size_t *count, const char *key) {
    int line0 = p->line;
    char where[MAX_KEY + 16];
    snprintf(where, sizeof where, "'%s'", key);
    p->i++;
    flow_ws(p);
    if (p->i < p->n && p->s[p->i] == ']') {
        p->i++;
        return 0;
    }
    for (;;) {
        flow_ws(p);
        if (p->i >= p->n) return perr(p, line0, "unterminated list: '[' without ']'");
        char ch = p->s[p->i];
        int line = p->line;
        if (ch == '[') return perr(p, line, "nested lists are not supported (in %s)", where);
        if (ch == ',' || ch == ']') return perr(p, line, "empty list item in %s", where);
        if (ch == '\'' || ch == '"') {
            sbuf b = {0};
            if (yaml_quoted(p, &b)) {
                free(b.p);
                return -1;
            }
            int rc = list_add(p, list, count, b.p ? b.p : "", b.len, line);
            free(b.p);
            if (rc) return -1;
        } else {
            if (yaml_unsupported(p, ch, where)) return -1;
            size_t b = p->i, e = b;
            while (e < p->n && p->s[e] != ',' && p->s[e] != ']' && p->s[e] != '\n' && p->s[e] != '\r' &&
                   !(p->s[e] == '#' && (p->s[e - 1] == ' ' || p->s[e - 1] == '\t'))) {
                if (p->s[e] == '[' || p->s[e] == '{' || p->s[e] == '}')
                    return perr(p, line, "unexpected '%c' in the list %s", p->s[e], where);
                if (p->s[e] == ':' && (e + 1 >= p->n || strchr(" \t\r\n,]", p->s[e + 1])))
                    return perr(p, line, "mappings inside lists are not supported (in %s)", where);
                e++;
            }
            p->i = e;
            while (e > b && (p->s[e - 1] == ' ' || p->s[e - 1] == '\t')) e--;
            if (yaml_item_plain(p, list, count, p->s + b, e - b, line)) return -1;
        }
        flow_ws(p);
        if (p->i >= p->n) return perr(p, line0, "unterminated list: '[' without ']'");
        if (p->s[p->i] == ']') {
            p->i++;
            return 0;
        }
        if (p->s[p->i] != ',') {
            char eb[40];
            if (p->line != line0)
                return perr(p, line0, "unterminated list: the '[' of %s has no ']' before line %d", where, p->line);
            return perr(p, p->line, "expected ',' or ']' in the list %s, found '%s'", where,
                        excerpt(eb, sizeof eb, p->s + p->i, 1));
        }
        p->i++;
        flow_ws(p);
        if (p->i < p->n && p->s[p->i] == ']') { /* trailing comma */
            p->i++;
            return 0;
        }
    }
}

/* Line layout: indentation width (spaces) and whether a tab occurs in it.
 * Returns 1 when the line is blank or a comment. */
static int line_blank(const P *p, size_t *indent, int *tab) {
    size_t i = p->i;
    *tab = 0;
    while (i < p->n && (p->s[i] == ' ' || p->s[i] == '\t')) {
        if (p->s[i] == '\t') *tab = 1;
        i++;
    }
    *indent = i - p->i;
    return i >= p->n || p->s[i] == '\n' || p->s[i] == '\r' || p->s[i] == '#';
}

static int yaml_parse(P *p) {
    int seen_doc = 0;
    /* the key awaiting a block list (empty value so far) */
    char pkey[MAX_KEY + 1];
    size_t pklen = 0;
    int pending = 0, pline = 0, pindent = -1;
    sbuf list = {0};
    size_t count = 0;
    int rc = -1;

    while (p->i < p->n) {
        size_t indent;
        int tab;
        if (line_blank(p, &indent, &tab)) {
            next_line(p);
            continue;
        }
        if (tab) {
            perr(p, p->line, "a tab in the indentation (YAML indents with spaces)");
            goto out;
        }
        p->i += indent;
        const char *r = p->s + p->i;
        size_t left = p->n - p->i;
        int is_item = r[0] == '-' && (left == 1 || r[1] == ' ' || r[1] == '\t' || r[1] == '\n' || r[1] == '\r');
        int is_marker = indent == 0 && left >= 3 && (memcmp(r, "---", 3) == 0 || memcmp(r, "...", 3) == 0) &&
                        (left == 3 || r[3] == ' ' || r[3] == '\t' || r[3] == '\n' || r[3] == '\r');

        if (is_item) {
            if (!pending) {
                perr(p, p->line, "a list item ('- ') with no 'key:' line above it");
                goto out;
            }
            if (pindent < 0)
                pindent = (int)indent;
            else if ((int)indent != pindent) {
                perr(p, p->line, "list item indented %zu spaces, but the list's first item has %d", indent, pindent);
                goto out;
            }
            p->i++;
            skip_blanks(p);
            int line = p->line;
            char where[MAX_KEY + 40];
            snprintf(where, sizeof where, "an item of '%.*s'", (int)pklen, pkey);
            if (at_eol(p) || p->s[p->i] == '#') {
                perr(p, line, "empty list item in '%.*s'", (int)pklen, pkey);
                goto out;
            }
            char ch = p->s[p->i];
            if (ch == '-' || ch == '[') {
                perr(p, line, "nested lists are not supported (%s)", where);
                goto out;
            }
            if (ch == '\'' || ch == '"') {
                sbuf b = {0};
                int bad = yaml_quoted(p, &b) || list_add(p, &list, &count, b.p ? b.p : "", b.len, line);
                free(b.p);
                if (bad || expect_eol(p, "a quoted list item")) goto out;
            } else {
                const char *s;
                size_t len;
                if (yaml_unsupported(p, ch, where) || yaml_plain(p, &s, &len, where) ||
                    yaml_item_plain(p, &list, &count, s, len, line))
                    goto out;
            }
            next_line(p);
            continue;
        }
        if (indent > 0) {
            if (pending && count == 0)
                perr(p, p->line, "nested mappings are not supported ('%.*s' on line %d has an indented block)",
                     (int)pklen, pkey, pline);
            else
                perr(p, p->line, "unexpected indentation (continuation lines are not supported)");
            goto out;
        }
        /* a new top-level line ends any pending key */
        if (pending) {
            char *v = count ? list.p : NULL;
            int bad = add_entry(p, pkey, pklen, pline, v, count ? GG_CFG_LIST : GG_CFG_NULL);
            list = (sbuf){0};
            pending = 0;
            if (bad) goto out;
        }
        if (is_marker) {
            if (r[0] == '.' || seen_doc || p->c->n) {
                perr(p, p->line, "more than one YAML document ('%.3s') is not supported", r);
                goto out;
            }
            seen_doc = 1;
            p->i += 3;
            if (expect_eol(p, "'---'")) goto out;
            next_line(p);
            continue;
        }
        /* key */
        int line = p->line;
        size_t kb = p->i, ke = kb;
        while (ke < p->n && p->s[ke] != '\n' && p->s[ke] != '\r' &&
               !(p->s[ke] == ':' && (ke + 1 >= p->n || strchr(" \t\r\n", p->s[ke + 1]))) &&
               !(p->s[ke] == '#' && ke > kb && (p->s[ke - 1] == ' ' || p->s[ke - 1] == '\t')))
            ke++;
        if (ke >= p->n || p->s[ke] != ':') {
            char eb[60];
            perr(p, line, "expected 'key: value', found '%s'", excerpt(eb, sizeof eb, r, ke - kb));
            goto out;
        }
        size_t klen = ke - kb;
        while (klen && (p->s[kb + klen - 1] == ' ' || p->s[kb + klen - 1] == '\t')) klen--;
        if (klen == 0) {
            perr(p, line, "empty key before ':'");
            goto out;
        }
        if (key_check(p, p->s + kb, klen, line)) goto out;
        char key[MAX_KEY + 1];
        memcpy(key, p->s + kb, klen);
        key[klen] = '\0';
        char where[MAX_KEY + 16];
        snprintf(where, sizeof where, "the value of '%s'", key);
        p->i = ke + 1;
        skip_blanks(p);
        if (at_eol(p) || p->s[p->i] == '#') {
            memcpy(pkey, key, klen + 1);
            pklen = klen;
            pending = 1;
            pline = line;
            pindent = -1;
            count = 0;
            next_line(p);
            continue;
        }
        char ch = p->s[p->i];
        if (ch == '[') {
            sbuf b = {0};
            size_t nitems = 0;
            if (yaml_flow_list(p, &b, &nitems, key) || expect_eol(p, "the list")) {
                free(b.p);
                goto out;
            }
            if (add_entry(p, key, klen, line, b.p, GG_CFG_LIST)) goto out;
        } else if (ch == '\'' || ch == '"') {
            sbuf b = {0};
            if (yaml_quoted(p, &b) || expect_eol(p, "the quoted string")) {
                free(b.p);
                goto out;
            }
            if (add_entry(p, key, klen, line, b.p, GG_CFG_STR)) goto out;
        } else if (ch == '-' && (p->i + 1 >= p->n || strchr(" \t\r\n", p->s[p->i + 1]))) {
            perr(p, line, "a list item on the key's line; put '- item' lines below '%s:'", key);
            goto out;
        } else {
            const char *s, *t;
            size_t len, tl;
            if (yaml_unsupported(p, ch, where) || yaml_plain(p, &s, &len, where)) goto out;
            gg_config_kind k = plain_kind(s, len, &t, &tl);
            char *v = malloc(tl + 1);
            if (!v) {
                oom(p);
                goto out;
            }
            memcpy(v, t, tl);
            v[tl] = '\0';
            if (add_entry(p, key, klen, line, v, k)) goto out;
        }
        next_line(p);
    }
    if (pending) {
        char *v = count ? list.p : NULL;
        list = (sbuf){0};
        if (add_entry(p, pkey, pklen, pline, v, count ? GG_CFG_LIST : GG_CFG_NULL)) goto out;
    }
    rc = 0;
out:
    free(list.p);
    return rc;
}

/* ---- JSON ------------------------------------------------------------------------ */

static void jws(P *p) {
    while (p->i < p->n) {
        char ch = p->s[p->i];
        if (ch == '\n')
            p->line++;
        else if (ch != ' ' && ch != '\t' && ch != '\r')
            return;
        p->i++;
    }
}

static int jstr(P *p, sbuf *b) {
    int line = p->line;
    p->i++; /* opening quote */
    for (;;) {
        if (p->i >= p->n) return perr(p, line, "unterminated string");
        unsigned char ch = (unsigned char)p->s[p->i];
        if (ch == '"') {
            p->i++;
            return b->p || !sb_put(b, "", 0) ? 0 : oom(p);
        }
        if (ch < 0x20) return perr(p, p->line, "a raw control character (0x%02x) in a string; escape it", ch);
        if (ch != '\\') {
            if (sb_put(b, (const char *)&p->s[p->i], 1)) return oom(p);
            p->i++;
            continue;
        }
        p->i++;
        if (p->i >= p->n) return perr(p, line, "unterminated string");
        char e = p->s[p->i++];
        const char *lit = NULL;
        switch (e) {
        case '"': lit = "\""; break;
        case '\\': lit = "\\"; break;
        case '/': lit = "/"; break;
        case 'b': lit = "\b"; break;
        case 'f': lit = "\f"; break;
        case 'n': lit = "\n"; break;
        case 'r': lit = "\r"; break;
        case 't': lit = "\t"; break;
        case 'u': {
            uint32_t cp = 0;
            if (read_hex(p, 4, &cp)) return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo = 0;
                if (p->i + 1 < p->n && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') {
                    p->i += 2;
                    if (read_hex(p, 4, &lo)) return -1;
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return perr(p, p->line, "\\u%04X is a high surrogate not followed by a low one", (unsigned)cp);
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else {
                    return perr(p, p->line, "\\u%04X is a high surrogate not followed by a low one", (unsigned)cp);
                }
            }
            if (put_cp(p, b, cp)) return -1;
            continue;
        }
        default: {
            char eb[16];
            return perr(p, p->line, "unknown escape '\\%s' in a string", excerpt(eb, sizeof eb, &e, 1));
        }
        }
        if (sb_put(b, lit, 1)) return oom(p);
    }
}

/* A JSON number (strict grammar) at p->i: sets *s and *len. */
static int jnum(P *p, const char **s, size_t *len) {
    size_t b = p->i, i = b;
    if (i < p->n && p->s[i] == '-') i++;
    if (i < p->n && p->s[i] == '0')
        i++;
    else if (i < p->n && p->s[i] >= '1' && p->s[i] <= '9')
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') i++;
    else
        return perr(p, p->line, "invalid number");
    if (i < p->n && p->s[i] == '.') {
        i++;
        size_t d = i;
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') i++;
        if (i == d) return perr(p, p->line, "invalid number: no digits after '.'");
    }
    if (i < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
        i++;
        if (i < p->n && (p->s[i] == '+' || p->s[i] == '-')) i++;
        size_t d = i;
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') i++;
        if (i == d) return perr(p, p->line, "invalid number: no digits in the exponent");
    }
    *s = p->s + b;
    *len = i - b;
    p->i = i;
    return 0;
}

static int jword(P *p, const char *w) {
    size_t n = strlen(w);
    if (p->n - p->i >= n && memcmp(p->s + p->i, w, n) == 0) {
        p->i += n;
        return 1;
    }
    return 0;
}

/* One scalar value: into b (rendered), *kind. in_list: nulls are errors. */
static int jscalar(P *p, sbuf *b, gg_config_kind *kind, const char *key, int in_list) {
    if (p->i >= p->n) return perr(p, p->line, "unexpected end of input: expected a value for '%s'", key);
    char ch = p->s[p->i];
    if (ch == '"') {
        *kind = GG_CFG_STR;
        return jstr(p, b);
    }
    if (ch == '{') return perr(p, p->line, "nested objects are not supported ('%s' is an object)", key);
    if (ch == '[') return perr(p, p->line, "nested arrays are not supported (in '%s')", key);
    if (ch == '-' || (ch >= '0' && ch <= '9')) {
        const char *s = NULL;
        size_t len = 0;
        if (jnum(p, &s, &len)) return -1;
        *kind = GG_CFG_NUM;
        return sb_put(b, s, len) ? oom(p) : 0;
    }
    if (jword(p, "true") || jword(p, "false")) {
        int t = p->s[p->i - 1] == 'e' && p->s[p->i - 2] == 'u'; /* "true" ends in "ue", "false" in "se" */
        *kind = GG_CFG_BOOL;
        return sb_put(b, t ? "true" : "false", t ? 4 : 5) ? oom(p) : 0;
    }
    if (jword(p, "null")) {
        if (in_list) return perr(p, p->line, "a null item in the array '%s'", key);
        *kind = GG_CFG_NULL;
        return sb_put(b, "", 0) ? oom(p) : 0;
    }
    char eb[40];
    return perr(p, p->line, "unexpected '%s': expected a value for '%s'", excerpt(eb, sizeof eb, p->s + p->i, 1), key);
}

static int jparse(P *p) {
    jws(p);
    p->i++; /* '{' (the caller checked) */
    jws(p);
    if (p->i < p->n && p->s[p->i] == '}') {
        p->i++;
    } else {
        for (;;) {
            jws(p);
            if (p->i >= p->n) return perr(p, p->line, "unexpected end of input: the object is not closed");
            if (p->s[p->i] != '"') {
                char eb[40];
                return perr(p, p->line, "expected a \"key\", found '%s'", excerpt(eb, sizeof eb, p->s + p->i, 1));
            }
            int line = p->line;
            sbuf kb = {0};
            if (jstr(p, &kb)) {
                free(kb.p);
                return -1;
            }
            if (key_check(p, kb.p, kb.len, line)) {
                free(kb.p);
                return -1;
            }
            char key[MAX_KEY + 1];
            memcpy(key, kb.p, kb.len + 1);
            size_t klen = kb.len;
            free(kb.p);
            jws(p);
            if (p->i >= p->n || p->s[p->i] != ':') return perr(p, p->line, "expected ':' after the key '%s'", key);
            p->i++;
            jws(p);
            sbuf v = {0};
            gg_config_kind kind;
            if (p->i < p->n && p->s[p->i] == '[') {
                int l0 = p->line;
                size_t count = 0;
                kind = GG_CFG_LIST;
                p->i++;
                jws(p);
                if (p->i < p->n && p->s[p->i] == ']') {
                    p->i++;
                } else {
                    for (;;) {
                        jws(p);
                        sbuf item = {0};
                        gg_config_kind ik;
                        int il = p->line;
                        if (jscalar(p, &item, &ik, key, 1) ||
                            list_add(p, &v, &count, item.p ? item.p : "", item.len, il)) {
                            free(item.p);
                            free(v.p);
                            return -1;
                        }
                        free(item.p);
                        jws(p);
                        if (p->i >= p->n) {
                            free(v.p);
                            return perr(p, l0, "unterminated array '%s'", key);
                        }
                        if (p->s[p->i] == ']') {
                            p->i++;
                            break;
                        }
                        if (p->s[p->i] != ',') {
                            free(v.p);
                            return perr(p, p->line, "expected ',' or ']' in the array '%s'", key);
                        }
                        p->i++;
                    }
                }
            } else if (jscalar(p, &v, &kind, key, 0)) {
                free(v.p);
                return -1;
            }
            if (add_entry(p, key, klen, line, v.p, kind)) return -1;
            jws(p);
            if (p->i >= p->n) return perr(p, p->line, "unexpected end of input: the object is not closed");
            if (p->s[p->i] == '}') {
                p->i++;
                break;
            }
            if (p->s[p->i] != ',') {
                char eb[40];
                return perr(p, p->line, "expected ',' or '}' after the value of '%s', found '%s'", key,
                            excerpt(eb, sizeof eb, p->s + p->i, 1));
            }
            p->i++;
        }
    }
    jws(p);
    if (p->i < p->n) return perr(p, p->line, "unexpected text after the closing '}'");
    return 0;
}

/* ---- entry points ------------------------------------------------------------------ */

void gg_config_free(gg_config *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].key);
        free(c->e[i].val);
    }
    free(c->e);
    free(c->label);
    free(c);
}

int gg_config_parse(gg_config **out, const char *buf, size_t len, const char *label, gg_err *err) {
    *out = NULL;
    if (!label) label = "<config>";
    if (!buf && len) return gg_errf(err, "%s: NULL buffer", label);
    gg_config *c = calloc(1, sizeof *c);
    if (!c || !(c->label = strdup(label))) {
        free(c);
        return gg_errf(err, "%s: out of memory", label);
    }
    P p = {buf, len, 0, 1, c->label, err, c};
    /* NUL bytes and invalid UTF-8, by line */
    const char *nul = len ? memchr(buf, 0, len) : NULL;
    size_t bad = len ? gg_utf8_invalid_at(buf, len) : (size_t)-1;
    if (nul || bad != (size_t)-1) {
        size_t at = nul && (bad == (size_t)-1 || (size_t)(nul - buf) < bad) ? (size_t)(nul - buf) : bad;
        int line = 1;
        for (size_t k = 0; k < at; k++) line += buf[k] == '\n';
        perr(&p, line, nul && at == (size_t)(nul - buf) ? "a NUL byte (not a text file)" : "invalid UTF-8 (byte %zu)",
             at);
        gg_config_free(c);
        return -1;
    }
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) p.i = 3;
    size_t k = p.i;
    while (k < len && (buf[k] == ' ' || buf[k] == '\t' || buf[k] == '\r' || buf[k] == '\n')) k++;
    int rc;
    if (k < len && buf[k] == '{') {
        rc = jparse(&p);
    } else {
        rc = yaml_parse(&p);
    }
    if (rc) {
        gg_config_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

int gg_config_load(gg_config **out, const char *path, gg_err *err) {
    char *text;
    size_t len;
    *out = NULL;
    if (gg_read_small_file(path, MAX_CONFIG_BYTES, "a recipe file", &text, &len, err)) return -1;
    int rc = gg_config_parse(out, text, len, path, err);
    free(text);
    return rc;
}

size_t gg_config_count(const gg_config *c) { return c ? c->n : 0; }

const char *gg_config_key(const gg_config *c, size_t i) { return c && i < c->n ? c->e[i].key : NULL; }

const char *gg_config_value(const gg_config *c, size_t i) { return c && i < c->n ? c->e[i].val : NULL; }

int gg_config_line(const gg_config *c, size_t i) { return c && i < c->n ? c->e[i].line : 0; }

gg_config_kind gg_config_kind_of(const gg_config *c, size_t i) { return c && i < c->n ? c->e[i].kind : GG_CFG_NULL; }

const char *gg_config_label(const gg_config *c) { return c ? c->label : NULL; }

long gg_config_find(const gg_config *c, const char *key) {
    if (!c || !key) return -1;
    for (size_t i = 0; i < c->n; i++) {
        const char *a = c->e[i].key, *b = key;
        while (*a && (*a == *b || (*a == '-' && *b == '_'))) a++, b++;
        if (!*a && !*b) return (long)i;
    }
    return -1;
}
