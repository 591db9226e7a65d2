/* check.h — the tiny test harness every tests/test_*.c uses.
 *
 *   static void test_x(void) { CHECK(a == b, "a=%d", a); }
 *   int main(void) { RUN(test_x); return check_done(); }
 *
 * Conditions are evaluated exactly once (side effects are safe).
 * Each RUN is one test: it passes when no CHECK in it failed. check_done
 * prints "N passed, N failed" for the binary (tests/run.sh adds them up). */
#ifndef GG_CHECK_H
#define GG_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int check_pass_, check_fail_, check_cur_failed_;
static const char *check_cur_name_;

#define CHECK_AT_(ok, text, ...)                                                  \
    do {                                                                          \
        if (!(ok)) {                                                              \
            check_cur_failed_ = 1;                                                \
            fprintf(stderr, "FAIL %s (%s:%d): %s: ", check_cur_name_, __FILE__,   \
                    __LINE__, text);                                              \
            fprintf(stderr, __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                  \
        }                                                                         \
    } while (0)

#define CHECK(cond, ...) CHECK_AT_(!!(cond), #cond, __VA_ARGS__)

/* CHECK and leave the test function on failure. */
#define REQUIRE(cond, ...)                                                        \
    do {                                                                          \
        int require_ok_ = !!(cond);                                               \
        CHECK_AT_(require_ok_, #cond, __VA_ARGS__);                               \
        if (!require_ok_) return;                                                 \
    } while (0)

#define RUN(fn)                                                                   \
    do {                                                                          \
        check_cur_name_ = #fn;                                                    \
        check_cur_failed_ = 0;                                                    \
        fn();                                                                     \
        if (check_cur_failed_) check_fail_++;                                     \
        else { check_pass_++; printf("ok %s\n", #fn); }                           \
        fflush(stdout);                                                           \
    } while (0)

static inline int check_done(void) {
    printf("%d passed, %d failed\n", check_pass_, check_fail_);
    return check_fail_ ? 1 : 0;
}

/* Directory of the test fixtures (GG_FIXTURES overrides tests/fixtures). */
static inline const char *check_fixtures(void) {
    const char *d = getenv("GG_FIXTURES");
    return d && *d ? d : "tests/fixtures";
}

/* 1 when the fixture file rel (under check_fixtures()) is readable; else
 * prints "skip: fixtures not found under DIR" and returns 0 (the test's main
 * then returns check_done()). */
static inline int check_have_fixture(const char *rel) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", check_fixtures(), rel);
    if (access(p, R_OK) == 0) return 1;
    printf("skip: fixtures not found under %s\n", check_fixtures());
    return 0;
}

/* rm -rf dir: a test's mkdtemp folder. */
static inline void check_rm_tree(const char *dir) {
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

#endif
