/* json_util.h — small jansson helpers shared by the JSON readers of
 * convert/ (config.json, adapter_config.json): how to name a value's kind in
 * an error message. Header-only. */
#ifndef GG_JSON_UTIL_H
#define GG_JSON_UTIL_H

#include <jansson.h>

/* "an object", "a string", ... for "'key' is %s, expected ..." messages. */
static inline const char *gg_json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

#endif
