/* config.h — recipe files for `ggtrain --config FILE`: a flat YAML subset
 * (the one Axolotl-style recipes use) or a JSON object, read into an
 * ordered list of (key, value, line) that a tool turns into long flags.
 *
 * Owns: both grammars, key normalisation, value rendering, duplicate-key
 * detection, and the errors for everything outside the subset.
 *
 * YAML subset: `key: value` lines at column 0, `#` comments, blank lines,
 * an optional leading `---`; values are plain scalars, '...' (with '' for
 * a quote) or "..." (YAML escapes: \" \\ \/ \n \t \r \0-free \xHH \uHHHH
 * \UHHHHHHHH ...), flow lists `[a, "b", 3]` (may span lines) or block lists
 * (`key:` then `  - a` lines). Nested mappings (`key:` then `  sub: v`,
 * `{...}`, `- k: v`), nested lists, block scalars (| >), anchors, aliases,
 * tags, multi-line strings and tabs in indentation are errors naming the
 * line. Booleans are YAML 1.1's (true/false/yes/no/on/off in the three
 * cases PyYAML accepts); nulls are null, Null, NULL, ~ and an empty value.
 *
 * JSON: detected by the first non-space character `{`; a top-level object
 * whose values are strings, numbers, true/false, null or arrays of
 * strings/numbers/booleans. Nested objects and arrays are errors.
 *
 * Output: keys with '_' replaced by '-' (lora_r → lora-r, matching long
 * flag names); values as strings: numbers verbatim as written, booleans
 * "true" / "false", null "" (gg_config_kind says GG_CFG_NULL), lists joined
 * with ',' ("q_proj,v_proj"; an empty list is ""; an item that contains a
 * ',' or is empty is an error). A key that appears twice (after
 * normalisation) is an error naming both lines.
 *
 * Errors: 0 / -1 with a gg_err "FILE:LINE: what is wrong" (one line). */
#ifndef GG_CONFIG_H
#define GG_CONFIG_H

#include <stddef.h>

#include "ggfmt/err.h"

typedef struct gg_config gg_config;

typedef enum gg_config_kind {
    GG_CFG_STR,  /* a string (plain or quoted) */
    GG_CFG_NUM,  /* an unquoted number, kept as written ("2e-4", "16") */
    GG_CFG_BOOL, /* "true" / "false" */
    GG_CFG_NULL, /* value "" */
    GG_CFG_LIST  /* items joined with ',' */
} gg_config_kind;

/* Read PATH (at most 4 MiB). */
int gg_config_load(gg_config **out, const char *path, gg_err *err);
/* Parse buf[0..len) (need not be NUL-terminated); label names it in
 * messages (the file name). */
int gg_config_parse(gg_config **out, const char *buf, size_t len, const char *label, gg_err *err);

size_t gg_config_count(const gg_config *c);
/* Entry i (in file order): normalised key, value, 1-based line of the key,
 * kind. NULL / 0 / GG_CFG_NULL when i is out of range. */
const char *gg_config_key(const gg_config *c, size_t i);
const char *gg_config_value(const gg_config *c, size_t i);
int gg_config_line(const gg_config *c, size_t i);
gg_config_kind gg_config_kind_of(const gg_config *c, size_t i);
/* Index of key (normalised before the lookup, so "lora_r" finds
 * "lora-r"), or -1. */
long gg_config_find(const gg_config *c, const char *key);
/* The label given at parse / the path given at load. */
const char *gg_config_label(const gg_config *c);

void gg_config_free(gg_config *c);

#endif
