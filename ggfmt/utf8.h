/* utf8.h — strict UTF-8 validation (no overlongs, no surrogates, at most
 * U+10FFFF), used for every key, name and string the container stores. */
#ifndef GG_UTF8_H
#define GG_UTF8_H

#include <stddef.h>

/* Byte index of the first invalid sequence in s[0..n), or (size_t)-1 if
 * all of it is valid UTF-8. */
size_t gg_utf8_invalid_at(const char *s, size_t n);

#endif
