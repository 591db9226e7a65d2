/* jinja.c — lexer, parser and evaluator of the Jinja subset (see jinja.h).
 * Everything of one render lives in one arena, freed at the end. */
#include "models/jinja.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Arena and errors                                                           */

typedef struct blk {
    struct blk *next;
    size_t used, cap;
    max_align_t data[];
} blk;

typedef struct J {
    blk *blocks;
    const char *src;     /* original template */
    const size_t *map;   /* preprocessed offset → original offset */
    size_t mapn;
    gg_err *err;
    jmp_buf jb;
    int depth; /* parser / evaluator nesting */
    int calls; /* macro calls in progress */
} J;

static void *jalloc(J *j, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!j->blocks || j->blocks->cap - j->blocks->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        blk *b = malloc(sizeof(blk) + cap);
        if (!b) {
            gg_errf(j->err, "jinja: out of memory");
            longjmp(j->jb, 1);
        }
        b->next = j->blocks;
        b->used = 0;
        b->cap = cap;
        j->blocks = b;
    }
    void *p = (char *)j->blocks->data + j->blocks->used;
    j->blocks->used += n;
    return p;
}

static void *jzalloc(J *j, size_t n) {
    void *p = jalloc(j, n);
    memset(p, 0, n);
    return p;
}

static void line_col(J *j, int pos, int *line, int *col) {
    size_t o = pos < 0 ? 0 : (size_t)pos;
    size_t n = strlen(j->src);
    if (o > n) o = n;
    int l = 1, c = 1;
    for (size_t i = 0; i < o; i++) {
        if (j->src[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)j->src[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static size_t u8_len(const char *s, size_t n, size_t i);

/* pos: an offset in the original source. Does not return. */
__attribute__((noreturn, format(printf, 3, 4))) static void fail(J *j, int pos, const char *fmt,
                                                                 ...) {
    char buf[GG_ERR_MAX - 96]; /* room for "jinja: L:C: " and a caller's prefix */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    /* keep the message valid UTF-8 (template text is quoted in it; it may be cut) */
    size_t n = strlen(buf);
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)buf[i];
        size_t want = ch < 0x80 ? 1 : (ch >= 0xC2 && ch < 0xE0) ? 2 : (ch >= 0xE0 && ch < 0xF0) ? 3 : (ch >= 0xF0 && ch < 0xF5) ? 4 : 0;
        size_t got = want ? u8_len(buf, n, i) : 0;
        if (!want || got != want) {
            if (i + (got ? got : 1) >= n && want) { /* cut at the end */
                buf[i] = 0;
                break;
            }
            buf[i++] = '?';
            continue;
        }
        i += want;
    }
    int l, c;
    line_col(j, pos, &l, &c);
    gg_errf(j->err, "jinja: %d:%d: %s", l, c, buf);
    longjmp(j->jb, 1);
}

/* ------------------------------------------------------------------------ */
/* String builder (arena-backed)                                             */

typedef struct sb {
    char *p;
    size_t n, cap;
} sb;

static void sb_put(J *j, sb *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = jalloc(j, cap);
        if (b->n) memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_puts(J *j, sb *b, const char *s) { sb_put(j, b, s, strlen(s)); }
static void sb_putc(J *j, sb *b, char c) { sb_put(j, b, &c, 1); }

static char *jstrndup(J *j, const char *s, size_t n) {
    char *p = jalloc(j, n + 1);
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ------------------------------------------------------------------------ */
/* UTF-8 and JavaScript whitespace                                            */

static size_t u8_len(const char *s, size_t n, size_t i) { /* length of the sequence at i */
    unsigned char c = (unsigned char)s[i];
    size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (i + l > n) l = n - i;
    for (size_t k = 1; k < l; k++)
        if (((unsigned char)s[i + k] & 0xC0) != 0x80) return k;
    return l ? l : 1;
}

static uint32_t u8_dec(const char *s, size_t n, size_t i, size_t *l) {
    *l = u8_len(s, n, i);
    const unsigned char *u = (const unsigned char *)s + i;
    switch (*l) {
    case 1: return u[0];
    case 2: return ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
    case 3: return ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    default:
        return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
               ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
    }
}

static int js_space_cp(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

/* length of the JS whitespace character at s[i], 0 if none */
static size_t js_space_at(const char *s, size_t n, size_t i) {
    if (i >= n) return 0;
    size_t l;
    uint32_t c = u8_dec(s, n, i, &l);
    return js_space_cp(c) ? l : 0;
}

/* length of the JS whitespace run ending at s[n] (backwards) */
static size_t js_space_before(const char *s, size_t n) {
    size_t end = n;
    while (end > 0) {
        size_t st = end - 1;
        while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80 && end - st < 4) st--;
        if (js_space_at(s, end, st) == end - st) end = st;
        else break;
    }
    return n - end;
}

static void js_trim(const char *s, size_t n, int left, int right, size_t *b, size_t *e) {
    size_t i = 0, k;
    if (left)
        while (i < n && (k = js_space_at(s, n, i))) i += k;
    size_t end = n;
    if (right) end -= js_space_before(s + i, n - i);
    *b = i;
    *e = end;
}

/* ------------------------------------------------------------------------ */
/* Lexer                                                                      */

enum {
    T_TEXT, T_NUM, T_STR, T_IDENT, T_EQUALS, T_LPAREN, T_RPAREN, T_OSTMT, T_CSTMT, T_OEXPR,
    T_CEXPR, T_LBRACK, T_RBRACK, T_LCURLY, T_RCURLY, T_COMMA, T_DOT, T_COLON, T_PIPE, T_ADD,
    T_MUL, T_POW, T_CMP, T_UNARY, T_COMMENT
};
static const char *tok_names[] = {"text", "number", "string", "identifier", "'='", "'('", "')'",
                                  "'{%'", "'%}'", "'{{'", "'}}'", "'['", "']'", "'{'", "'}'",
                                  "','", "'.'", "':'", "'|'", "operator", "operator", "'**'",
                                  "comparison", "unary operator", "comment"};

typedef struct tok {
    int type;
    const char *s;
    size_t n;
    int pos; /* original offset */
} tok;

typedef struct lexer {
    J *j;
    const char *s; /* preprocessed */
    size_t n, i;
    tok *t;
    size_t nt, cap;
} lexer;

static int opos(J *j, size_t i) { return (int)(i < j->mapn ? j->map[i] : (j->mapn ? j->map[j->mapn - 1] + 1 : 0)); }

static void push_tok(lexer *L, int type, const char *s, size_t n, size_t at) {
    if (L->nt == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        tok *t = jalloc(L->j, cap * sizeof *t);
        if (L->nt) memcpy(t, L->t, L->nt * sizeof *t);
        L->t = t;
        L->cap = cap;
    }
    L->t[L->nt++] = (tok){type, s, n, opos(L->j, at)};
}

/* Preprocessing as @huggingface/jinja: drop one final newline; lstrip_blocks
 * (/^[ \t]*({[#%-])/gm → $1); trim_blocks (/([#%-]})\n/g → $1); and the
 * {% generation %} / {% endgeneration %} markers removed. Keeps a map of
 * each output byte to its original offset. */
static void preprocess(J *j, const char *src, char **out, size_t **omap, size_t *on) {
    size_t n = strlen(src);
    if (n && src[n - 1] == '\n') n--;
    char *a = jalloc(j, n + 1);
    size_t *am = jalloc(j, (n + 1) * sizeof *am);
    size_t an = 0;
    for (size_t i = 0; i < n;) {
        int bol = i == 0 || src[i - 1] == '\n' || src[i - 1] == '\r' ||
                  (i >= 3 && (unsigned char)src[i - 3] == 0xE2 && (unsigned char)src[i - 2] == 0x80 &&
                   ((unsigned char)src[i - 1] == 0xA8 || (unsigned char)src[i - 1] == 0xA9));
        if (bol) {
            size_t k = i;
            while (k < n && (src[k] == ' ' || src[k] == '\t')) k++;
            if (k + 1 < n && src[k] == '{' && (src[k + 1] == '#' || src[k + 1] == '%' || src[k + 1] == '-'))
                i = k;
        }
        am[an] = i;
        a[an++] = src[i++];
    }
    char *b = jalloc(j, an + 1);
    size_t *bm = jalloc(j, (an + 1) * sizeof *bm);
    size_t bn = 0;
    for (size_t i = 0; i < an;) {
        if (i + 2 < an && (a[i] == '#' || a[i] == '%' || a[i] == '-') && a[i + 1] == '}' && a[i + 2] == '\n') {
            bm[bn] = am[i];
            b[bn++] = a[i];
            bm[bn] = am[i + 1];
            b[bn++] = '}';
            i += 3;
            continue;
        }
        bm[bn] = am[i];
        b[bn++] = a[i++];
    }
    /* {% generation %} markers */
    char *c = jalloc(j, bn + 1);
    size_t *cm = jalloc(j, (bn + 1) * sizeof *cm);
    size_t cn = 0, floor_ = 0;
    for (size_t i = 0; i < bn;) {
        if (b[i] == '{' && i + 1 < bn && b[i + 1] == '%') {
            size_t k = i + 2, l;
            int ls = 0, rs = 0;
            if (k < bn && b[k] == '-') ls = 1, k++;
            while ((l = js_space_at(b, bn, k))) k += l;
            if (k + 3 <= bn && !memcmp(b + k, "end", 3)) k += 3;
            if (k + 10 <= bn && !memcmp(b + k, "generation", 10)) {
                k += 10;
                while ((l = js_space_at(b, bn, k))) k += l;
                if (k < bn && b[k] == '-') rs = 1, k++;
                if (k + 2 <= bn && b[k] == '%' && b[k + 1] == '}') {
                    k += 2;
                    if (ls) {
                        size_t w = js_space_before(c + floor_, cn - floor_);
                        cn -= w;
                    }
                    size_t e = k;
                    while ((l = js_space_at(b, bn, e))) e += l;
                    if (!rs)
                        for (size_t q = k; q < e; q++) cm[cn] = bm[q], c[cn++] = b[q];
                    i = e;
                    floor_ = cn;
                    continue;
                }
            }
        }
        cm[cn] = bm[i];
        c[cn++] = b[i++];
    }
    c[cn] = 0;
    *out = c;
    *omap = cm;
    *on = cn;
}

static int is_word(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
static int is_digit(char c) { return c >= '0' && c <= '9'; }

static void strip_trailing(lexer *L) {
    if (L->nt && L->t[L->nt - 1].type == T_TEXT) {
        tok *t = &L->t[L->nt - 1];
        t->n -= js_space_before(t->s, t->n);
        if (t->n == 0) L->nt--;
    }
}

static void skip_leading(lexer *L) {
    size_t k;
    while (L->i < L->n && (k = js_space_at(L->s, L->n, L->i))) L->i += k;
}

static int starts(lexer *L, const char *p) {
    size_t n = strlen(p);
    return L->i + n <= L->n && !memcmp(L->s + L->i, p, n);
}

/* Read a string literal body up to quote q, decoding escapes. */
static void lex_string(lexer *L, char q, size_t start) {
    J *j = L->j;
    sb b = {0};
    sb_put(j, &b, "", 0);
    for (;;) {
        if (L->i >= L->n) fail(j, opos(j, start), "unexpected end of input in string literal");
        char c = L->s[L->i];
        if (c == q) break;
        if (c == '\\') {
            L->i++;
            if (L->i >= L->n) fail(j, opos(j, start), "unexpected end of input");
            char e = L->s[L->i++];
            if (e == 'x' || e == 'u') {
                size_t l = e == 'x' ? 2 : 4;
                unsigned v = 0;
                for (size_t k = 0; k < l; k++) {
                    char h = L->i + k < L->n ? L->s[L->i + k] : 0;
                    int d = is_digit(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
                    if (d < 0) fail(j, opos(j, L->i - 2), "invalid hexadecimal escape sequence");
                    v = v * 16 + (unsigned)d;
                }
                L->i += l;
                char u[4];
                size_t ul;
                if (v < 0x80) u[0] = (char)v, ul = 1;
                else if (v < 0x800) u[0] = (char)(0xC0 | (v >> 6)), u[1] = (char)(0x80 | (v & 0x3F)), ul = 2;
                else u[0] = (char)(0xE0 | (v >> 12)), u[1] = (char)(0x80 | ((v >> 6) & 0x3F)), u[2] = (char)(0x80 | (v & 0x3F)), ul = 3;
                sb_put(j, &b, u, ul);
            } else {
                const char *from = "ntrbfv'\"\\", *to = "\n\t\r\b\f\v'\"\\";
                const char *p = strchr(from, e);
                if (!p || !e)
                    fail(j, opos(j, L->i - 2), "unexpected escaped character: %.*s", (int)u8_len(L->s, L->n, L->i - 1),
                         L->s + L->i - 1);
                sb_putc(j, &b, to[p - from]);
            }
            if (L->i >= L->n) fail(j, opos(j, start), "unexpected end of input");
            continue;
        }
        sb_putc(j, &b, c);
        L->i++;
        if (L->i >= L->n) fail(j, opos(j, start), "unexpected end of input in string literal");
    }
    push_tok(L, T_STR, b.p, b.n, start);
    L->i++; /* closing quote */
}

static const struct {
    const char *s;
    int type;
} op_table[] = {{"{%", T_OSTMT}, {"%}", T_CSTMT}, {"{{", T_OEXPR}, {"}}", T_CEXPR}, {"(", T_LPAREN},
                {")", T_RPAREN}, {"{", T_LCURLY}, {"}", T_RCURLY}, {"[", T_LBRACK}, {"]", T_RBRACK},
                {",", T_COMMA}, {".", T_DOT}, {":", T_COLON}, {"|", T_PIPE}, {"<=", T_CMP},
                {">=", T_CMP}, {"==", T_CMP}, {"!=", T_CMP}, {"<", T_CMP}, {">", T_CMP},
                {"+", T_ADD}, {"-", T_ADD}, {"~", T_ADD}, {"**", T_POW}, {"*", T_MUL},
                {"//", T_MUL}, {"/", T_MUL}, {"%", T_MUL}, {"=", T_EQUALS}};

static void lex(lexer *L) {
    J *j = L->j;
    int depth = 0;
    while (L->i < L->n) {
        int last = L->nt ? L->t[L->nt - 1].type : -1;
        if (last == -1 || last == T_CSTMT || last == T_CEXPR || last == T_COMMENT) {
            size_t st = L->i;
            while (L->i < L->n && !(L->s[L->i] == '{' && L->i + 1 < L->n &&
                                    (L->s[L->i + 1] == '%' || L->s[L->i + 1] == '{' || L->s[L->i + 1] == '#')))
                L->i++;
            if (L->i > st) {
                push_tok(L, T_TEXT, L->s + st, L->i - st, st);
                continue;
            }
        }
        if (starts(L, "{#")) {
            size_t st = L->i;
            L->i += 2;
            int sb_ = L->i < L->n && L->s[L->i] == '-';
            if (sb_) L->i++;
            size_t cs = L->i;
            while (!(L->i + 1 < L->n && L->s[L->i] == '#' && L->s[L->i + 1] == '}')) {
                if (L->i + 2 >= L->n) fail(j, opos(j, st), "missing end of comment tag");
                L->i++;
            }
            size_t ce = L->i;
            int sa = ce > cs && L->s[ce - 1] == '-';
            if (sb_) strip_trailing(L);
            push_tok(L, T_COMMENT, L->s + cs, ce - cs - (size_t)sa, st);
            L->i += 2;
            if (sa) skip_leading(L);
            continue;
        }
        if (starts(L, "{%-")) {
            strip_trailing(L);
            push_tok(L, T_OSTMT, "{%", 2, L->i);
            L->i += 3;
            continue;
        }
        if (starts(L, "{{-")) {
            strip_trailing(L);
            push_tok(L, T_OEXPR, "{{", 2, L->i);
            depth = 0;
            L->i += 3;
            continue;
        }
        {
            size_t k;
            while ((k = js_space_at(L->s, L->n, L->i))) {
                L->i += k;
                if (L->i >= L->n) fail(j, opos(j, L->i), "unexpected end of input");
            }
        }
        if (starts(L, "-%}")) {
            push_tok(L, T_CSTMT, "%}", 2, L->i);
            L->i += 3;
            skip_leading(L);
            continue;
        }
        if (starts(L, "-}}")) {
            push_tok(L, T_CEXPR, "}}", 2, L->i);
            L->i += 3;
            skip_leading(L);
            continue;
        }
        char c = L->s[L->i];
        if (c == '-' || c == '+') {
            int lt = L->nt ? L->t[L->nt - 1].type : -1;
            if (lt == T_TEXT || lt == -1) fail(j, opos(j, L->i), "unexpected character: %c", c);
            if (!(lt == T_IDENT || lt == T_NUM || lt == T_STR || lt == T_RPAREN || lt == T_RBRACK)) {
                size_t st = L->i++;
                while (L->i < L->n && is_digit(L->s[L->i])) L->i++;
                size_t nd = L->i - st - 1;
                if (nd && L->i + 1 < L->n && L->s[L->i] == '.' && is_digit(L->s[L->i + 1])) {
                    L->i++;
                    while (L->i < L->n && is_digit(L->s[L->i])) L->i++;
                }
                if (nd && L->i >= L->n) fail(j, opos(j, st), "unexpected end of input");
                push_tok(L, nd ? T_NUM : T_UNARY, L->s + st, L->i - st, st);
                continue;
            }
        }
        int matched = 0;
        for (size_t k = 0; k < sizeof op_table / sizeof op_table[0]; k++) {
            if (op_table[k].type == T_CEXPR && depth > 0) continue;
            if (starts(L, op_table[k].s)) {
                push_tok(L, op_table[k].type, op_table[k].s, strlen(op_table[k].s), L->i);
                if (op_table[k].type == T_OEXPR) depth = 0;
                else if (op_table[k].type == T_LCURLY) depth++;
                else if (op_table[k].type == T_RCURLY) depth--;
                L->i += strlen(op_table[k].s);
                matched = 1;
                break;
            }
        }
        if (matched) continue;
        if (c == '\'' || c == '"') {
            size_t st = L->i++;
            lex_string(L, c, st);
            continue;
        }
        if (is_digit(c)) {
            size_t st = L->i;
            while (L->i < L->n && is_digit(L->s[L->i])) L->i++;
            int lt = L->nt ? L->t[L->nt - 1].type : -1;
            if (lt != T_DOT && L->i + 1 < L->n && L->s[L->i] == '.' && is_digit(L->s[L->i + 1])) {
                L->i++;
                while (L->i < L->n && is_digit(L->s[L->i])) L->i++;
            }
            if (L->i >= L->n) fail(j, opos(j, st), "unexpected end of input");
            push_tok(L, T_NUM, L->s + st, L->i - st, st);
            continue;
        }
        if (is_word(c)) {
            size_t st = L->i;
            while (L->i < L->n && is_word(L->s[L->i])) L->i++;
            if (L->i >= L->n) fail(j, opos(j, st), "unexpected end of input");
            push_tok(L, T_IDENT, L->s + st, L->i - st, st);
            continue;
        }
        size_t cl = u8_len(L->s, L->n, L->i);
        fail(j, opos(j, L->i), "unexpected character: %.*s", (int)cl, L->s + L->i);
    }
}

/* ------------------------------------------------------------------------ */
/* AST                                                                        */

enum {
    N_TEXT, N_COMMENT, N_IF, N_FOR, N_SET, N_MACRO, N_BREAK, N_CONTINUE, N_INT, N_FLOAT, N_STR,
    N_IDENT, N_ARRAY, N_TUPLE, N_OBJECT, N_MEMBER, N_SLICE, N_CALL, N_KWARG, N_UNARY, N_BINARY,
    N_FILTER, N_TEST, N_SELECT, N_TERNARY, N_CALLBLOCK, N_FILTERBLOCK
};

typedef struct node node;
typedef struct nlist {
    node **v;
    size_t n, cap;
} nlist;

struct node {
    int k, pos;
    node *a, *b, *c;   /* operands: object/left/test/…; property/right; … */
    nlist l1, l2;      /* bodies, arguments, elements (keys in l1, values in l2 for objects) */
    const char *s;     /* identifier, operator, string */
    size_t sn;
    int64_t i;
    double f;
    int flag;          /* computed member, negated test */
};

static void nl_push(J *j, nlist *l, node *n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        node **v = jalloc(j, cap * sizeof *v);
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = n;
}

typedef struct parser {
    J *j;
    tok *t;
    size_t n, i;
} parser;

static node *mk(parser *P, int k, int pos) {
    node *n = jzalloc(P->j, sizeof *n);
    n->k = k;
    n->pos = pos;
    return n;
}

static int cur_pos(parser *P) {
    if (P->i < P->n) return P->t[P->i].pos;
    return (int)strlen(P->j->src);
}

static int is_t(parser *P, int type) { return P->i < P->n && P->t[P->i].type == type; }
static int tok_is(tok *t, const char *s) { return strlen(s) == t->n && !memcmp(t->s, s, t->n); }
static int is_id(parser *P, const char *name) { return is_t(P, T_IDENT) && tok_is(&P->t[P->i], name); }
static int is_stmt(parser *P, const char *name) {
    return P->i + 1 < P->n && P->t[P->i].type == T_OSTMT && P->t[P->i + 1].type == T_IDENT &&
           tok_is(&P->t[P->i + 1], name);
}

static const char *tok_desc(J *j, tok *t) {
    if (t->type == T_IDENT || t->type == T_NUM || t->type == T_STR || t->type == T_TEXT) {
        char *b = jalloc(j, 64);
        snprintf(b, 64, "%s '%.*s'", tok_names[t->type], (int)(t->n > 40 ? 40 : t->n), t->s);
        return b;
    }
    return tok_names[t->type];
}

static tok *expect(parser *P, int type, const char *what) {
    if (P->i >= P->n) fail(P->j, cur_pos(P), "expected %s, got end of template", what);
    if (P->t[P->i].type != type)
        fail(P->j, cur_pos(P), "expected %s, got %s", what, tok_desc(P->j, &P->t[P->i]));
    return &P->t[P->i++];
}
static void expect_id(parser *P, const char *name) {
    if (!is_id(P, name)) fail(P->j, cur_pos(P), "expected '%s'", name);
    P->i++;
}
static void need_more(parser *P) {
    if (P->i >= P->n) fail(P->j, cur_pos(P), "unexpected end of template (unclosed block?)");
}

static node *p_expr(parser *P);
static node *p_primary(parser *P);
static node *p_any(parser *P);
static node *p_statement1(parser *P);
static void p_args(parser *P, nlist *out, int params);

static node *p_member(parser *P, node *obj);

static node *p_call(parser *P, node *callee) {
    node *c = mk(P, N_CALL, callee->pos);
    c->a = callee;
    p_args(P, &c->l1, 0);
    c = p_member(P, c);
    if (is_t(P, T_LPAREN)) c = p_call(P, c);
    return c;
}

static void p_args(parser *P, nlist *out, int params) {
    expect(P, T_LPAREN, "'('");
    int saw_kw = 0;
    while (!is_t(P, T_RPAREN)) {
        need_more(P);
        if (is_t(P, T_POW) || (is_t(P, T_MUL) && tok_is(&P->t[P->i], "*")))
            fail(P->j, cur_pos(P), "unsupported construct: argument unpacking (* / **)");
        int pos = cur_pos(P);
        node *a = p_expr(P);
        if (is_t(P, T_EQUALS)) {
            P->i++;
            if (a->k != N_IDENT)
                fail(P->j, pos, params ? "expected identifier for parameter declaration" : "expected identifier for keyword argument");
            node *kw = mk(P, N_KWARG, pos);
            kw->s = a->s;
            kw->sn = a->sn;
            kw->a = p_expr(P);
            a = kw;
        }
        if (params && a->k != N_IDENT && a->k != N_KWARG) fail(P->j, pos, "expected identifier for parameter declaration");
        if (a->k == N_KWARG) saw_kw = 1;
        else if (saw_kw)
            fail(P->j, pos, params ? "non-default argument follows default argument" : "positional argument follows keyword argument");
        nl_push(P->j, out, a);
        if (is_t(P, T_COMMA)) P->i++;
    }
    P->i++;
}

static node *p_member(parser *P, node *obj) {
    while (is_t(P, T_DOT) || is_t(P, T_LBRACK)) {
        int computed = is_t(P, T_LBRACK);
        int pos = cur_pos(P);
        P->i++;
        node *m = mk(P, N_MEMBER, pos);
        m->a = obj;
        m->flag = computed;
        if (computed) {
            node *sl[3] = {0};
            size_t ns = 0;
            int is_slice = 0;
            while (!is_t(P, T_RBRACK)) {
                need_more(P);
                if (ns == 3) fail(P->j, cur_pos(P), "expected 0-3 arguments for slice expression");
                if (is_t(P, T_COLON)) {
                    sl[ns++] = NULL;
                    P->i++;
                    is_slice = 1;
                } else {
                    sl[ns++] = p_expr(P);
                    if (is_t(P, T_COLON)) {
                        P->i++;
                        is_slice = 1;
                    }
                }
            }
            if (ns == 0) fail(P->j, pos, "expected at least one argument for member/slice expression");
            if (is_slice) {
                node *s = mk(P, N_SLICE, pos);
                s->a = sl[0];
                s->b = sl[1];
                s->c = sl[2];
                m->b = s;
            } else {
                m->b = sl[0];
            }
            expect(P, T_RBRACK, "']'");
        } else {
            node *p = p_primary(P);
            if (p->k != N_IDENT && p->k != N_INT) fail(P->j, pos, "expected identifier or integer following '.'");
            m->b = p;
        }
        obj = m;
    }
    return obj;
}

static node *p_unary_sign(parser *P) {
    if (P->i < P->n && (P->t[P->i].type == T_UNARY || P->t[P->i].type == T_ADD) &&
        (tok_is(&P->t[P->i], "-") || tok_is(&P->t[P->i], "+"))) {
        node *u = mk(P, N_UNARY, cur_pos(P));
        u->s = P->t[P->i].s;
        u->sn = 1;
        P->i++;
        if (++P->j->depth > 400) fail(P->j, u->pos, "expression nested too deeply");
        u->a = p_unary_sign(P);
        P->j->depth--;
        return u;
    }
    node *m = p_member(P, p_primary(P));
    if (is_t(P, T_LPAREN)) return p_call(P, m);
    return m;
}

static node *p_filter(parser *P) {
    node *operand = p_unary_sign(P);
    while (is_t(P, T_PIPE)) {
        int pos = cur_pos(P);
        P->i++;
        node *f = p_primary(P);
        if (f->k != N_IDENT) fail(P->j, pos, "expected identifier for the filter");
        if (is_t(P, T_LPAREN)) f = p_call(P, f);
        node *n = mk(P, N_FILTER, f->pos);
        n->a = operand;
        n->b = f;
        operand = n;
    }
    return operand;
}

static node *p_test(parser *P) {
    node *operand = p_filter(P);
    while (is_id(P, "is")) {
        P->i++;
        int neg = 0;
        if (is_id(P, "not")) neg = 1, P->i++;
        int pos = cur_pos(P);
        node *f = p_primary(P);
        if (f->k != N_IDENT) fail(P->j, pos, "expected identifier for the test");
        node *n = mk(P, N_TEST, pos);
        n->a = operand;
        n->s = f->s;
        n->sn = f->sn;
        n->flag = neg;
        operand = n;
    }
    return operand;
}

static node *binop(parser *P, tok *op, node *l, node *r) {
    node *n = mk(P, N_BINARY, op->pos);
    n->s = op->s;
    n->sn = op->n;
    n->a = l;
    n->b = r;
    return n;
}

static node *p_pow(parser *P) {
    node *l = p_test(P);
    while (is_t(P, T_POW)) {
        tok *op = &P->t[P->i++];
        l = binop(P, op, l, p_test(P));
    }
    return l;
}
static node *p_mul(parser *P) {
    node *l = p_pow(P);
    while (is_t(P, T_MUL)) {
        tok *op = &P->t[P->i++];
        l = binop(P, op, l, p_pow(P));
    }
    return l;
}
static node *p_add(parser *P) {
    node *l = p_mul(P);
    while (is_t(P, T_ADD)) {
        tok *op = &P->t[P->i++];
        l = binop(P, op, l, p_mul(P));
    }
    return l;
}
static node *p_cmp(parser *P) {
    node *l = p_add(P);
    for (;;) {
        tok *op;
        static tok notin = {T_IDENT, "not in", 6, 0};
        tok tmp;
        if (P->i + 1 < P->n && is_id(P, "not") && P->t[P->i + 1].type == T_IDENT && tok_is(&P->t[P->i + 1], "in")) {
            tmp = notin;
            tmp.pos = P->t[P->i].pos;
            op = jalloc(P->j, sizeof *op);
            *op = tmp;
            P->i += 2;
        } else if (is_id(P, "in") || is_t(P, T_CMP)) {
            op = &P->t[P->i++];
        } else {
            break;
        }
        l = binop(P, op, l, p_add(P));
    }
    return l;
}
static node *p_not(parser *P) {
    if (is_id(P, "not")) {
        node *u = mk(P, N_UNARY, cur_pos(P));
        u->s = "not";
        u->sn = 3;
        P->i++;
        if (++P->j->depth > 400) fail(P->j, u->pos, "expression nested too deeply");
        u->a = p_not(P);
        P->j->depth--;
        return u;
    }
    return p_cmp(P);
}
static node *p_and(parser *P) {
    node *l = p_not(P);
    while (is_id(P, "and")) {
        tok *op = &P->t[P->i++];
        l = binop(P, op, l, p_not(P));
    }
    return l;
}
static node *p_or(parser *P) {
    node *l = p_and(P);
    while (is_id(P, "or")) {
        tok *op = &P->t[P->i++];
        l = binop(P, op, l, p_and(P));
    }
    return l;
}
static node *p_ifexpr(parser *P) {
    node *a = p_or(P);
    if (is_id(P, "if")) {
        int pos = cur_pos(P);
        P->i++;
        node *test = p_or(P);
        if (is_id(P, "else")) {
            P->i++;
            node *t = mk(P, N_TERNARY, pos);
            t->a = test;
            t->b = a;
            t->c = p_ifexpr(P);
            return t;
        }
        node *s = mk(P, N_SELECT, pos);
        s->a = a;
        s->b = test;
        return s;
    }
    return a;
}
static node *p_expr(parser *P) {
    need_more(P);
    if (++P->j->depth > 400) fail(P->j, cur_pos(P), "expression nested too deeply");
    node *n = p_ifexpr(P);
    P->j->depth--;
    return n;
}

static node *p_seq(parser *P, int primary) {
    int pos = cur_pos(P);
    node *first = primary ? p_primary(P) : p_expr(P);
    if (!is_t(P, T_COMMA)) return first;
    node *t = mk(P, N_TUPLE, pos);
    nl_push(P->j, &t->l1, first);
    while (is_t(P, T_COMMA)) {
        P->i++;
        nl_push(P->j, &t->l1, primary ? p_primary(P) : p_expr(P));
    }
    return t;
}

static node *p_primary(parser *P) {
    need_more(P);
    tok *t = &P->t[P->i++];
    switch (t->type) {
    case T_NUM: {
        char buf[64];
        size_t n = t->n < 63 ? t->n : 63;
        memcpy(buf, t->s, n);
        buf[n] = 0;
        if (memchr(t->s, '.', t->n)) {
            node *x = mk(P, N_FLOAT, t->pos);
            x->f = strtod(buf, NULL);
            return x;
        }
        node *x = mk(P, N_INT, t->pos);
        double d = strtod(buf, NULL);
        x->i = fabs(d) < 9.2e18 ? (int64_t)d : 0;
        if (fabs(d) >= 9.2e18) {
            x->k = N_FLOAT;
            x->f = d;
        }
        return x;
    }
    case T_STR: {
        node *x = mk(P, N_STR, t->pos);
        if (!is_t(P, T_STR)) {
            x->s = t->s;
            x->sn = t->n;
            return x;
        }
        sb b = {0};
        sb_put(P->j, &b, t->s, t->n);
        while (is_t(P, T_STR)) {
            sb_put(P->j, &b, P->t[P->i].s, P->t[P->i].n);
            P->i++;
        }
        x->s = b.p;
        x->sn = b.n;
        return x;
    }
    case T_IDENT: {
        node *x = mk(P, N_IDENT, t->pos);
        x->s = t->s;
        x->sn = t->n;
        return x;
    }
    case T_LPAREN: {
        node *e = p_seq(P, 0);
        expect(P, T_RPAREN, "')'");
        return e;
    }
    case T_LBRACK: {
        node *x = mk(P, N_ARRAY, t->pos);
        while (!is_t(P, T_RBRACK)) {
            need_more(P);
            nl_push(P->j, &x->l1, p_expr(P));
            if (is_t(P, T_COMMA)) P->i++;
        }
        P->i++;
        return x;
    }
    case T_LCURLY: {
        node *x = mk(P, N_OBJECT, t->pos);
        while (!is_t(P, T_RCURLY)) {
            need_more(P);
            nl_push(P->j, &x->l1, p_expr(P));
            expect(P, T_COLON, "':' between key and value in object literal");
            nl_push(P->j, &x->l2, p_expr(P));
            if (is_t(P, T_COMMA)) P->i++;
        }
        P->i++;
        return x;
    }
    default:
        fail(P->j, t->pos, "unexpected token %s", tok_desc(P->j, t));
    }
}

static void p_body_until(parser *P, nlist *body, const char *a, const char *b, const char *c) {
    while (!(is_stmt(P, a) || (b && is_stmt(P, b)) || (c && is_stmt(P, c)))) {
        need_more(P);
        nl_push(P->j, body, p_any(P));
    }
}

static void expect_end(parser *P, const char *name) {
    expect(P, T_OSTMT, "'{%'");
    expect_id(P, name);
    expect(P, T_CSTMT, "'%}'");
}

static node *p_if(parser *P, int pos) {
    node *n = mk(P, N_IF, pos);
    n->a = p_expr(P);
    expect(P, T_CSTMT, "'%}'");
    p_body_until(P, &n->l1, "elif", "else", "endif");
    if (is_stmt(P, "elif")) {
        int ep = P->t[P->i + 1].pos;
        P->i += 2;
        nl_push(P->j, &n->l2, p_if(P, ep));
    } else if (is_stmt(P, "else")) {
        P->i += 2;
        expect(P, T_CSTMT, "'%}'");
        p_body_until(P, &n->l2, "endif", NULL, NULL);
    }
    return n;
}

static node *p_statement(parser *P) {
    if (P->j->depth > 400) fail(P->j, cur_pos(P), "blocks nested too deeply");
    P->j->depth++;
    node *n = p_statement1(P);
    P->j->depth--;
    return n;
}

static node *p_statement1(parser *P) {
    expect(P, T_OSTMT, "'{%'");
    need_more(P);
    tok *t = &P->t[P->i];
    if (t->type != T_IDENT) fail(P->j, t->pos, "unknown statement: %s", tok_names[t->type]);
    int pos = t->pos;
    P->i++;
    if (tok_is(t, "set")) {
        node *n = mk(P, N_SET, pos);
        n->a = p_seq(P, 0);
        if (is_t(P, T_EQUALS)) {
            P->i++;
            n->b = p_seq(P, 0);
        } else {
            expect(P, T_CSTMT, "'%}'");
            p_body_until(P, &n->l1, "endset", NULL, NULL);
            expect(P, T_OSTMT, "'{%'");
            expect_id(P, "endset");
        }
        expect(P, T_CSTMT, "'%}'");
        return n;
    }
    if (tok_is(t, "if")) {
        node *n = p_if(P, pos);
        expect_end(P, "endif");
        return n;
    }
    if (tok_is(t, "for")) {
        node *n = mk(P, N_FOR, pos);
        int vpos = cur_pos(P);
        n->a = p_seq(P, 1);
        if (n->a->k != N_IDENT && n->a->k != N_TUPLE) fail(P->j, vpos, "expected identifier/tuple for the loop variable");
        if (!is_id(P, "in")) fail(P->j, cur_pos(P), "expected 'in' keyword following loop variable");
        P->i++;
        n->b = p_expr(P);
        expect(P, T_CSTMT, "'%}'");
        p_body_until(P, &n->l1, "endfor", "else", NULL);
        if (is_stmt(P, "else")) {
            P->i += 2;
            expect(P, T_CSTMT, "'%}'");
            p_body_until(P, &n->l2, "endfor", NULL, NULL);
        }
        expect_end(P, "endfor");
        return n;
    }
    if (tok_is(t, "macro")) {
        node *n = mk(P, N_MACRO, pos);
        int npos = cur_pos(P);
        n->a = p_primary(P);
        if (n->a->k != N_IDENT) fail(P->j, npos, "expected identifier following macro statement");
        p_args(P, &n->l2, 1);
        expect(P, T_CSTMT, "'%}'");
        p_body_until(P, &n->l1, "endmacro", NULL, NULL);
        expect_end(P, "endmacro");
        return n;
    }
    if (tok_is(t, "call")) {
        node *n = mk(P, N_CALLBLOCK, pos);
        n->b = mk(P, N_ARRAY, pos); /* caller parameters */
        if (is_t(P, T_LPAREN)) p_args(P, &n->b->l1, 1);
        int cpos = cur_pos(P);
        n->a = p_primary(P);
        if (n->a->k != N_IDENT) fail(P->j, cpos, "expected identifier following call statement");
        p_args(P, &n->l2, 0);
        expect(P, T_CSTMT, "'%}'");
        p_body_until(P, &n->l1, "endcall", NULL, NULL);
        expect_end(P, "endcall");
        return n;
    }
    if (tok_is(t, "filter")) {
        node *n = mk(P, N_FILTERBLOCK, pos);
        int fpos = cur_pos(P);
        n->b = p_primary(P);
        if (n->b->k == N_IDENT && is_t(P, T_LPAREN)) n->b = p_call(P, n->b);
        if (n->b->k != N_IDENT && n->b->k != N_CALL) fail(P->j, fpos, "expected a filter name");
        expect(P, T_CSTMT, "'%}'");
        p_body_until(P, &n->l1, "endfilter", NULL, NULL);
        expect_end(P, "endfilter");
        return n;
    }
    if (tok_is(t, "break") || tok_is(t, "continue")) {
        node *n = mk(P, tok_is(t, "break") ? N_BREAK : N_CONTINUE, pos);
        expect(P, T_CSTMT, "'%}'");
        return n;
    }
    fail(P->j, pos, "unknown statement: %.*s", (int)(t->n > 40 ? 40 : t->n), t->s);
}

static node *p_any(parser *P) {
    tok *t = &P->t[P->i];
    switch (t->type) {
    case T_COMMENT: {
        P->i++;
        return mk(P, N_COMMENT, t->pos);
    }
    case T_TEXT: {
        P->i++;
        node *n = mk(P, N_STR, t->pos);
        n->s = t->s;
        n->sn = t->n;
        return n;
    }
    case T_OSTMT: return p_statement(P);
    case T_OEXPR: {
        P->i++;
        node *e = p_expr(P);
        expect(P, T_CEXPR, "'}}'");
        return e;
    }
    default:
        fail(P->j, t->pos, "unexpected %s", tok_desc(P->j, t));
    }
}

/* ------------------------------------------------------------------------ */
/* Values                                                                     */

enum { V_UNDEF, V_NULL, V_BOOL, V_INT, V_FLOAT, V_STR, V_ARR, V_OBJ, V_NS, V_FUNC };
static const char *vt_names[] = {"UndefinedValue", "NullValue", "BooleanValue", "IntegerValue", "FloatValue",
                                 "StringValue", "ArrayValue", "ObjectValue", "NamespaceValue", "FunctionValue"};

typedef struct arr arr;
typedef struct obj obj;
typedef struct fn fn;

typedef struct V {
    int t;
    int tuple;
    union {
        int b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        arr *a;
        obj *o;
        fn *fn;
    } u;
} V;

struct arr {
    V *v;
    size_t n, cap;
};
struct obj {
    const char **k;
    size_t *kn;
    V *v;
    size_t n, cap;
};

enum {
    F_MACRO, F_NAMESPACE, F_RAISE, F_RANGE, F_S_UPPER, F_S_LOWER, F_S_STRIP, F_S_TITLE, F_S_CAP,
    F_S_RSTRIP, F_S_LSTRIP, F_S_STARTS, F_S_ENDS, F_S_SPLIT, F_S_REPLACE, F_O_GET, F_O_ITEMS,
    F_O_KEYS, F_O_VALUES, F_O_DICTSORT, F_STRFTIME, F_CALLER
};

typedef struct env env;
struct fn {
    int kind;
    V self;
    node *macro; /* F_MACRO: the macro; F_CALLER: the call block */
    env *env;    /* F_CALLER: where the call block runs */
};

struct env {
    env *parent;
    obj vars;
};

static V mkundef(void) { return (V){.t = V_UNDEF}; }
static V mknull(void) { return (V){.t = V_NULL}; }
static V mkbool(int b) { return (V){.t = V_BOOL, .u.b = !!b}; }
static V mkint(int64_t i) { return (V){.t = V_INT, .u.i = i}; }
static V mkfloat(double f) { return (V){.t = V_FLOAT, .u.f = f}; }
static V mkstr(const char *p, size_t n) {
    V v = {.t = V_STR};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}
static V mkcstr(const char *p) { return mkstr(p, strlen(p)); }
static V mkarr(J *j) {
    V v = {.t = V_ARR};
    v.u.a = jzalloc(j, sizeof(arr));
    return v;
}
static V mkobj(J *j, int t) {
    V v = {.t = t};
    v.u.o = jzalloc(j, sizeof(obj));
    return v;
}
static V mkfn(J *j, int kind, V self) {
    V v = {.t = V_FUNC};
    v.u.fn = jzalloc(j, sizeof(fn));
    v.u.fn->kind = kind;
    v.u.fn->self = self;
    return v;
}

static void arr_push(J *j, arr *a, V x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4;
        V *v = jalloc(j, cap * sizeof *v);
        if (a->n) memcpy(v, a->v, a->n * sizeof *v);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
}

static V *obj_find(obj *o, const char *k, size_t kn) {
    for (size_t i = 0; i < o->n; i++)
        if (o->kn[i] == kn && !memcmp(o->k[i], k, kn)) return &o->v[i];
    return NULL;
}

static void obj_set(J *j, obj *o, const char *k, size_t kn, V x) {
    V *p = obj_find(o, k, kn);
    if (p) {
        *p = x;
        return;
    }
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        const char **nk = jalloc(j, cap * sizeof *nk);
        size_t *nkn = jalloc(j, cap * sizeof *nkn);
        V *nv = jalloc(j, cap * sizeof *nv);
        if (o->n) {
            memcpy(nk, o->k, o->n * sizeof *nk);
            memcpy(nkn, o->kn, o->n * sizeof *nkn);
            memcpy(nv, o->v, o->n * sizeof *nv);
        }
        o->k = nk;
        o->kn = nkn;
        o->v = nv;
        o->cap = cap;
    }
    o->k[o->n] = k;
    o->kn[o->n] = kn;
    o->v[o->n++] = x;
}

static V from_json(J *j, const json_t *x) {
    switch (json_typeof(x)) {
    case JSON_OBJECT: {
        V v = mkobj(j, V_OBJ);
        const char *k;
        json_t *e;
        void *it = json_object_iter((json_t *)x);
        while (it) {
            k = json_object_iter_key(it);
            e = json_object_iter_value(it);
            size_t kn = json_object_iter_key_len(it);
            obj_set(j, v.u.o, jstrndup(j, k, kn), kn, from_json(j, e));
            it = json_object_iter_next((json_t *)x, it);
        }
        return v;
    }
    case JSON_ARRAY: {
        V v = mkarr(j);
        size_t i;
        json_t *e;
        json_array_foreach(x, i, e) arr_push(j, v.u.a, from_json(j, e));
        return v;
    }
    case JSON_STRING: return mkstr(jstrndup(j, json_string_value(x), json_string_length(x)), json_string_length(x));
    case JSON_INTEGER: return mkint(json_integer_value(x));
    case JSON_REAL: {
        double d = json_real_value(x);
        if (d == floor(d) && fabs(d) < 9e15) return mkint((int64_t)d);
        return mkfloat(d);
    }
    case JSON_TRUE: return mkbool(1);
    case JSON_FALSE: return mkbool(0);
    default: return mknull();
    }
}

static int truthy(V v) {
    switch (v.t) {
    case V_BOOL: return v.u.b;
    case V_INT: return v.u.i != 0;
    case V_FLOAT: return v.u.f != 0 && !isnan(v.u.f);
    case V_STR: return v.u.s.n > 0;
    case V_ARR: return v.u.a->n > 0;
    case V_OBJ: return v.u.o->n > 0;
    case V_NS: case V_FUNC: return 1;
    default: return 0;
    }
}

/* JavaScript Number.prototype.toString */
static void js_num(J *j, sb *b, double d) {
    char buf[64];
    if (isnan(d)) {
        sb_puts(j, b, "NaN");
        return;
    }
    if (isinf(d)) {
        sb_puts(j, b, d < 0 ? "-Infinity" : "Infinity");
        return;
    }
    if (d == 0) {
        sb_puts(j, b, "0");
        return;
    }
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
        if (strtod(buf, NULL) == d) break;
    }
    /* buf = [-]D.DDDe±XX */
    char digits[32];
    size_t nd = 0;
    const char *p = buf;
    int neg = 0;
    if (*p == '-') neg = 1, p++;
    for (; *p && *p != 'e'; p++)
        if (is_digit(*p)) digits[nd++] = *p;
    int e10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (neg) sb_putc(j, b, '-');
    int n = e10 + 1; /* position of the decimal point */
    if (n >= (int)nd && n <= 21) {
        sb_put(j, b, digits, nd);
        for (int k = (int)nd; k < n; k++) sb_putc(j, b, '0');
    } else if (n > 0 && n <= 21) {
        sb_put(j, b, digits, (size_t)n);
        sb_putc(j, b, '.');
        sb_put(j, b, digits + n, nd - (size_t)n);
    } else if (n > -6 && n <= 0) {
        sb_puts(j, b, "0.");
        for (int k = 0; k < -n; k++) sb_putc(j, b, '0');
        sb_put(j, b, digits, nd);
    } else {
        sb_putc(j, b, digits[0]);
        if (nd > 1) {
            sb_putc(j, b, '.');
            sb_put(j, b, digits + 1, nd - 1);
        }
        snprintf(buf, sizeof buf, "e%c%d", e10 < 0 ? '-' : '+', e10 < 0 ? -e10 : e10);
        sb_puts(j, b, buf);
    }
}

static void js_int(J *j, sb *b, int64_t i) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)i);
    sb_puts(j, b, buf);
}

/* JSON.stringify of a string */
static void json_str(J *j, sb *b, const char *s, size_t n, int ascii) {
    sb_putc(j, b, '"');
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        char buf[16];
        if (c == '"') sb_puts(j, b, "\\\""), i++;
        else if (c == '\\') sb_puts(j, b, "\\\\"), i++;
        else if (c == '\n') sb_puts(j, b, "\\n"), i++;
        else if (c == '\r') sb_puts(j, b, "\\r"), i++;
        else if (c == '\t') sb_puts(j, b, "\\t"), i++;
        else if (c == '\b') sb_puts(j, b, "\\b"), i++;
        else if (c == '\f') sb_puts(j, b, "\\f"), i++;
        else if (c < 0x20) {
            snprintf(buf, sizeof buf, "\\u%04x", c);
            sb_puts(j, b, buf);
            i++;
        } else if (c < 0x7f) {
            sb_putc(j, b, (char)c);
            i++;
        } else {
            size_t l;
            uint32_t cp = u8_dec(s, n, i, &l);
            if (ascii) {
                if (cp >= 0x10000) {
                    uint32_t v = cp - 0x10000;
                    snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
                } else {
                    snprintf(buf, sizeof buf, "\\u%04x", cp);
                }
                sb_puts(j, b, buf);
            } else {
                sb_put(j, b, s + i, l);
            }
            i += l;
        }
    }
    sb_putc(j, b, '"');
}

typedef struct jopts {
    int64_t indent; /* 0: none */
    int ascii, sort;
    const char *isep, *ksep;
} jopts;

static void to_json(J *j, sb *b, V v, const jopts *o, int depth, int undef_null, int pos) {
    switch (v.t) {
    case V_NULL: sb_puts(j, b, "null"); return;
    case V_UNDEF: sb_puts(j, b, undef_null ? "null" : "undefined"); return;
    case V_BOOL: sb_puts(j, b, v.u.b ? "true" : "false"); return;
    case V_INT: js_int(j, b, v.u.i); return;
    case V_FLOAT:
        if (!isfinite(v.u.f)) sb_puts(j, b, "null");
        else js_num(j, b, v.u.f);
        return;
    case V_STR: json_str(j, b, v.u.s.p, v.u.s.n, o->ascii); return;
    case V_ARR: case V_OBJ: case V_NS: {
        if (v.tuple) fail(j, pos, "cannot convert to JSON: %s", v.t == V_ARR ? "TupleValue" : "KeywordArgumentsValue");
        const char *isep = o->isep ? o->isep : o->indent ? "," : ", ";
        const char *ksep = o->ksep ? o->ksep : ": ";
        if (depth > 200) fail(j, pos, "tojson: structure nested too deeply");
        sb pad = {0};
        sb_putc(j, &pad, '\n');
        for (int64_t d = 0; d < o->indent * depth; d++) sb_putc(j, &pad, ' ');
        sb cpad = {0};
        sb_put(j, &cpad, pad.p, pad.n);
        for (int64_t d = 0; d < o->indent; d++) sb_putc(j, &cpad, ' ');
        if (v.t == V_ARR) {
            arr *a = v.u.a;
            sb_putc(j, b, '[');
            for (size_t i = 0; i < a->n; i++) {
                if (i) sb_puts(j, b, isep);
                if (o->indent) sb_put(j, b, cpad.p, cpad.n);
                to_json(j, b, a->v[i], o, depth + 1, undef_null, pos);
            }
            if (o->indent && a->n) sb_put(j, b, pad.p, pad.n);
            sb_putc(j, b, ']');
        } else {
            obj *ob = v.u.o;
            size_t *ord = jalloc(j, (ob->n + 1) * 2 * sizeof *ord);
            for (size_t i = 0; i < ob->n; i++) ord[2 * i] = i, ord[2 * i + 1] = i;
            if (o->sort && ob->n > 1) {
                /* localeCompare approximated by byte order; ties keep insertion order */
                for (size_t i = 1; i < ob->n; i++)
                    for (size_t k = i; k > 0; k--) {
                        size_t x = ord[2 * (k - 1)], y = ord[2 * k];
                        size_t ln = ob->kn[x] < ob->kn[y] ? ob->kn[x] : ob->kn[y];
                        int c = memcmp(ob->k[x], ob->k[y], ln);
                        if (c > 0 || (c == 0 && ob->kn[x] > ob->kn[y])) {
                            ord[2 * (k - 1)] = y;
                            ord[2 * k] = x;
                        } else break;
                    }
            }
            sb_putc(j, b, '{');
            for (size_t i = 0; i < ob->n; i++) {
                size_t x = ord[2 * i];
                if (i) sb_puts(j, b, isep);
                if (o->indent) sb_put(j, b, cpad.p, cpad.n);
                json_str(j, b, ob->k[x], ob->kn[x], o->ascii);
                sb_puts(j, b, ksep);
                to_json(j, b, ob->v[x], o, depth + 1, undef_null, pos);
            }
            if (o->indent && ob->n) sb_put(j, b, pad.p, pad.n);
            sb_putc(j, b, '}');
        }
        return;
    }
    default: fail(j, pos, "cannot convert to JSON: %s", vt_names[v.t]);
    }
}

/* RuntimeValue.toString() */
static void v_str(J *j, sb *b, V v, int pos) {
    static const jopts none = {0};
    switch (v.t) {
    case V_UNDEF: sb_puts(j, b, "undefined"); return;
    case V_NULL: sb_puts(j, b, "undefined"); return; /* a NullValue holds JS undefined */
    case V_BOOL: sb_puts(j, b, v.u.b ? "true" : "false"); return;
    case V_INT: js_int(j, b, v.u.i); return;
    case V_FLOAT:
        if (v.u.f == 0 && signbit(v.u.f)) sb_puts(j, b, "-0.0");
        else if (isfinite(v.u.f) && v.u.f == floor(v.u.f) && fabs(v.u.f) < 1e21) {
            js_num(j, b, v.u.f);
            sb_puts(j, b, ".0");
        } else js_num(j, b, v.u.f);
        return;
    case V_STR: sb_put(j, b, v.u.s.p, v.u.s.n); return;
    case V_FUNC: sb_puts(j, b, "[function]"); return;
    default: to_json(j, b, v, &none, 0, 0, pos); return;
    }
}

/* `.value.toString()` as JavaScript does it for + and ~ */
static void v_raw_str(J *j, sb *b, V v, int pos) {
    if (v.t == V_FLOAT) {
        js_num(j, b, v.u.f);
        return;
    }
    if (v.t == V_ARR) { /* Array.prototype.toString of RuntimeValues */
        for (size_t i = 0; i < v.u.a->n; i++) {
            if (i) sb_putc(j, b, ',');
            v_str(j, b, v.u.a->v[i], pos);
        }
        return;
    }
    if (v.t == V_OBJ || v.t == V_NS) {
        sb_puts(j, b, "[object Map]");
        return;
    }
    if (v.t == V_FUNC) fail(j, pos, "cannot convert %s to a string", vt_names[v.t]);
    v_str(j, b, v, pos);
}

static V v_tostring(J *j, V v, int pos) {
    if (v.t == V_STR) return v;
    sb b = {0};
    sb_put(j, &b, "", 0);
    v_str(j, &b, v, pos);
    return mkstr(b.p, b.n);
}

/* ------------------------------------------------------------------------ */
/* Evaluation                                                                 */

static V eval(J *j, node *n, env *e);
static int exec_block(J *j, nlist *body, env *e, sb *out);

static env *env_new(J *j, env *parent) {
    env *e = jzalloc(j, sizeof *e);
    e->parent = parent;
    return e;
}
static V env_get(env *e, const char *k, size_t kn) {
    for (; e; e = e->parent) {
        V *p = obj_find(&e->vars, k, kn);
        if (p) return *p;
    }
    return mkundef();
}
static void env_set(J *j, env *e, const char *k, size_t kn, V v) { obj_set(j, &e->vars, k, kn, v); }


static int is_num(V v) { return v.t == V_INT || v.t == V_FLOAT; }
static double num(V v) { return v.t == V_INT ? (double)v.u.i : v.t == V_FLOAT ? v.u.f : v.t == V_BOOL ? v.u.b : 0; }

/* JavaScript ToNumber of a string */
static double js_str_num(const char *s, size_t n) {
    size_t b, e;
    js_trim(s, n, 1, 1, &b, &e);
    if (b == e) return 0;
    char buf[128];
    if (e - b >= sizeof buf) return NAN;
    memcpy(buf, s + b, e - b);
    buf[e - b] = 0;
    char *end;
    double d;
    if (!strcmp(buf, "Infinity") || !strcmp(buf, "+Infinity")) return INFINITY;
    if (!strcmp(buf, "-Infinity")) return -INFINITY;
    if (buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X')) d = (double)strtoull(buf + 2, &end, 16);
    else {
        for (char *q = buf; *q; q++)
            if (!(is_digit(*q) || *q == '.' || *q == 'e' || *q == 'E' || *q == '+' || *q == '-')) return NAN;
        d = strtod(buf, &end);
    }
    return *end ? NAN : d;
}

/* JavaScript `a.value == b.value` */
static void v_raw_str(J *j, sb *b, V v, int pos);

static int loose_eq(J *j, V a, V b, int pos) {
    int an = a.t == V_UNDEF || a.t == V_NULL, bn = b.t == V_UNDEF || b.t == V_NULL;
    if (an || bn) return an && bn;
    int ao = a.t == V_ARR || a.t == V_OBJ || a.t == V_NS, bo = b.t == V_ARR || b.t == V_OBJ || b.t == V_NS;
    if (ao != bo && a.t != V_FUNC && b.t != V_FUNC) { /* ToPrimitive of the array/Map: its toString() */
        sb t = {0};
        sb_put(j, &t, "", 0);
        v_raw_str(j, &t, ao ? a : b, pos);
        if (ao) a = mkstr(t.p, t.n);
        else b = mkstr(t.p, t.n);
    }
    if (a.t == V_STR && b.t == V_STR) return a.u.s.n == b.u.s.n && !memcmp(a.u.s.p, b.u.s.p, a.u.s.n);
    int ap = a.t == V_BOOL || is_num(a) || a.t == V_STR, bp = b.t == V_BOOL || is_num(b) || b.t == V_STR;
    if (ap && bp) {
        double x = a.t == V_STR ? js_str_num(a.u.s.p, a.u.s.n) : num(a);
        double y = b.t == V_STR ? js_str_num(b.u.s.p, b.u.s.n) : num(b);
        return x == y;
    }
    if (a.t != b.t) return 0;
    if (a.t == V_ARR) return a.u.a == b.u.a;
    if (a.t == V_OBJ || a.t == V_NS) return a.u.o == b.u.o;
    if (a.t == V_FUNC) return a.u.fn == b.u.fn;
    return 0;
}

/* JavaScript `x.value === y.value` */
static int strict_eq(V a, V b) {
    if (is_num(a) && is_num(b)) return num(a) == num(b);
    if ((a.t == V_NULL || a.t == V_UNDEF) && (b.t == V_NULL || b.t == V_UNDEF)) return 1; /* both JS undefined */
    if (a.t != b.t) return 0;
    switch (a.t) {
    case V_UNDEF: case V_NULL: return 1;
    case V_BOOL: return a.u.b == b.u.b;
    case V_STR: return a.u.s.n == b.u.s.n && !memcmp(a.u.s.p, b.u.s.p, a.u.s.n);
    case V_ARR: return a.u.a == b.u.a;
    case V_OBJ: case V_NS: return a.u.o == b.u.o;
    default: return a.u.fn == b.u.fn;
    }
}

static int mem_find(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn == 0) return 1;
    if (nn > hn) return 0;
    for (size_t i = 0; i + nn <= hn; i++)
        if (!memcmp(h + i, nd, nn)) return 1;
    return 0;
}

static V concat_str(J *j, V l, V r, int pos) {
    sb b = {0};
    sb_put(j, &b, "", 0);
    v_raw_str(j, &b, l, pos);
    v_raw_str(j, &b, r, pos);
    return mkstr(b.p, b.n);
}

/* An integer result outside int64 (or NaN) stays a float, as the JavaScript
 * number it is in @huggingface/jinja (no undefined conversion). */
static V num_result(int fl, double d) {
    if (fl || !(d > -9223372036854775808.0 && d < 9223372036854775808.0)) return mkfloat(d);
    return mkint((int64_t)d);
}

static V eval_binary(J *j, node *n, env *e) {
    const char *op = n->s;
    size_t on = n->sn;
#define OP(s) (on == sizeof(s) - 1 && !memcmp(op, s, on))
    V l = eval(j, n->a, e);
    if (OP("and")) return truthy(l) ? eval(j, n->b, e) : l;
    if (OP("or")) return truthy(l) ? l : eval(j, n->b, e);
    V r = eval(j, n->b, e);
    if (OP("==")) return mkbool(loose_eq(j, l, r, n->pos));
    if (OP("!=")) return mkbool(!loose_eq(j, l, r, n->pos));
    if (l.t == V_UNDEF || r.t == V_UNDEF) {
        if (r.t == V_UNDEF && (OP("in") || OP("not in"))) return mkbool(OP("not in"));
        fail(j, n->pos, "cannot perform operation %.*s on undefined values", (int)on, op);
    }
    if (l.t == V_NULL || r.t == V_NULL) fail(j, n->pos, "cannot perform operation %.*s on null values", (int)on, op);
    if (OP("~")) return concat_str(j, l, r, n->pos);
    if (OP("**") && (is_num(l) || l.t == V_BOOL) && (is_num(r) || r.t == V_BOOL)) {
        double a = num(l), b = num(r);
        if (a == 0 && b < 0) fail(j, n->pos, "0.0 cannot be raised to a negative power");
        double res = pow(a, b);
        if (!isfinite(res)) fail(j, n->pos, "exponentiation result is not a finite real number");
        return num_result(l.t == V_FLOAT || r.t == V_FLOAT || b < 0, res);
    }
    if (is_num(l) && is_num(r)) {
        int fl = l.t == V_FLOAT || r.t == V_FLOAT;
        double a = num(l), b = num(r);
        if (!fl && (OP("+") || OP("-") || OP("*"))) {
            int64_t x = l.u.i, y = r.u.i, z;
            int ovf = OP("+") ? __builtin_add_overflow(x, y, &z) : OP("-") ? __builtin_sub_overflow(x, y, &z) : __builtin_mul_overflow(x, y, &z);
            if (ovf) fail(j, n->pos, "integer overflow in %.*s", (int)on, op);
            return mkint(z);
        }
        if (OP("+")) return mkfloat(a + b);
        if (OP("-")) return mkfloat(a - b);
        if (OP("*")) return mkfloat(a * b);
        if (OP("/")) return mkfloat(a / b);
        if (OP("//")) { /* JavaScript: x // 0 is ±Infinity or NaN */
            if (!fl && b == 0) return mkfloat(floor(a / b));
            return num_result(fl, floor(a / b));
        }
        if (OP("%")) {
            if (!fl) {
                if (r.u.i == 0) return mkfloat(NAN);
                if (r.u.i == -1) return mkint(0);
                return mkint(l.u.i % r.u.i);
            }
            return mkfloat(fmod(a, b));
        }
        if (OP("<")) return mkbool(a < b);
        if (OP(">")) return mkbool(a > b);
        if (OP(">=")) return mkbool(a >= b);
        if (OP("<=")) return mkbool(a <= b);
    } else if (l.t == V_ARR && r.t == V_ARR) {
        if (OP("+")) {
            V out = mkarr(j);
            for (size_t i = 0; i < l.u.a->n; i++) arr_push(j, out.u.a, l.u.a->v[i]);
            for (size_t i = 0; i < r.u.a->n; i++) arr_push(j, out.u.a, r.u.a->v[i]);
            return out;
        }
    } else if (r.t == V_ARR) {
        int found = 0;
        for (size_t i = 0; i < r.u.a->n && !found; i++) found = strict_eq(r.u.a->v[i], l);
        if (OP("in")) return mkbool(found);
        if (OP("not in")) return mkbool(!found);
    }
    if ((l.t == V_STR || r.t == V_STR) && OP("+")) return concat_str(j, l, r, n->pos);
    if (l.t == V_STR && r.t == V_STR) {
        if (OP("in")) return mkbool(mem_find(r.u.s.p, r.u.s.n, l.u.s.p, l.u.s.n));
        if (OP("not in")) return mkbool(!mem_find(r.u.s.p, r.u.s.n, l.u.s.p, l.u.s.n));
    }
    if (l.t == V_STR && r.t == V_OBJ) {
        int has = obj_find(r.u.o, l.u.s.p, l.u.s.n) != NULL;
        if (OP("in")) return mkbool(has);
        if (OP("not in")) return mkbool(!has);
    }
    fail(j, n->pos, "unknown operator \"%.*s\" between %s and %s", (int)on, op, vt_names[l.t], vt_names[r.t]);
#undef OP
}

/* code points of a string (offsets of each) */
static size_t cp_offsets(J *j, V s, size_t **offs) {
    size_t *o = jalloc(j, (s.u.s.n + 1) * sizeof *o);
    size_t k = 0;
    for (size_t i = 0; i < s.u.s.n; i += u8_len(s.u.s.p, s.u.s.n, i)) o[k++] = i;
    o[k] = s.u.s.n;
    *offs = o;
    return k;
}

static size_t js_length(V s) { /* UTF-16 length */
    size_t n = 0;
    for (size_t i = 0; i < s.u.s.n;) {
        size_t l = u8_len(s.u.s.p, s.u.s.n, i);
        n += l == 4 ? 2 : 1;
        i += l;
    }
    return n;
}


static V eval_slice(J *j, V obj_, node *s, env *e, int pos) {
    if (obj_.t != V_ARR && obj_.t != V_STR) fail(j, pos, "slice object must be an array or string");
    V a = s->a ? eval(j, s->a, e) : mkundef(), b = s->b ? eval(j, s->b, e) : mkundef(),
      c = s->c ? eval(j, s->c, e) : mkundef();
    if ((a.t != V_INT && a.t != V_UNDEF) || (b.t != V_INT && b.t != V_UNDEF) || (c.t != V_INT && c.t != V_UNDEF))
        fail(j, pos, "slice indices must be integers or undefined");
    size_t *offs = NULL;
    int64_t len = obj_.t == V_ARR ? (int64_t)obj_.u.a->n : (int64_t)cp_offsets(j, obj_, &offs);
    int64_t step = c.t == V_INT ? c.u.i : 1;
    int64_t start, stop;
    if (step == 0) fail(j, pos, "slice step cannot be zero");
    if (step > 0) {
        start = a.t == V_INT ? a.u.i : 0;
        start = start < 0 ? (len + start > 0 ? len + start : 0) : (start < len ? start : len);
        stop = b.t == V_INT ? b.u.i : len;
        stop = stop < 0 ? (len + stop > 0 ? len + stop : 0) : (stop < len ? stop : len);
    } else {
        start = a.t == V_INT ? a.u.i : len - 1;
        start = start < 0 ? (len + start > -1 ? len + start : -1) : (start < len - 1 ? start : len - 1);
        stop = b.t == V_INT ? b.u.i : -1;
        stop = stop < -1 ? (len + stop > -1 ? len + stop : -1) : (stop < len - 1 ? stop : len - 1);
    }
    int64_t dir = step > 0 ? 1 : -1;
    if (obj_.t == V_ARR) {
        V out = mkarr(j);
        for (int64_t i = start; dir * i < dir * stop; i += step) arr_push(j, out.u.a, obj_.u.a->v[i]);
        return out;
    }
    sb o = {0};
    sb_put(j, &o, "", 0);
    for (int64_t i = start; dir * i < dir * stop; i += step)
        sb_put(j, &o, obj_.u.s.p + offs[i], offs[i + 1] - offs[i]);
    return mkstr(o.p, o.n);
}

static const struct {
    const char *name;
    int kind;
} str_methods[] = {{"upper", F_S_UPPER}, {"lower", F_S_LOWER}, {"strip", F_S_STRIP}, {"title", F_S_TITLE},
                   {"capitalize", F_S_CAP}, {"rstrip", F_S_RSTRIP}, {"lstrip", F_S_LSTRIP},
                   {"startswith", F_S_STARTS}, {"endswith", F_S_ENDS}, {"split", F_S_SPLIT},
                   {"replace", F_S_REPLACE}};
static const struct {
    const char *name;
    int kind;
} obj_methods[] = {{"get", F_O_GET}, {"items", F_O_ITEMS}, {"keys", F_O_KEYS}, {"values", F_O_VALUES},
                   {"dictsort", F_O_DICTSORT}};

/* builtins (properties) of a value by name; undefined if none */
static V builtin_prop(J *j, V o, const char *k, size_t kn, int pos) {
    if (o.t == V_STR) {
        if (kn == 6 && !memcmp(k, "length", 6)) return mkint((int64_t)js_length(o));
        for (size_t i = 0; i < sizeof str_methods / sizeof str_methods[0]; i++)
            if (strlen(str_methods[i].name) == kn && !memcmp(str_methods[i].name, k, kn)) return mkfn(j, str_methods[i].kind, o);
    } else if (o.t == V_ARR) {
        if (kn == 6 && !memcmp(k, "length", 6)) return mkint((int64_t)o.u.a->n);
    } else if (o.t == V_OBJ) {
        for (size_t i = 0; i < sizeof obj_methods / sizeof obj_methods[0]; i++)
            if (strlen(obj_methods[i].name) == kn && !memcmp(obj_methods[i].name, k, kn)) return mkfn(j, obj_methods[i].kind, o);
    }
    return mkundef();
}

static V eval_member(J *j, node *n, env *e) {
    V o = eval(j, n->a, e);
    V p;
    if (n->flag) {
        if (n->b->k == N_SLICE) return eval_slice(j, o, n->b, e, n->pos);
        p = eval(j, n->b, e);
    } else if (n->b->k == N_INT) {
        p = mkint(n->b->i);
    } else {
        p = mkstr(n->b->s, n->b->sn);
    }
    if (o.t == V_OBJ || o.t == V_NS) {
        if (p.t != V_STR) fail(j, n->pos, "cannot access property with non-string: got %s", vt_names[p.t]);
        V *x = obj_find(o.u.o, p.u.s.p, p.u.s.n);
        if (x) return *x;
        if (o.t == V_OBJ) return builtin_prop(j, o, p.u.s.p, p.u.s.n, n->pos);
        return mkundef();
    }
    if (o.t == V_ARR || o.t == V_STR) {
        if (p.t == V_INT) {
            if (o.t == V_ARR) {
                int64_t i = p.u.i < 0 ? p.u.i + (int64_t)o.u.a->n : p.u.i;
                if (i < 0 || i >= (int64_t)o.u.a->n) return mkundef();
                return o.u.a->v[i];
            }
            size_t *offs;
            int64_t len = (int64_t)cp_offsets(j, o, &offs);
            int64_t i = p.u.i < 0 ? p.u.i + len : p.u.i;
            if (i < 0 || i >= len) return mkundef();
            return mkstr(o.u.s.p + offs[i], offs[i + 1] - offs[i]);
        }
        if (p.t == V_STR) return builtin_prop(j, o, p.u.s.p, p.u.s.n, n->pos);
        fail(j, n->pos, "cannot access property with non-string/non-number: got %s", vt_names[p.t]);
    }
    if (p.t != V_STR) fail(j, n->pos, "cannot access property with non-string: got %s", vt_names[p.t]);
    return mkundef();
}

typedef struct args {
    V *pos;
    size_t np;
    obj kw;
    int has_kw;
} args;

static void eval_args(J *j, nlist *l, env *e, args *a) {
    memset(a, 0, sizeof *a);
    a->pos = jalloc(j, (l->n + 1) * sizeof(V));
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i]->k != N_KWARG) a->pos[a->np++] = eval(j, l->v[i], e);
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i]->k == N_KWARG) {
            node *k = l->v[i];
            if (obj_find(&a->kw, k->s, k->sn)) fail(j, k->pos, "got multiple values for keyword argument '%.*s'", (int)k->sn, k->s);
            obj_set(j, &a->kw, k->s, k->sn, eval(j, k->a, e));
            a->has_kw = 1;
        }
}

static V *kwget(args *a, const char *k) { return obj_find(&a->kw, k, strlen(k)); }

static V ascii_case(J *j, V s, int mode) { /* 0 upper, 1 lower, 2 title, 3 capitalize */
    char *p = jstrndup(j, s.u.s.p, s.u.s.n);
    int prev_word = 0;
    for (size_t i = 0; i < s.u.s.n; i++) {
        char c = p[i];
        if (mode == 0 && c >= 'a' && c <= 'z') p[i] = (char)(c - 32);
        else if (mode == 1 && c >= 'A' && c <= 'Z') p[i] = (char)(c + 32);
        else if (mode == 2) {
            if (!prev_word && c >= 'a' && c <= 'z') p[i] = (char)(c - 32);
            prev_word = is_word(c);
        } else if (mode == 3 && i == 0 && c >= 'a' && c <= 'z') p[i] = (char)(c - 32);
    }
    return mkstr(p, s.u.s.n);
}

static V str_trim(V s, int l, int r) {
    size_t b, e;
    js_trim(s.u.s.p, s.u.s.n, l, r, &b, &e);
    return mkstr(s.u.s.p + b, e - b);
}

static int starts_with(V s, V p) { return p.u.s.n <= s.u.s.n && !memcmp(s.u.s.p, p.u.s.p, p.u.s.n); }
static int ends_with(V s, V p) { return p.u.s.n <= s.u.s.n && !memcmp(s.u.s.p + s.u.s.n - p.u.s.n, p.u.s.p, p.u.s.n); }

static V str_replace(J *j, V s, V from, V to, int64_t count, int pos) {
    if (count == 0) return s;
    int64_t left = count < 0 ? INT64_MAX : count;
    sb b = {0};
    sb_put(j, &b, "", 0);
    if (from.u.s.n == 0) { /* insert at every code point boundary */
        for (size_t i = 0; i <= s.u.s.n;) {
            if (left > 0) sb_put(j, &b, to.u.s.p, to.u.s.n), left--;
            if (i == s.u.s.n) break;
            size_t l = u8_len(s.u.s.p, s.u.s.n, i);
            sb_put(j, &b, s.u.s.p + i, l);
            i += l;
        }
        return mkstr(b.p, b.n);
    }
    (void)pos;
    size_t i = 0;
    while (i < s.u.s.n) {
        if (left > 0 && i + from.u.s.n <= s.u.s.n && !memcmp(s.u.s.p + i, from.u.s.p, from.u.s.n)) {
            sb_put(j, &b, to.u.s.p, to.u.s.n);
            i += from.u.s.n;
            left--;
        } else {
            sb_putc(j, &b, s.u.s.p[i++]);
        }
    }
    return mkstr(b.p, b.n);
}

static V call_macro(J *j, const char *name, size_t nn, nlist *params, nlist *body, args *a, env *parent, int pos);
static V sort_values(J *j, arr *a, int reverse, int cs, V attr, int pos);

static V call_fn(J *j, V f, args *a, env *e, int pos) {
    fn *F = f.u.fn;
    V s = F->self;
    switch (F->kind) {
    case F_MACRO: return call_macro(j, F->macro->a->s, F->macro->a->sn, &F->macro->l2, &F->macro->l1, a, e, pos);
    case F_CALLER: return call_macro(j, "caller", 6, &F->macro->b->l1, &F->macro->l1, a, F->env, pos);
    case F_RAISE: {
        sb b = {0};
        sb_put(j, &b, "", 0);
        /* the message is the first argument's value */
        if (a->np && a->pos[0].t != V_NULL && a->pos[0].t != V_UNDEF) v_raw_str(j, &b, a->pos[0], pos);
        fail(j, pos, "raise_exception: %s", b.p);
    }
    case F_NAMESPACE: {
        V ns = mkobj(j, V_NS);
        if (a->np > 1) fail(j, pos, "namespace expected at most 1 argument, got %zu", a->np);
        if (a->np == 1) {
            V src = a->pos[0];
            if (src.t == V_OBJ)
                for (size_t i = 0; i < src.u.o->n; i++) obj_set(j, ns.u.o, src.u.o->k[i], src.u.o->kn[i], src.u.o->v[i]);
            else if (src.t == V_ARR) {
                for (size_t i = 0; i < src.u.a->n; i++) {
                    V p = src.u.a->v[i];
                    if (p.t != V_ARR || p.u.a->n != 2 || p.u.a->v[0].t != V_STR)
                        fail(j, pos, "namespace expected an object or an iterable of [key, value] pairs");
                    obj_set(j, ns.u.o, p.u.a->v[0].u.s.p, p.u.a->v[0].u.s.n, p.u.a->v[1]);
                }
            } else fail(j, pos, "'%s' object is not iterable", vt_names[src.t]);
        }
        for (size_t i = 0; i < a->kw.n; i++) obj_set(j, ns.u.o, a->kw.k[i], a->kw.kn[i], a->kw.v[i]);
        return ns;
    }
    case F_RANGE: { /* JavaScript semantics: undefined is a missing argument, others are coerced */
        double x[3];
        int have[3] = {0, 0, 0};
        for (size_t i = 0; i < 3; i++) {
            V v = i < a->np ? a->pos[i] : mkundef();
            have[i] = v.t != V_UNDEF;
            x[i] = v.t == V_NULL ? 0 : v.t == V_STR ? js_str_num(v.u.s.p, v.u.s.n) : (is_num(v) || v.t == V_BOOL) ? num(v) : NAN;
        }
        double st = x[0], sp = x[1], step = have[2] ? x[2] : 1;
        if (!have[1]) {
            sp = have[0] ? st : NAN;
            st = 0;
        }
        if (step == 0) fail(j, pos, "range() step must not be zero");
        V out = mkarr(j);
        for (double i = st; step > 0 ? i < sp : i > sp; i += step) {
            if (out.u.a->n >= 1000000) fail(j, pos, "range() longer than 1000000 items");
            arr_push(j, out.u.a, i == floor(i) && fabs(i) < 9e15 ? mkint((int64_t)i) : mkfloat(i));
        }
        return out;
    }
    case F_STRFTIME: fail(j, pos, "unsupported construct: strftime_now()");
    case F_S_UPPER: return ascii_case(j, s, 0);
    case F_S_LOWER: return ascii_case(j, s, 1);
    case F_S_TITLE: return ascii_case(j, s, 2);
    case F_S_CAP: return ascii_case(j, s, 3);
    case F_S_STRIP: case F_S_LSTRIP: case F_S_RSTRIP: {
        /* @huggingface/jinja ignores a chars argument: it trims whitespace */
        return str_trim(s, F->kind != F_S_RSTRIP, F->kind != F_S_LSTRIP);
    }
    case F_S_STARTS: case F_S_ENDS: {
        const char *nm = F->kind == F_S_STARTS ? "startswith" : "endswith";
        if (a->np == 0) fail(j, pos, "%s() requires at least one argument", nm);
        V p = a->pos[0];
        int (*f_)(V, V) = F->kind == F_S_STARTS ? starts_with : ends_with;
        if (p.t == V_STR) return mkbool(f_(s, p));
        if (p.t == V_ARR) {
            for (size_t i = 0; i < p.u.a->n; i++) {
                if (p.u.a->v[i].t != V_STR) fail(j, pos, "%s() tuple elements must be strings", nm);
                if (f_(s, p.u.a->v[i])) return mkbool(1);
            }
            return mkbool(0);
        }
        fail(j, pos, "%s() argument must be a string or tuple of strings", nm);
    }
    case F_S_SPLIT: {
        V sep = a->np > 0 ? a->pos[0] : mknull();
        if (sep.t != V_STR && sep.t != V_NULL) fail(j, pos, "sep argument must be a string or null");
        V ms = a->np > 1 ? a->pos[1] : mkint(-1);
        if (ms.t != V_INT) fail(j, pos, "maxsplit argument must be a number");
        int64_t max = ms.u.i;
        V out = mkarr(j);
        if (sep.t == V_NULL) {
            V t = str_trim(s, 1, 0);
            size_t i = 0, n = t.u.s.n, k;
            const char *p = t.u.s.p;
            while (i < n) {
                while (i < n && (k = js_space_at(p, n, i))) i += k;
                if (i >= n) break;
                size_t st = i;
                while (i < n && !js_space_at(p, n, i)) i += u8_len(p, n, i);
                if (max != -1 && (int64_t)out.u.a->n >= max) {
                    arr_push(j, out.u.a, mkstr(p + st, n - st));
                    break;
                }
                arr_push(j, out.u.a, mkstr(p + st, i - st));
            }
            return out;
        }
        if (sep.u.s.n == 0) fail(j, pos, "empty separator");
        size_t st = 0;
        for (size_t i = 0; i + sep.u.s.n <= s.u.s.n;) {
            if (!memcmp(s.u.s.p + i, sep.u.s.p, sep.u.s.n)) {
                arr_push(j, out.u.a, mkstr(s.u.s.p + st, i - st));
                i += sep.u.s.n;
                st = i;
            } else i++;
        }
        arr_push(j, out.u.a, mkstr(s.u.s.p + st, s.u.s.n - st));
        if (max != -1 && (int64_t)out.u.a->n > max) {
            /* join the tail back */
            size_t keep = (size_t)max;
            const char *tail = out.u.a->v[keep].u.s.p;
            out.u.a->n = keep;
            arr_push(j, out.u.a, mkstr(tail, (size_t)(s.u.s.p + s.u.s.n - tail)));
        }
        return out;
    }
    case F_S_REPLACE: {
        if (a->np < 2) fail(j, pos, "replace() requires at least two arguments");
        if (a->pos[0].t != V_STR || a->pos[1].t != V_STR) fail(j, pos, "replace() arguments must be strings");
        V cnt = mknull();
        if (a->np > 2) cnt = a->pos[2];
        else if (kwget(a, "count")) cnt = *kwget(a, "count");
        if (cnt.t != V_INT && cnt.t != V_NULL) fail(j, pos, "replace() count argument must be a number or null");
        return str_replace(j, s, a->pos[0], a->pos[1], cnt.t == V_INT ? cnt.u.i : -1, pos);
    }
    case F_O_GET: {
        if (a->np < 1 || a->pos[0].t != V_STR) fail(j, pos, "object key must be a string");
        V *x = obj_find(s.u.o, a->pos[0].u.s.p, a->pos[0].u.s.n);
        if (x) return *x;
        return a->np > 1 ? a->pos[1] : mknull();
    }
    case F_O_DICTSORT: {
        V cs = a->np > 0 ? a->pos[0] : kwget(a, "case_sensitive") ? *kwget(a, "case_sensitive") : mkbool(0);
        if (cs.t != V_BOOL) fail(j, pos, "case_sensitive must be a boolean");
        V by = a->np > 1 ? a->pos[1] : kwget(a, "by") ? *kwget(a, "by") : mkcstr("key");
        if (by.t != V_STR) fail(j, pos, "by must be a string");
        int byval = by.u.s.n == 5 && !memcmp(by.u.s.p, "value", 5);
        if (!byval && !(by.u.s.n == 3 && !memcmp(by.u.s.p, "key", 3))) fail(j, pos, "by must be either 'key' or 'value'");
        V rev = a->np > 2 ? a->pos[2] : kwget(a, "reverse") ? *kwget(a, "reverse") : mkbool(0);
        if (rev.t != V_BOOL) fail(j, pos, "reverse must be a boolean");
        args none = {0};
        V items = call_fn(j, mkfn(j, F_O_ITEMS, s), &none, e, pos);
        return sort_values(j, items.u.a, rev.u.b, cs.u.b, mkint(byval), pos);
    }
    case F_O_ITEMS: case F_O_KEYS: case F_O_VALUES: {
        V out = mkarr(j);
        for (size_t i = 0; i < s.u.o->n; i++) {
            V k = mkstr(s.u.o->k[i], s.u.o->kn[i]);
            if (F->kind == F_O_KEYS) arr_push(j, out.u.a, k);
            else if (F->kind == F_O_VALUES) arr_push(j, out.u.a, s.u.o->v[i]);
            else {
                V p = mkarr(j);
                arr_push(j, p.u.a, k);
                arr_push(j, p.u.a, s.u.o->v[i]);
                arr_push(j, out.u.a, p);
            }
        }
        return out;
    }
    }
    fail(j, pos, "cannot call this function");
}

/* A macro (or a call block's caller()): parameters bound in a scope under
 * parent (the calling scope, as @huggingface/jinja does), then the body. */
static V call_macro(J *j, const char *name, size_t nn, nlist *params, nlist *body, args *a, env *parent, int pos) {
    if (j->calls >= 100) fail(j, pos, "macro calls nested too deeply (recursion?)");
    j->calls++;
    env *sc = env_new(j, parent);
    obj kw = a->kw;
    size_t used_kw = 0;
    for (size_t i = 0; i < params->n; i++) {
        node *p = params->v[i];
        V val = mkundef();
        if (i < a->np) val = a->pos[i];
        else {
            V *x = obj_find(&kw, p->s, p->sn);
            if (x) val = *x, used_kw++;
        }
        env_set(j, sc, p->s, p->sn, val);
    }
    if (used_kw < kw.n) fail(j, pos, "macro '%.*s' takes no such keyword argument", (int)nn, name);
    if (a->np > params->n) fail(j, pos, "macro '%.*s' takes not more than %zu argument(s)", (int)nn, name, params->n);
    for (size_t i = 0; i < params->n; i++) {
        node *p = params->v[i];
        if (p->k == N_KWARG && i >= a->np && !obj_find(&kw, p->s, p->sn)) env_set(j, sc, p->s, p->sn, eval(j, p->a, sc));
    }
    sb out = {0};
    sb_put(j, &out, "", 0);
    int rc = exec_block(j, body, sc, &out);
    if (rc) fail(j, pos, "break/continue outside of a loop");
    j->calls--;
    return mkstr(out.p, out.n);
}

static V eval_call(J *j, node *n, env *e) {
    args a;
    eval_args(j, &n->l1, e, &a);
    V f = eval(j, n->a, e);
    if (f.t != V_FUNC) fail(j, n->pos, "cannot call something that is not a function: got %s", vt_names[f.t]);
    int k = f.u.fn->kind;
    if (a.has_kw && k != F_MACRO && k != F_CALLER && k != F_NAMESPACE && k != F_O_DICTSORT && k != F_S_REPLACE) {
        /* @huggingface/jinja passes keyword arguments to these as one more positional mapping */
        V m = mkobj(j, V_OBJ);
        *m.u.o = a.kw;
        m.tuple = 1; /* a KeywordArgumentsValue */
        a.pos[a.np++] = m;
    }
    return call_fn(j, f, &a, e, n->pos);
}

/* getAttributeValue: dotted path in objects/arrays */
static V attr_path(V item, const char *p, size_t pn) {
    V v = item;
    size_t i = 0;
    while (i <= pn) {
        size_t st = i;
        while (i < pn && p[i] != '.') i++;
        const char *part = p + st;
        size_t partn = i - st;
        if (v.t == V_OBJ || v.t == V_NS) {
            V *x = obj_find(v.u.o, part, partn);
            v = x ? *x : mkundef();
        } else if (v.t == V_ARR) {
            char buf[32];
            size_t m = partn < 31 ? partn : 31;
            memcpy(buf, part, m);
            buf[m] = 0;
            char *end;
            long idx = strtol(buf, &end, 10);
            if (end == buf || idx < 0 || (size_t)idx >= v.u.a->n) return mkundef();
            v = v.u.a->v[idx];
        } else {
            return mkundef();
        }
        i++;
    }
    return v;
}

static int known_test(const char *name, size_t nn) {
    static const char *names[] = {"boolean", "callable", "odd", "even", "false", "true", "none", "string",
                                  "number", "integer", "iterable", "mapping", "sequence", "lower", "upper",
                                  "defined", "undefined", "equalto", "eq"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == nn && !memcmp(names[i], name, nn)) return 1;
    return 0;
}

static int run_test(J *j, const char *name, size_t nn, V v, int pos) {
#define TN(s) (nn == sizeof(s) - 1 && !memcmp(name, s, nn))
    if (TN("boolean")) return v.t == V_BOOL;
    if (TN("callable")) return v.t == V_FUNC;
    if (TN("odd") || TN("even")) {
        if (v.t != V_INT) fail(j, pos, "cannot %.*s on %s", (int)nn, name, vt_names[v.t]);
        return TN("odd") ? v.u.i % 2 != 0 : v.u.i % 2 == 0;
    }
    if (TN("false")) return v.t == V_BOOL && !v.u.b;
    if (TN("true")) return v.t == V_BOOL && v.u.b;
    if (TN("none")) return v.t == V_NULL;
    if (TN("string")) return v.t == V_STR;
    if (TN("number")) return is_num(v);
    if (TN("integer")) return v.t == V_INT;
    if (TN("iterable")) return (v.t == V_ARR && !v.tuple) || v.t == V_STR;
    if (TN("mapping")) return v.t == V_OBJ;
    if (TN("sequence")) return v.t == V_ARR || v.t == V_OBJ || v.t == V_STR;
    if (TN("lower") || TN("upper")) {
        if (v.t != V_STR) return 0;
        V c = ascii_case(j, v, TN("lower") ? 1 : 0);
        return !memcmp(c.u.s.p, v.u.s.p, v.u.s.n);
    }
    if (TN("defined")) return v.t != V_UNDEF;
    if (TN("undefined")) return v.t == V_UNDEF;
    if (TN("equalto") || TN("eq")) return v.t == V_UNDEF; /* a.value === undefined (no argument) */
    fail(j, pos, "unknown test: %.*s", (int)nn, name);
#undef TN
}

/* compareRuntimeValues */
static int cmp_values(J *j, V a, V b, int case_sensitive, int pos) {
    if (a.t == V_NULL && b.t == V_NULL) return 0;
    if (a.t == V_NULL || b.t == V_NULL || a.t == V_UNDEF || b.t == V_UNDEF) {
        if (a.t == V_UNDEF && b.t == V_UNDEF) return 0;
        fail(j, pos, "cannot compare %s with %s", vt_names[a.t], vt_names[b.t]);
    }
    if ((is_num(a) || a.t == V_BOOL) && (is_num(b) || b.t == V_BOOL)) {
        double x = num(a), y = num(b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a.t != b.t || a.tuple != b.tuple) fail(j, pos, "cannot compare different types: %s and %s", vt_names[a.t], vt_names[b.t]);
    if (a.t != V_STR) fail(j, pos, "cannot compare type: %s", vt_names[a.t]);
    if (!case_sensitive) {
        a = ascii_case(j, a, 1);
        b = ascii_case(j, b, 1);
    }
    size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
    int c = memcmp(a.u.s.p, b.u.s.p, n);
    if (c) return c < 0 ? -1 : 1;
    return a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n ? 1 : 0;
}


/* stable sort (merge) of a copy of a, by key (attribute path) if given */
static V sort_values(J *j, arr *a, int reverse, int cs, V attr, int pos) {
    size_t n = a->n;
    V out = mkarr(j);
    V *keys = jalloc(j, (n + 1) * sizeof *keys), *tmpk = jalloc(j, (n + 1) * sizeof *tmpk);
    V *vals = jalloc(j, (n + 1) * sizeof *vals), *tmpv = jalloc(j, (n + 1) * sizeof *tmpv);
    for (size_t i = 0; i < n; i++) {
        vals[i] = a->v[i];
        if (attr.t == V_STR) keys[i] = attr_path(a->v[i], attr.u.s.p, attr.u.s.n);
        else if (attr.t == V_INT) {
            char buf[32];
            int l = snprintf(buf, sizeof buf, "%lld", (long long)attr.u.i);
            keys[i] = attr_path(a->v[i], buf, (size_t)l);
        } else keys[i] = a->v[i];
    }
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t x = lo, y = mid, k = lo;
            while (x < mid && y < hi) {
                int c = cmp_values(j, keys[y], keys[x], cs, pos);
                if (reverse) c = -c;
                if (c < 0) tmpk[k] = keys[y], tmpv[k++] = vals[y++];
                else tmpk[k] = keys[x], tmpv[k++] = vals[x++];
            }
            while (x < mid) tmpk[k] = keys[x], tmpv[k++] = vals[x++];
            while (y < hi) tmpk[k] = keys[y], tmpv[k++] = vals[y++];
        }
        memcpy(keys, tmpk, n * sizeof *keys);
        memcpy(vals, tmpv, n * sizeof *vals);
    }
    for (size_t i = 0; i < n; i++) arr_push(j, out.u.a, vals[i]);
    return out;
}

static V apply_filter(J *j, V v, node *f, env *e) {
    int pos = f->pos;
    if (f->k == N_IDENT) {
        const char *nm = f->s;
        size_t nn = f->sn;
#define FN(s) (nn == sizeof(s) - 1 && !memcmp(nm, s, nn))
        if (FN("safe")) return v;
        if (FN("tojson")) {
            static const jopts none = {0};
            sb b = {0};
            sb_put(j, &b, "", 0);
            to_json(j, &b, v, &none, 0, 1, pos);
            return mkstr(b.p, b.n);
        }
        if (v.t == V_ARR) {
            arr *a = v.u.a;
            if (FN("list")) return v;
            /* (@huggingface/jinja fails on an empty list here too) */
            if ((FN("first") || FN("last")) && !a->n) fail(j, pos, "%.*s of an empty list", (int)nn, nm);
            if (FN("first")) return a->v[0];
            if (FN("last")) return a->v[a->n - 1];
            if (FN("length")) return mkint((int64_t)a->n);
            if (FN("reverse")) {
                V o = mkarr(j);
                for (size_t i = a->n; i > 0; i--) arr_push(j, o.u.a, a->v[i - 1]);
                return o;
            }
            if (FN("join") || FN("string")) {
                if (FN("string")) {
                    static const jopts none = {0};
                    sb b = {0};
                    sb_put(j, &b, "", 0);
                    to_json(j, &b, v, &none, 0, 0, pos);
                    return mkstr(b.p, b.n);
                }
                sb b = {0};
                sb_put(j, &b, "", 0);
                for (size_t i = 0; i < a->n; i++)
                    if (a->v[i].t != V_NULL && a->v[i].t != V_UNDEF) v_raw_str(j, &b, a->v[i], pos);
                return mkstr(b.p, b.n);
            }
            if (FN("sort")) return sort_values(j, a, 0, 0, mknull(), pos);
            if (FN("unique")) {
                V o = mkarr(j);
                for (size_t i = 0; i < a->n; i++) {
                    int seen = 0;
                    for (size_t k = 0; k < o.u.a->n && !seen; k++) seen = strict_eq(o.u.a->v[k], a->v[i]) || (a->v[i].t == V_FLOAT && isnan(a->v[i].u.f) && o.u.a->v[k].t == V_FLOAT && isnan(o.u.a->v[k].u.f));
                    if (!seen) arr_push(j, o.u.a, a->v[i]);
                }
                return o;
            }
            fail(j, pos, "unknown ArrayValue filter: %.*s", (int)nn, nm);
        }
        if (v.t == V_STR) {
            if (FN("length")) return mkint((int64_t)js_length(v));
            if (FN("upper")) return ascii_case(j, v, 0);
            if (FN("lower")) return ascii_case(j, v, 1);
            if (FN("title")) return ascii_case(j, v, 2);
            if (FN("capitalize")) return ascii_case(j, v, 3);
            if (FN("trim")) return str_trim(v, 1, 1);
            if (FN("indent")) {
                sb b = {0};
                sb_put(j, &b, "", 0);
                size_t st = 0;
                int first = 1;
                for (size_t i = 0; i <= v.u.s.n; i++) {
                    if (i == v.u.s.n || v.u.s.p[i] == '\n') {
                        if (!first) sb_putc(j, &b, '\n');
                        if (!first && i > st) sb_puts(j, &b, "    ");
                        sb_put(j, &b, v.u.s.p + st, i - st);
                        first = 0;
                        st = i + 1;
                    }
                }
                return mkstr(b.p, b.n);
            }
            if (FN("join") || FN("string")) return v;
            if (FN("int") || FN("float")) {
                char buf[64];
                size_t m = v.u.s.n < 63 ? v.u.s.n : 63;
                memcpy(buf, v.u.s.p, m);
                buf[m] = 0;
                char *q = buf;
                while (*q && js_space_at(q, strlen(q), 0)) q += js_space_at(q, strlen(q), 0);
                char *end;
                if (FN("int")) {
                    long long x = strtoll(q, &end, 10);
                    return mkint(end == q ? 0 : x);
                }
                double d = strtod(q, &end);
                return mkfloat(end == q ? 0 : d);
            }
            fail(j, pos, "unknown StringValue filter: %.*s", (int)nn, nm);
        }
        if (is_num(v)) {
            if (FN("abs")) return v.t == V_INT ? mkint(v.u.i < 0 ? -v.u.i : v.u.i) : mkfloat(fabs(v.u.f));
            if (FN("int")) return v.t == V_INT ? v : mkint((int64_t)floor(v.u.f));
            if (FN("float")) return mkfloat(num(v));
            if (FN("string")) return v_tostring(j, v, pos);
            fail(j, pos, "unknown NumericValue filter: %.*s", (int)nn, nm);
        }
        if (v.t == V_OBJ) {
            if (FN("length")) return mkint((int64_t)v.u.o->n);
            V b = builtin_prop(j, v, nm, nn, pos);
            if (b.t == V_FUNC) {
                args a = {0};
                return call_fn(j, b, &a, e, pos);
            }
            fail(j, pos, "unknown ObjectValue filter: %.*s", (int)nn, nm);
        }
        if (v.t == V_BOOL) {
            if (FN("bool")) return v;
            if (FN("int")) return mkint(v.u.b);
            if (FN("float")) return mkfloat(v.u.b);
            if (FN("string")) return mkcstr(v.u.b ? "true" : "false");
            fail(j, pos, "unknown BooleanValue filter: %.*s", (int)nn, nm);
        }
        fail(j, pos, "cannot apply filter \"%.*s\" to type: %s", (int)nn, nm, vt_names[v.t]);
#undef FN
    }
    /* call form: name(args) */
    if (f->k != N_CALL || f->a->k != N_IDENT) fail(j, pos, "unknown filter");
    const char *nm = f->a->s;
    size_t nn = f->a->sn;
#define FN(s) (nn == sizeof(s) - 1 && !memcmp(nm, s, nn))
    args a;
    if (FN("tojson")) {
        eval_args(j, &f->l1, e, &a);
        jopts o = {0};
        V *x;
        if ((x = kwget(&a, "indent")) && x->t != V_NULL) {
            if (x->t != V_INT) fail(j, pos, "if set, indent must be a number");
            o.indent = x->u.i < 0 ? 0 : x->u.i > 64 ? 64 : x->u.i;
        }
        if ((x = kwget(&a, "ensure_ascii"))) {
            if (x->t != V_BOOL) fail(j, pos, "if set, ensure_ascii must be a boolean");
            o.ascii = x->u.b;
        }
        if ((x = kwget(&a, "sort_keys"))) {
            if (x->t != V_BOOL) fail(j, pos, "if set, sort_keys must be a boolean");
            o.sort = x->u.b;
        }
        if ((x = kwget(&a, "separators")) && x->t != V_NULL) {
            if (x->t != V_ARR || x->u.a->n != 2 || x->u.a->v[0].t != V_STR || x->u.a->v[1].t != V_STR)
                fail(j, pos, "separators must be a tuple of two strings");
            o.isep = jstrndup(j, x->u.a->v[0].u.s.p, x->u.a->v[0].u.s.n);
            o.ksep = jstrndup(j, x->u.a->v[1].u.s.p, x->u.a->v[1].u.s.n);
        }
        sb b = {0};
        sb_put(j, &b, "", 0);
        to_json(j, &b, v, &o, 0, 1, pos);
        return mkstr(b.p, b.n);
    }
    if (FN("join")) {
        if (v.t != V_STR && v.t != V_ARR) fail(j, pos, "cannot apply filter \"join\" to type: %s", vt_names[v.t]);
        eval_args(j, &f->l1, e, &a);
        V sep = a.np ? a.pos[0] : kwget(&a, "separator") ? *kwget(&a, "separator") : mkcstr("");
        if (sep.t != V_STR) fail(j, pos, "separator must be a string");
        sb b = {0};
        sb_put(j, &b, "", 0);
        if (v.t == V_STR) {
            for (size_t i = 0; i < v.u.s.n;) {
                size_t l = u8_len(v.u.s.p, v.u.s.n, i);
                if (i) sb_put(j, &b, sep.u.s.p, sep.u.s.n);
                sb_put(j, &b, v.u.s.p + i, l);
                i += l;
            }
        } else {
            for (size_t i = 0; i < v.u.a->n; i++) {
                if (i) sb_put(j, &b, sep.u.s.p, sep.u.s.n);
                V x = v.u.a->v[i];
                if (x.t != V_NULL && x.t != V_UNDEF) v_raw_str(j, &b, x, pos);
            }
        }
        return mkstr(b.p, b.n);
    }
    if (FN("int") || FN("float")) {
        eval_args(j, &f->l1, e, &a);
        V def = a.np ? a.pos[0] : kwget(&a, "default") ? *kwget(&a, "default") : FN("int") ? mkint(0) : mkfloat(0);
        if (v.t == V_STR) {
            char buf[64];
            size_t m = v.u.s.n < 63 ? v.u.s.n : 63;
            memcpy(buf, v.u.s.p, m);
            buf[m] = 0;
            char *q = buf, *end;
            while (*q && js_space_at(q, strlen(q), 0)) q += js_space_at(q, strlen(q), 0);
            if (FN("int")) {
                long long x = strtoll(q, &end, 10);
                return end == q ? def : mkint(x);
            }
            double d = strtod(q, &end);
            return end == q ? def : mkfloat(d);
        }
        if (is_num(v)) return v;
        if (v.t == V_BOOL) return FN("int") ? mkint(v.u.b) : mkfloat(v.u.b);
        fail(j, pos, "cannot apply filter \"%.*s\" to type: %s", (int)nn, nm, vt_names[v.t]);
    }
    if (FN("default")) {
        eval_args(j, &f->l1, e, &a);
        V def = a.np ? a.pos[0] : mkcstr("");
        V bo = a.np > 1 ? a.pos[1] : kwget(&a, "boolean") ? *kwget(&a, "boolean") : mkbool(0);
        if (bo.t != V_BOOL) fail(j, pos, "`default` filter flag must be a boolean");
        if (v.t == V_UNDEF || (bo.u.b && !truthy(v))) return def;
        return v;
    }
    if (v.t == V_ARR) {
        if (FN("selectattr") || FN("rejectattr")) {
            int sel = FN("selectattr");
            for (size_t i = 0; i < v.u.a->n; i++)
                if (v.u.a->v[i].t != V_OBJ && v.u.a->v[i].t != V_NS)
                    fail(j, pos, "`%.*s` can only be applied to array of objects", (int)nn, nm);
            for (size_t i = 0; i < f->l1.n; i++)
                if (f->l1.v[i]->k != N_STR) fail(j, pos, "arguments of `%.*s` must be strings", (int)nn, nm);
            if (f->l1.n == 0) fail(j, pos, "`%.*s` needs an attribute name", (int)nn, nm);
            node *attr = f->l1.v[0], *test = f->l1.n > 1 ? f->l1.v[1] : NULL;
            if (test && !known_test(test->s, test->sn)) fail(j, pos, "unknown test: %.*s", (int)test->sn, test->s);
            V val = f->l1.n > 2 ? mkstr(f->l1.v[2]->s, f->l1.v[2]->sn) : mkundef();
            V out = mkarr(j);
            for (size_t i = 0; i < v.u.a->n; i++) {
                V *x = obj_find(v.u.a->v[i].u.o, attr->s, attr->sn);
                int r = 0;
                /* JS `a ? test(a) : false`: a is a RuntimeValue object, always truthy when present */
                if (x) {
                    if (!test) r = truthy(*x);
                    else if (test->sn == 7 && !memcmp(test->s, "equalto", 7)) r = strict_eq(*x, val);
                    else if (test->sn == 2 && !memcmp(test->s, "eq", 2)) r = strict_eq(*x, val);
                    else r = run_test(j, test->s, test->sn, *x, pos);
                }
                if (sel ? r : !r) arr_push(j, out.u.a, v.u.a->v[i]);
            }
            return out;
        }
        if (FN("sort")) {
            eval_args(j, &f->l1, e, &a);
            V rev = a.np > 0 ? a.pos[0] : kwget(&a, "reverse") ? *kwget(&a, "reverse") : mkbool(0);
            if (rev.t != V_BOOL) fail(j, pos, "reverse must be a boolean");
            V cs = a.np > 1 ? a.pos[1] : kwget(&a, "case_sensitive") ? *kwget(&a, "case_sensitive") : mkbool(0);
            if (cs.t != V_BOOL) fail(j, pos, "case_sensitive must be a boolean");
            V at = a.np > 2 ? a.pos[2] : kwget(&a, "attribute") ? *kwget(&a, "attribute") : mknull();
            if (at.t != V_STR && at.t != V_INT && at.t != V_NULL) fail(j, pos, "attribute must be a string, integer, or null");
            return sort_values(j, v.u.a, rev.u.b, cs.u.b, at, pos);
        }
        if (FN("map")) {
            eval_args(j, &f->l1, e, &a);
            V *at = kwget(&a, "attribute");
            if (!at) fail(j, pos, "`map` expressions without `attribute` set are not currently supported");
            if (at->t != V_STR) fail(j, pos, "attribute must be a string");
            V *def = kwget(&a, "default");
            V out = mkarr(j);
            for (size_t i = 0; i < v.u.a->n; i++) {
                V it = v.u.a->v[i];
                if (it.t != V_OBJ && it.t != V_NS) fail(j, pos, "items in map must be an object");
                V x = attr_path(it, at->u.s.p, at->u.s.n);
                arr_push(j, out.u.a, x.t == V_UNDEF && def ? *def : x);
            }
            return out;
        }
        fail(j, pos, "unsupported ArrayValue filter: %.*s", (int)nn, nm);
    }
    if (v.t == V_STR) {
        if (FN("replace")) {
            eval_args(j, &f->l1, e, &a);
            V fnv = mkfn(j, F_S_REPLACE, v);
            return call_fn(j, fnv, &a, e, pos);
        }
        if (FN("indent")) {
            eval_args(j, &f->l1, e, &a);
            V w = a.np > 0 ? a.pos[0] : kwget(&a, "width") ? *kwget(&a, "width") : mkint(4);
            if (w.t != V_INT) fail(j, pos, "width must be a number");
            V fi = a.np > 1 ? a.pos[1] : kwget(&a, "first") ? *kwget(&a, "first") : mkbool(0);
            V bl = a.np > 2 ? a.pos[2] : kwget(&a, "blank") ? *kwget(&a, "blank") : mkbool(0);
            int64_t wd = w.u.i < 0 ? 0 : w.u.i > 1024 ? 1024 : w.u.i;
            sb b = {0};
            sb_put(j, &b, "", 0);
            size_t st = 0, li = 0;
            for (size_t i = 0; i <= v.u.s.n; i++) {
                if (i == v.u.s.n || v.u.s.p[i] == '\n') {
                    if (li) sb_putc(j, &b, '\n');
                    int skip = (!truthy(fi) && li == 0) || (!truthy(bl) && i == st);
                    if (!skip)
                        for (int64_t k = 0; k < wd; k++) sb_putc(j, &b, ' ');
                    sb_put(j, &b, v.u.s.p + st, i - st);
                    li++;
                    st = i + 1;
                }
            }
            return mkstr(b.p, b.n);
        }
        fail(j, pos, "unknown StringValue filter: %.*s", (int)nn, nm);
    }
    if (v.t == V_OBJ) {
        V b = builtin_prop(j, v, nm, nn, pos);
        if (b.t == V_FUNC) {
            eval_args(j, &f->l1, e, &a);
            return call_fn(j, b, &a, e, pos);
        }
        fail(j, pos, "unknown ObjectValue filter: %.*s", (int)nn, nm);
    }
    fail(j, pos, "cannot apply filter \"%.*s\" to type: %s", (int)nn, nm, vt_names[v.t]);
#undef FN
}

static V eval(J *j, node *n, env *e) {
    if (++j->depth > 2000) fail(j, n->pos, "recursion too deep");
    V r;
    switch (n->k) {
    case N_INT: r = mkint(n->i); break;
    case N_FLOAT: r = mkfloat(n->f); break;
    case N_STR: r = mkstr(n->s, n->sn); break;
    case N_IDENT: r = env_get(e, n->s, n->sn); break;
    case N_ARRAY: case N_TUPLE: {
        r = mkarr(j);
        r.tuple = n->k == N_TUPLE;
        for (size_t i = 0; i < n->l1.n; i++) arr_push(j, r.u.a, eval(j, n->l1.v[i], e));
        break;
    }
    case N_OBJECT: {
        r = mkobj(j, V_OBJ);
        for (size_t i = 0; i < n->l1.n; i++) {
            V k = eval(j, n->l1.v[i], e);
            if (k.t != V_STR) fail(j, n->l1.v[i]->pos, "object keys must be strings: got %s", vt_names[k.t]);
            obj_set(j, r.u.o, k.u.s.p, k.u.s.n, eval(j, n->l2.v[i], e));
        }
        break;
    }
    case N_MEMBER: r = eval_member(j, n, e); break;
    case N_CALL: r = eval_call(j, n, e); break;
    case N_UNARY: {
        V a = eval(j, n->a, e);
        if (n->sn == 3) r = mkbool(!truthy(a));
        else {
            int neg = n->s[0] == '-';
            if (a.t == V_FLOAT) r = mkfloat(neg ? -a.u.f : a.u.f);
            else if (a.t == V_INT) r = mkint(neg ? -a.u.i : a.u.i);
            else if (a.t == V_BOOL) r = mkint(neg ? -a.u.b : a.u.b);
            else fail(j, n->pos, "unknown operator \"%c\" for %s", n->s[0], vt_names[a.t]);
        }
        break;
    }
    case N_BINARY: r = eval_binary(j, n, e); break;
    case N_FILTER: r = apply_filter(j, eval(j, n->a, e), n->b, e); break;
    case N_TEST: {
        V a = eval(j, n->a, e);
        int t = run_test(j, n->s, n->sn, a, n->pos);
        r = mkbool(n->flag ? !t : t);
        break;
    }
    case N_SELECT: r = truthy(eval(j, n->b, e)) ? eval(j, n->a, e) : mkundef(); break;
    case N_TERNARY: r = truthy(eval(j, n->a, e)) ? eval(j, n->b, e) : eval(j, n->c, e); break;
    case N_SLICE: fail(j, n->pos, "unexpected slice");
    case N_KWARG: fail(j, n->pos, "unexpected keyword argument");
    default: fail(j, n->pos, "unexpected statement in expression");
    }
    j->depth--;
    return r;
}

static void assign_names(J *j, node *target, V v, env *e, int pos) {
    if (target->k == N_IDENT) {
        env_set(j, e, target->s, target->sn, v);
        return;
    }
    /* tuple */
    if (v.t != V_ARR) fail(j, pos, "cannot unpack non-iterable type: %s", vt_names[v.t]);
    if (v.u.a->n != target->l1.n) fail(j, pos, "too %s items to unpack", target->l1.n > v.u.a->n ? "few" : "many");
    for (size_t i = 0; i < target->l1.n; i++) {
        node *t = target->l1.v[i];
        if (t->k != N_IDENT) fail(j, t->pos, "cannot unpack to a non-identifier");
        env_set(j, e, t->s, t->sn, v.u.a->v[i]);
    }
}

/* returns 0, or 1 for break, 2 for continue */
static int exec_for(J *j, node *n, env *e, sb *out) {
    env *sc = env_new(j, e);
    node *it = n->b, *test = NULL;
    if (it->k == N_SELECT) {
        test = it->b;
        it = it->a;
    }
    V iv = eval(j, it, sc);
    if (iv.t == V_OBJ) {
        args a = {0};
        iv = call_fn(j, mkfn(j, F_O_KEYS, iv), &a, sc, n->pos);
    }
    if (iv.t != V_ARR) fail(j, n->pos, "expected iterable or object type in for loop: got %s", vt_names[iv.t]);
    arr items = {0};
    for (size_t i = 0; i < iv.u.a->n; i++) {
        V cur = iv.u.a->v[i];
        if (n->a->k == N_TUPLE) {
            if (cur.t != V_ARR || cur.tuple) fail(j, n->pos, "cannot unpack non-iterable type: %s", cur.tuple ? "TupleValue" : vt_names[cur.t]);
            if (cur.u.a->n != n->a->l1.n) fail(j, n->pos, "too %s items to unpack", n->a->l1.n > cur.u.a->n ? "few" : "many");
        }
        if (test) {
            env *ls = env_new(j, sc);
            assign_names(j, n->a, cur, ls, n->pos);
            if (!truthy(eval(j, test, ls))) continue;
        }
        arr_push(j, &items, cur);
    }
    int any = 0;
    for (size_t i = 0; i < items.n; i++) {
        V loop = mkobj(j, V_OBJ);
        obj *o = loop.u.o;
        obj_set(j, o, "index", 5, mkint((int64_t)i + 1));
        obj_set(j, o, "index0", 6, mkint((int64_t)i));
        obj_set(j, o, "revindex", 8, mkint((int64_t)(items.n - i)));
        obj_set(j, o, "revindex0", 9, mkint((int64_t)(items.n - i - 1)));
        obj_set(j, o, "first", 5, mkbool(i == 0));
        obj_set(j, o, "last", 4, mkbool(i == items.n - 1));
        obj_set(j, o, "length", 6, mkint((int64_t)items.n));
        obj_set(j, o, "previtem", 8, i > 0 ? items.v[i - 1] : mkundef());
        obj_set(j, o, "nextitem", 8, i + 1 < items.n ? items.v[i + 1] : mkundef());
        env_set(j, sc, "loop", 4, loop);
        assign_names(j, n->a, items.v[i], sc, n->pos);
        size_t mark = out->n;
        int rc = exec_block(j, &n->l1, sc, out);
        if (rc == 2) {
            out->n = mark;
            if (out->p) out->p[mark] = 0;
            continue;
        }
        if (rc == 1) {
            out->n = mark;
            if (out->p) out->p[mark] = 0;
            break;
        }
        any = 1;
    }
    if (!any) return exec_block(j, &n->l2, sc, out);
    return 0;
}

static int exec_block(J *j, nlist *body, env *e, sb *out) {
    for (size_t i = 0; i < body->n; i++) {
        node *n = body->v[i];
        int rc = 0;
        switch (n->k) {
        case N_COMMENT: break;
        case N_STR: sb_put(j, out, n->s, n->sn); break;
        case N_BREAK: return 1;
        case N_CONTINUE: return 2;
        case N_IF: {
            size_t mark = out->n;
            rc = exec_block(j, truthy(eval(j, n->a, e)) ? &n->l1 : &n->l2, e, out);
            if (rc) { /* the partial output of the block is discarded, as in @huggingface/jinja */
                out->n = mark;
                if (out->p) out->p[mark] = 0;
                return rc;
            }
            break;
        }
        case N_FOR: rc = exec_for(j, n, e, out); if (rc) return rc; break;
        case N_SET: {
            V v;
            if (n->b) v = eval(j, n->b, e);
            else {
                sb b = {0};
                sb_put(j, &b, "", 0);
                if (exec_block(j, &n->l1, e, &b)) fail(j, n->pos, "break/continue inside set block");
                v = mkstr(b.p, b.n);
            }
            node *t = n->a;
            if (t->k == N_IDENT) env_set(j, e, t->s, t->sn, v);
            else if (t->k == N_TUPLE) {
                if (v.t != V_ARR) fail(j, n->pos, "cannot unpack non-iterable type in set: %s", vt_names[v.t]);
                assign_names(j, t, v, e, n->pos);
            } else if (t->k == N_MEMBER) {
                V o = eval(j, t->a, e);
                if (o.t != V_NS) fail(j, n->pos, "cannot assign attribute on non-namespace object");
                if (t->b->k != N_IDENT || t->flag) fail(j, n->pos, "cannot assign to member with non-identifier property");
                obj_set(j, o.u.o, t->b->s, t->b->sn, v);
            } else fail(j, n->pos, "invalid left-hand side in set");
            break;
        }
        case N_FILTERBLOCK: {
            sb b = {0};
            sb_put(j, &b, "", 0);
            rc = exec_block(j, &n->l1, e, &b);
            if (rc) return rc;
            V v = apply_filter(j, mkstr(b.p, b.n), n->b, e);
            if (v.t != V_NULL && v.t != V_UNDEF) v_str(j, out, v, n->pos);
            break;
        }
        case N_CALLBLOCK: {
            args a;
            eval_args(j, &n->l2, e, &a);
            V f = eval(j, n->a, e);
            if (f.t != V_FUNC) fail(j, n->pos, "cannot call something that is not a function: got %s", vt_names[f.t]);
            V c = mkfn(j, F_CALLER, mkundef());
            c.u.fn->macro = n;
            c.u.fn->env = e;
            env *ne = env_new(j, e);
            env_set(j, ne, "caller", 6, c);
            V v = call_fn(j, f, &a, ne, n->pos);
            if (v.t != V_NULL && v.t != V_UNDEF) v_str(j, out, v, n->pos);
            break;
        }
        case N_MACRO: {
            V f = mkfn(j, F_MACRO, mkundef());
            f.u.fn->macro = n;
            env_set(j, e, n->a->s, n->a->sn, f);
            break;
        }
        default: {
            V v = eval(j, n, e);
            if (v.t != V_NULL && v.t != V_UNDEF) v_str(j, out, v, n->pos);
        }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */

static void free_blocks(J *j) {
    blk *b = j->blocks;
    while (b) {
        blk *nx = b->next;
        free(b);
        b = nx;
    }
    j->blocks = NULL;
}

int gg_jinja_render(const char *src, const json_t *context, char **out, size_t *len, gg_err *err) {
    *out = NULL;
    if (len) *len = 0;
    if (!src) return gg_errf(err, "jinja: no template");
    if (context && !json_is_object(context)) return gg_errf(err, "jinja: context is not an object");
    J *j = calloc(1, sizeof *j);
    if (!j) return gg_errf(err, "jinja: out of memory");
    j->src = src;
    j->err = err;
    if (setjmp(j->jb)) {
        free_blocks(j);
        free(j);
        return -1;
    }
    char *pre;
    size_t *map, pn;
    preprocess(j, src, &pre, &map, &pn);
    j->map = map;
    j->mapn = pn;
    lexer L = {.j = j, .s = pre, .n = pn};
    lex(&L);
    parser P = {.j = j, .t = L.t, .n = L.nt};
    nlist prog = {0};
    while (P.i < P.n) nl_push(j, &prog, p_any(&P));

    env *g = env_new(j, NULL);
    env_set(j, g, "false", 5, mkbool(0));
    env_set(j, g, "true", 4, mkbool(1));
    env_set(j, g, "none", 4, mknull());
    env_set(j, g, "False", 5, mkbool(0));
    env_set(j, g, "True", 4, mkbool(1));
    env_set(j, g, "None", 4, mknull());
    env_set(j, g, "raise_exception", 15, mkfn(j, F_RAISE, mkundef()));
    env_set(j, g, "range", 5, mkfn(j, F_RANGE, mkundef()));
    env_set(j, g, "strftime_now", 12, mkfn(j, F_STRFTIME, mkundef()));
    env_set(j, g, "namespace", 9, mkfn(j, F_NAMESPACE, mkundef()));
    if (context) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)context, k, v) {
            size_t kn = strlen(k);
            if (obj_find(&g->vars, k, kn)) fail(j, 0, "variable already declared: %s", k);
            env_set(j, g, jstrndup(j, k, kn), kn, from_json(j, v));
        }
    }
    sb o = {0};
    sb_put(j, &o, "", 0);
    if (exec_block(j, &prog, g, &o)) fail(j, 0, "break/continue outside of a loop");
    char *res = malloc(o.n + 1);
    if (res) {
        memcpy(res, o.p, o.n);
        res[o.n] = 0;
    }
    free_blocks(j);
    free(j);
    if (!res) return gg_errf(err, "jinja: out of memory");
    *out = res;
    if (len) *len = o.n;
    return 0;
}
