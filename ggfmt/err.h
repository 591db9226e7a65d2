/* err.h — the error value every gg function that can fail fills in.
 *
 * Convention (whole project): a function that can fail returns int, 0 on
 * success and -1 on failure, and on failure writes one human-readable line
 * (no trailing newline) into the caller's gg_err naming the file, field,
 * tensor or byte offset at fault. Callers add context with gg_err_prefix.
 * No assert() is ever used to validate input. */
#ifndef GG_ERR_H
#define GG_ERR_H

#include <stdarg.h>

#define GG_ERR_MAX 512

typedef struct gg_err {
    char msg[GG_ERR_MAX];
} gg_err;

/* Set the message (printf-style) and return -1, so callers can write
 * `return gg_errf(err, "...", ...);`. err may be NULL. */
int gg_errf(gg_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepend "prefix: " to the existing message (e.g. a file name) and return -1. */
int gg_err_prefix(gg_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
