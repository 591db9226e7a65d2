/* jinja.h — a Jinja-subset interpreter for chat templates.
 *
 * Owns: lexing (with the trim_blocks + lstrip_blocks behaviour that
 * transformers and @huggingface/jinja use), parsing and evaluating a
 * template against a jansson object as its variables. The semantics follow
 * @huggingface/jinja 0.5.11 (the Jinja of transformers.js): undefined values
 * print as "", attributes of undefined are undefined, `==` is loose, string
 * methods strip/lstrip/rstrip/split/startswith/endswith/upper/lower/replace/
 * title/capitalize, dict methods get/items/keys/values/dictsort, filters trim, length,
 * upper, lower, title, capitalize, tojson (indent, ensure_ascii, sort_keys,
 * separators), join, default, first, last, reverse, sort, unique, replace,
 * indent, string, int, float, abs, list, items, selectattr, rejectattr, map
 * (attribute=), tests defined/undefined/none/string/number/integer/boolean/
 * mapping/iterable/sequence/callable/true/false/odd/even/lower/upper, for
 * with loop.* / else / unpacking / inline if, set (also ns.x and block set),
 * namespace(), macros with defaults, {% call %} blocks with caller(),
 * {% filter %} blocks, break/continue, range(), raise_exception(), and the
 * {% generation %} markers (removed, as transformers does).
 *
 * Known differences from @huggingface/jinja: upper/lower/title/capitalize
 * and tojson(sort_keys=true) treat only ASCII letters as letters / compare
 * bytes; string indexing counts code points (JavaScript counts UTF-16 units;
 * they differ only for characters outside the BMP); integers are int64
 * (JavaScript rounds them to doubles past 2^53) and an integer result past
 * int64 becomes a float (printed with ".0" when whole, where JavaScript
 * prints no fraction); |first / |last of an
 * empty list is an error (@huggingface/jinja crashes on it unless the value
 * is never used). Unsupported, each an error naming it: `*args` / `**kwargs`
 * in calls, a macro's varargs/kwargs, strftime_now(), range()
 * longer than 1000000 items; macro calls nest at most 100 deep and
 * expressions / blocks 400 deep.
 *
 * Errors: -1 with gg_err "jinja: L:C: message", L:C being the line and column
 * (1-based) in the template source of the construct at fault; a
 * raise_exception(msg) call gives "jinja: L:C: raise_exception: msg". */
#ifndef GG_JINJA_H
#define GG_JINJA_H

#include <jansson.h>
#include <stddef.h>

#include "ggfmt/err.h"

/* Render src with the keys of the jansson object context as variables.
 * *out is malloc'd and NUL-terminated (caller frees); *len its length
 * (len may be NULL). On failure *out is NULL. */
int gg_jinja_render(const char *src, const json_t *context, char **out, size_t *len,
                    gg_err *err);

#endif
