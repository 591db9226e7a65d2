/* fixture_gg.h — the tests' one way to turn a Hugging Face fixture folder
 * into a .gg model (header-only): the converter's default rules, 2 threads,
 * a one-line message on stderr when it fails. */
#ifndef GG_TEST_FIXTURE_GG_H
#define GG_TEST_FIXTURE_GG_H

#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "convert/convert.h"
#include "tests/check.h"

/* Convert the folder dir to out as type t; fp (may be NULL) gets the
 * model's fingerprint. 0, or -1 with a message. */
static inline int fixture_convert_dir(const char *dir, const char *out, gg_type t, uint64_t *fp) {
    gg_convert_opts o = {.hf_dir = dir, .out_path = out, .type = t, .embed_rule = GG_RULE_DEFAULT,
                         .fallback_rule = GG_RULE_SOURCE, .threads = 2};
    gg_convert_stats st;
    gg_err err;
    if (gg_convert(&o, &st, &err)) {
        fprintf(stderr, "convert %s: %s\n", dir, err.msg);
        return -1;
    }
    if (fp) *fp = st.fingerprint;
    return 0;
}

/* The fixture hf/FIX converted to type t, made once as TMPDIR/FIX.TYPE.gg;
 * its path in out. */
static inline int fixture_gg(const char *fix, gg_type t, const char *tmpdir, char *out, size_t len) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/hf/%s", check_fixtures(), fix);
    snprintf(out, len, "%s/%s.%s.gg", tmpdir, fix, gg_type_name(t));
    if (access(out, F_OK) == 0) return 0;
    return fixture_convert_dir(dir, out, t, NULL);
}

#endif
