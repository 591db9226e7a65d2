/* util.h — the socket-free pieces of ggserve, unit-tested on their own
 * (tests/test_serve.c): a growable byte buffer, the constant-time key
 * compare, adapter-name and adapter-path checks (paths confined to
 * --adapter-dir), UTF-8 boundaries, incremental detokenisation (the bytes
 * each token adds, never half a character), the stop-string filter (text
 * held back while it could still become a stop string), and OpenAI-style
 * error objects.
 *
 * Errors: 0 / -1 (with gg_err where there is something to say). */
#ifndef GG_SERVE_UTIL_H
#define GG_SERVE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "ggfmt/err.h"
#include "models/tokenizer.h"

/* ---- growable bytes (always NUL-terminated when p != NULL) ---- */
typedef struct gg_sbuf {
    char *p;
    size_t n, cap;
} gg_sbuf;
int gg_sbuf_add(gg_sbuf *b, const void *s, size_t n);
int gg_sbuf_adds(gg_sbuf *b, const char *s);
int gg_sbuf_printf(gg_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes. */
void gg_sbuf_consume(gg_sbuf *b, size_t n);
void gg_sbuf_free(gg_sbuf *b);

/* Constant-time (in the length of want) equality of a presented key with
 * the configured one; 1 if equal. */
int gg_srv_key_equal(const char *given, size_t given_len, const char *want);
/* The key in an "Authorization: Bearer KEY" header value, or NULL. */
const char *gg_srv_bearer(const char *header, size_t *len);

/* An adapter name: 1..64 of [A-Za-z0-9._-], not starting with '.'. */
int gg_srv_name_ok(const char *name);
/* Resolve rel (relative, no "..", no NUL) inside dir (which must exist):
 * *out = the real path, malloc'd, which must lie inside dir's real path
 * (symlinks pointing out are refused). */
int gg_srv_confine(const char *dir, const char *rel, char **out, gg_err *err);

/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8
 * sequence (an incomplete trailing sequence is cut off). */
size_t gg_utf8_complete(const char *s, size_t n);
/* 1 if s[0..n) is valid UTF-8. */
int gg_utf8_valid(const char *s, size_t n);

/* ---- incremental detokenisation ----
 * The text token i adds is decode(ids[prefix..i]) minus decode(ids[prefix..i-1])
 * with a window that starts a token or more back (so decoders that strip a
 * leading space see context), as gggen prints; while the decoded text ends
 * in an incomplete character (U+FFFD) the token adds "" and the character
 * goes to the token that completes it. So the pieces concatenate to whole
 * characters only and equal gggen's output. */
typedef struct gg_detok {
    const gg_tokenizer *tok;
    int32_t *ids;
    size_t n, cap;
    size_t prefix, read;
} gg_detok;
/* start: tokens already in ids that produce no text (a prompt that is not
 * echoed); they only serve as the window's context (the last 4). */
int gg_detok_init(gg_detok *d, const gg_tokenizer *tok, const int32_t *start, size_t n_start);
/* Append id; *add (malloc'd, NUL-terminated) = the bytes it adds. */
int gg_detok_push(gg_detok *d, int32_t id, char **add, size_t *alen, gg_err *err);
void gg_detok_free(gg_detok *d);
/* The text of id after context token ctx (ctx < 0: none), for
 * top_logprobs keys. malloc'd. */
char *gg_detok_piece(const gg_tokenizer *tok, int32_t ctx, int32_t id);

/* ---- stop strings ----
 * Feed generated text; what may be shown now goes to out: never a byte of
 * a stop string, nor text that could still begin one, nor half a UTF-8
 * character. After a match, hit = 1 and nothing more is emitted. */
#define GG_MAX_STOPS 16
typedef struct gg_stopper {
    char *stops[GG_MAX_STOPS];
    int n;
    size_t max;
    gg_sbuf pend;
    int hit;
} gg_stopper;
int gg_stopper_add(gg_stopper *s, const char *stop); /* copies; -1 if full/empty */
/* final: the request ended, flush what is held back (whole characters). */
int gg_stopper_feed(gg_stopper *s, const char *text, size_t n, int final, gg_sbuf *out);
void gg_stopper_free(gg_stopper *s);

/* ---- errors ----
 * {"error":{"message":MSG,"type":TYPE,"param":PARAM|null,"code":CODE|null}}
 * malloc'd. */
char *gg_srv_error_json(const char *msg, const char *type, const char *param, const char *code);

#endif
