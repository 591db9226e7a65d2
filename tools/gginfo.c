/* gginfo — inspect a .gg file: header, metadata, tensor table, bits per
 * weight per type; --verify checks every tensor checksum; --json prints one
 * JSON object for scripts.
 *
 *   gginfo FILE.gg [--tensors] [--verify] [--json] [--full] */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggfmt/ggfmt.h"
#include "tools/common.h"

static const char *TOOL = "gginfo";

static void usage(FILE *f) {
    fprintf(f,
            "usage: gginfo [options] FILE.gg\n"
            "Print what a .gg file holds.\n"
            "\n"
            "      --tensors   list every tensor (name, type, shape, bytes, offset)\n"
            "      --verify    check the checksum of every tensor (exit 1 on a mismatch)\n"
            "      --json      one JSON object on stdout: file, metadata, tensors, types\n"
            "      --full      print long metadata strings whole (default: abbreviated)\n"
            "  -h, --help      this help\n"
            "      --version   print the version\n");
}

/* Print a string with control characters escaped, abbreviated unless full. */
static void print_str(gg_str s, int full) {
    uint64_t n = s.len, lim = full ? s.len : 72;
    putchar('"');
    for (uint64_t i = 0; i < n && i < lim; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch == '\n') fputs("\\n", stdout);
        else if (ch == '\t') fputs("\\t", stdout);
        else if (ch < 0x20) printf("\\x%02x", ch);
        else putchar(ch);
    }
    putchar('"');
    if (n > lim) printf("... (%" PRIu64 " bytes)", n);
}

static void print_value(const gg_value *v, int full) {
    switch (v->type) {
    case GG_V_BOOL: fputs(v->v.b ? "true" : "false", stdout); break;
    case GG_V_I64: printf("%" PRId64, v->v.i); break;
    case GG_V_U64: printf("%" PRIu64 " (0x%016" PRIx64 ")", v->v.u, v->v.u); break;
    case GG_V_F64: printf("%.17g", v->v.f); break;
    case GG_V_STR: print_str(v->v.s, full); break;
    case GG_V_ARR: {
        uint64_t shown = full ? v->count : (v->count < 8 ? v->count : 8);
        printf("[%s x %" PRIu64 "] [", gg_vtype_name(v->elem), v->count);
        for (uint64_t i = 0; i < shown; i++) {
            if (i) fputs(", ", stdout);
            switch (v->elem) {
            case GG_V_BOOL: fputs(gg_value_arr_bool(v, i) ? "true" : "false", stdout); break;
            case GG_V_I64: printf("%" PRId64, gg_value_arr_i64(v, i)); break;
            case GG_V_U64: printf("%" PRIu64, gg_value_arr_u64(v, i)); break;
            case GG_V_F64: printf("%.17g", gg_value_arr_f64(v, i)); break;
            case GG_V_STR: print_str(v->strs[i], full); break;
            default: break;
            }
        }
        printf("%s]", shown < v->count ? ", ..." : "");
        break;
    }
    }
}

static json_t *json_of_scalar(gg_vtype t, const gg_value *v, uint64_t i, int arr) {
    switch (t) {
    case GG_V_BOOL: return json_boolean(arr ? gg_value_arr_bool(v, i) : v->v.b);
    case GG_V_I64: return json_integer(arr ? gg_value_arr_i64(v, i) : v->v.i);
    case GG_V_U64: {
        uint64_t u = arr ? gg_value_arr_u64(v, i) : v->v.u;
        if (u <= INT64_MAX) return json_integer((json_int_t)u);
        char b[32];
        snprintf(b, sizeof b, "%" PRIu64, u);
        return json_string(b);
    }
    case GG_V_F64: {
        double d = arr ? gg_value_arr_f64(v, i) : v->v.f;
        return isfinite(d) ? json_real(d) : json_null();
    }
    case GG_V_STR: {
        gg_str s = arr ? v->strs[i] : v->v.s;
        return json_stringn(s.ptr, s.len);
    }
    default: return json_null();
    }
}

static json_t *json_of_value(const gg_value *v) {
    if (v->type != GG_V_ARR) return json_of_scalar(v->type, v, 0, 0);
    json_t *a = json_array();
    for (uint64_t i = 0; i < v->count; i++) json_array_append_new(a, json_of_scalar(v->elem, v, i, 1));
    return a;
}

typedef struct type_stat {
    uint64_t count, elems, bytes;
} type_stat;

int main(int argc, char **argv) {
    int list = 0, verify = 0, as_json = 0, full = 0;
    enum { O_TENSORS = 256, O_VERIFY, O_JSON, O_FULL, O_VERSION };
    static const struct option opts[] = {
        {"tensors", no_argument, 0, O_TENSORS}, {"verify", no_argument, 0, O_VERIFY},
        {"json", no_argument, 0, O_JSON},       {"full", no_argument, 0, O_FULL},
        {"help", no_argument, 0, 'h'},          {"version", no_argument, 0, O_VERSION},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_TENSORS: list = 1; break;
        case O_VERIFY: verify = 1; break;
        case O_JSON: as_json = 1; break;
        case O_FULL: full = 1; break;
        case 'h': usage(stdout); return 0;
        case O_VERSION: printf("gginfo %s\n", GG_VERSION_STRING); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "gginfo: %s\n", optind >= argc ? "missing FILE.gg" : "one FILE.gg expected");
        usage(stderr);
        return 1;
    }
    const char *path = argv[optind];
    gg_err err;
    gg_file *f;
    if (gg_file_open(&f, path, 0, &err)) gg_die(TOOL, "%s", err.msg);

    double vt = 0;
    int verified = 0;
    if (verify) {
        double t0 = gg_now();
        if (gg_file_verify(f, &err)) {
            gg_file_close(f);
            gg_die(TOOL, "%s", err.msg);
        }
        vt = gg_now() - t0;
        verified = 1;
    }

    type_stat ts[GG_TYPE_COUNT] = {{0}};
    uint64_t tot_elems = 0, tot_bytes = 0;
    size_t nt = gg_tensor_count(f);
    for (size_t i = 0; i < nt; i++) {
        const gg_tensor *t = gg_tensor_at(f, i);
        uint64_t ne = gg_tensor_nelem(t);
        ts[t->type].count++;
        ts[t->type].elems += ne;
        ts[t->type].bytes += t->size;
        tot_elems += ne;
        tot_bytes += t->size;
    }

    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "file", json_string(path));
        json_object_set_new(o, "version", json_integer(gg_file_version(f)));
        json_object_set_new(o, "alignment", json_integer(gg_file_alignment(f)));
        json_object_set_new(o, "size", json_integer((json_int_t)gg_file_size(f)));
        json_t *m = json_object();
        for (size_t i = 0; i < gg_meta_count(f); i++) {
            const gg_meta *e = gg_meta_at(f, i);
            json_object_set_new(m, e->key, json_of_value(&e->val));
        }
        json_object_set_new(o, "metadata", m);
        json_t *ta = json_array();
        for (size_t i = 0; i < nt; i++) {
            const gg_tensor *t = gg_tensor_at(f, i);
            json_t *to = json_object(), *sh = json_array();
            for (uint32_t d = 0; d < t->ndim; d++) json_array_append_new(sh, json_integer((json_int_t)t->shape[d]));
            char hx[20];
            snprintf(hx, sizeof hx, "%016" PRIx64, t->xxh64);
            json_object_set_new(to, "name", json_string(t->name));
            json_object_set_new(to, "type", json_string(gg_type_name(t->type)));
            json_object_set_new(to, "shape", sh);
            json_object_set_new(to, "bytes", json_integer((json_int_t)t->size));
            json_object_set_new(to, "offset", json_integer((json_int_t)t->offset));
            json_object_set_new(to, "xxh64", json_string(hx));
            json_array_append_new(ta, to);
        }
        json_object_set_new(o, "tensors", ta);
        json_t *ty = json_object();
        for (int k = 0; k < GG_TYPE_COUNT; k++) {
            if (!ts[k].count) continue;
            json_t *x = json_object();
            json_object_set_new(x, "tensors", json_integer((json_int_t)ts[k].count));
            json_object_set_new(x, "params", json_integer((json_int_t)ts[k].elems));
            json_object_set_new(x, "bytes", json_integer((json_int_t)ts[k].bytes));
            json_object_set_new(x, "bits_per_weight", json_real(8.0 * (double)ts[k].bytes / (double)ts[k].elems));
            json_object_set_new(ty, gg_type_name((gg_type)k), x);
        }
        json_object_set_new(o, "types", ty);
        if (verified) json_object_set_new(o, "verified", json_true());
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
        if (!s) gg_die(TOOL, "%s: cannot encode JSON", path);
        puts(s);
        free(s);
        json_decref(o);
        gg_file_close(f);
        return 0;
    }

    char a[32], b[32];
    printf("file:       %s\n", path);
    printf("size:       %s (%" PRIu64 " bytes), format v%u, alignment %u\n",
           gg_human_bytes(gg_file_size(f), a), gg_file_size(f), gg_file_version(f),
           gg_file_alignment(f));
    printf("metadata:   %zu keys\n", gg_meta_count(f));
    for (size_t i = 0; i < gg_meta_count(f); i++) {
        const gg_meta *e = gg_meta_at(f, i);
        printf("  %-34s ", e->key);
        print_value(&e->val, full);
        putchar('\n');
    }
    printf("tensors:    %zu, %" PRIu64 " parameters, %s\n", nt, tot_elems, gg_human_bytes(tot_bytes, a));
    printf("  %-6s %8s %16s %14s %12s\n", "type", "tensors", "params", "bytes", "bits/weight");
    for (int k = 0; k < GG_TYPE_COUNT; k++) {
        if (!ts[k].count) continue;
        printf("  %-6s %8" PRIu64 " %16" PRIu64 " %14" PRIu64 " %12.4f\n", gg_type_name((gg_type)k),
               ts[k].count, ts[k].elems, ts[k].bytes, 8.0 * (double)ts[k].bytes / (double)ts[k].elems);
    }
    if (tot_elems)
        printf("  %-6s %8zu %16" PRIu64 " %14" PRIu64 " %12.4f\n", "all", nt, tot_elems, tot_bytes,
               8.0 * (double)tot_bytes / (double)tot_elems);
    if (list) {
        printf("\n  %-44s %-5s %-22s %12s %12s\n", "name", "type", "shape", "bytes", "offset");
        for (size_t i = 0; i < nt; i++) {
            const gg_tensor *t = gg_tensor_at(f, i);
            char shape[64] = "[";
            for (uint32_t d = 0; d < t->ndim; d++) {
                size_t l = strlen(shape);
                snprintf(shape + l, sizeof shape - l, "%s%" PRIu64, d ? ", " : "", t->shape[d]);
            }
            strncat(shape, "]", sizeof shape - strlen(shape) - 1);
            printf("  %-44s %-5s %-22s %12" PRIu64 " %12" PRIu64 "\n", t->name, gg_type_name(t->type),
                   shape, t->size, t->offset);
        }
    }
    if (verified)
        printf("verify:     ok, %zu tensor checksums (%s in %.2f s)\n", nt,
               gg_human_bytes(tot_bytes, b), vt);
    gg_file_close(f);
    return 0;
}
