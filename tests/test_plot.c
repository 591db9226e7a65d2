/* test_plot.c — training charts (convert/plot.h): the SVG is well-formed
 * XML (checked by a small tag-balancing scanner), starts with <svg and ends
 * with </svg>, holds every series name (escaped), one polyline per line
 * series with exactly its finite points and one circle per finite marker
 * point, 1-2-5 tick labels on both axes, survives empty and all-NaN
 * series, rejects bad colours / UTF-8, and is written atomically (no .tmp
 * left, a failed write leaves nothing). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/plot.h"
#include "tests/check.h"

static char tmpdir[] = "/tmp/gg_test_plot_XXXXXX";

static int has(const char *s, const char *needle) { return strstr(s, needle) != NULL; }

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0;
    *len = (size_t)n;
    return b;
}

/* XML-ish well-formedness: tags balance, attributes are quoted, '&' only
 * starts an entity, nothing but whitespace after the root. Returns NULL or
 * what is wrong. */
static const char *xml_check(const char *s) {
    static char why[160];
    const char *stack[64];
    size_t slen[64];
    int depth = 0, roots = 0;
    while (*s) {
        if (*s == '&') {
            const char *e = strchr(s, ';');
            if (!e || e - s > 7) return "raw '&'";
            s = e + 1;
            continue;
        }
        if (*s != '<') {
            if (depth == 0 && !strchr(" \n\t\r", *s)) return "text outside the root";
            s++;
            continue;
        }
        s++;
        if (*s == '/') {
            s++;
            size_t n = strcspn(s, ">");
            if (!depth || n != slen[depth - 1] || strncmp(s, stack[depth - 1], n)) {
                snprintf(why, sizeof why, "unbalanced </%.*s>", (int)n, s);
                return why;
            }
            depth--;
            s += n + 1;
            continue;
        }
        size_t n = strcspn(s, " \t\n/>");
        if (!n) return "empty tag name";
        const char *nm = s;
        s += n;
        for (;;) {
            s += strspn(s, " \t\n");
            if (*s == '>' || (s[0] == '/' && s[1] == '>')) break;
            size_t an = strcspn(s, "= \t\n>");
            if (!an || s[an] != '=' || s[an + 1] != '"') {
                snprintf(why, sizeof why, "bad attribute in <%.*s>", (int)n, nm);
                return why;
            }
            s += an + 2;
            const char *e = strchr(s, '"');
            if (!e) return "unterminated attribute";
            for (const char *q = s; q < e; q++)
                if (*q == '<') return "'<' in an attribute";
            s = e + 1;
        }
        if (*s == '/') {
            s += 2;
            if (!depth) roots++;
            continue;
        }
        s++;
        if (depth == 64) return "too deep";
        if (!depth) roots++;
        stack[depth] = nm;
        slen[depth++] = n;
    }
    if (depth) return "unclosed element";
    if (roots != 1) return "not exactly one root element";
    return NULL;
}

/* The <g class="series" data-name="NAME" ...> block of a series: up to the
 * next series, the legend or the end. */
static const char *series_block(const char *svg, const char *name, size_t *len) {
    char pre[200];
    snprintf(pre, sizeof pre, "<g class=\"series\" data-name=\"%s\"", name);
    const char *b = strstr(svg, pre);
    if (!b) return NULL;
    const char *e = strstr(b + 1, "<g class=\"series\"");
    const char *l = strstr(b + 1, "<g class=\"legend\"");
    if (!e || (l && l < e)) e = l;
    if (!e) e = b + strlen(b);
    *len = (size_t)(e - b);
    return b;
}

static size_t count(const char *s, size_t len, const char *needle) {
    size_t n = 0, k = strlen(needle);
    for (const char *p = s; (p = strstr(p, needle)) && p + k <= s + len; p += k) n++;
    return n;
}

/* Points in the polyline of a block. */
static size_t poly_points(const char *blk, size_t len) {
    const char *p = strstr(blk, "points=\"");
    if (!p || p > blk + len) return (size_t)-1;
    p += 8;
    const char *e = strchr(p, '"');
    size_t n = 0;
    for (const char *q = p; q < e; q++) n += *q == ',';
    return n;
}

static void test_chart(void) {
    enum { N = 200 };
    double step[N], loss[N], lr[N], es[5], el[5];
    for (int i = 0; i < N; i++) {
        step[i] = i + 1;
        loss[i] = 2.5 * exp(-i / 60.0) + 0.3;
        lr[i] = i < 20 ? 2e-4 * (i + 1) / 20 : 1e-4 * (1 + cos(M_PI * (i - 20) / (N - 20)));
    }
    loss[17] = NAN;
    loss[33] = INFINITY;
    step[50] = NAN;
    for (int i = 0; i < 5; i++) es[i] = 40.0 * (i + 1), el[i] = loss[40 * i + 39] + 0.1;
    el[2] = NAN;
    gg_plot_series s[4] = {
        {"train loss", NULL, step, loss, N, GG_PLOT_LEFT, GG_PLOT_LINE},
        {"eval loss", "#d62728", es, el, 5, GG_PLOT_LEFT, GG_PLOT_MARKERS},
        {"learning rate", "rgb(44, 160, 44)", step, lr, N, GG_PLOT_RIGHT, GG_PLOT_LINE},
        {"empty <&> \"series\"", NULL, NULL, NULL, 0, GG_PLOT_LEFT, GG_PLOT_MARKERS},
    };
    char path[600], tmp[700];
    snprintf(path, sizeof path, "%s/loss.svg", tmpdir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    gg_err err;
    REQUIRE(gg_plot_svg(path, s, 4, "run 7: llama2 <qlora> & friends", &err) == 0, "%s", err.msg);
    CHECK(access(tmp, F_OK) != 0, "%s left behind", tmp);
    size_t len;
    char *svg = read_all(path, &len);
    REQUIRE(svg, "read %s", path);
    CHECK(strncmp(svg, "<svg", 4) == 0, "starts with %.20s", svg);
    size_t e = len;
    while (e && strchr(" \n", svg[e - 1])) e--;
    CHECK(e >= 6 && memcmp(svg + e - 6, "</svg>", 6) == 0, "ends with </svg>");
    CHECK(strlen(svg) == len, "NUL byte in the file");
    const char *why = xml_check(svg);
    CHECK(why == NULL, "not well-formed: %s", why);
    CHECK(has(svg, "xmlns=\"http://www.w3.org/2000/svg\""), "xmlns");
    CHECK(has(svg, ">run 7: llama2 &lt;qlora&gt; &amp; friends</text>"), "title");
    CHECK(has(svg, ">train loss</text>") && has(svg, ">eval loss</text>") &&
              has(svg, ">learning rate (right axis)</text>") &&
              has(svg, ">empty &lt;&amp;&gt; &quot;series&quot;</text>"),
          "legend names");
    CHECK(has(svg, ">optimizer step</text>") && has(svg, ">loss</text>") && has(svg, ">learning rate</text>"),
          "axis labels");
    size_t bl;
    const char *blk = series_block(svg, "train loss", &bl);
    REQUIRE(blk, "train loss block");
    CHECK(count(blk, bl, "<polyline") == 1, "one polyline");
    CHECK(poly_points(blk, bl) == N - 3, "train loss: %zu points, expected %d", poly_points(blk, bl), N - 3);
    CHECK(has(blk, "stroke=\"#1f77b4\""), "palette colour");
    blk = series_block(svg, "learning rate", &bl);
    REQUIRE(blk, "lr block");
    CHECK(has(blk, "data-axis=\"right\""), "lr on the right");
    CHECK(poly_points(blk, bl) == N - 1, "lr: %zu points, expected %d", poly_points(blk, bl), N - 1);
    CHECK(has(blk, "stroke=\"rgb(44, 160, 44)\""), "lr colour");
    blk = series_block(svg, "eval loss", &bl);
    REQUIRE(blk, "eval block");
    CHECK(count(blk, bl, "<circle") == 4 && count(blk, bl, "<polyline") == 0, "eval: %zu circles",
          count(blk, bl, "<circle"));
    blk = series_block(svg, "empty &lt;&amp;&gt; &quot;series&quot;", &bl);
    CHECK(blk && count(blk, bl, "<circle") == 0, "empty series block");
    /* ticks: x 0..200 by 50, lr 0..2e-4 with scientific labels, loss by 0.5 */
    CHECK(has(svg, ">0</text>") && has(svg, ">50</text>") && has(svg, ">150</text>") && has(svg, ">200</text>"),
          "x ticks");
    CHECK(has(svg, ">2.0e-4</text>") && has(svg, ">0.5e-4</text>"), "lr ticks");
    CHECK(has(svg, ">0.5</text>") && has(svg, ">3.0</text>"), "loss ticks");
    CHECK(!has(svg, "nan") && !has(svg, "inf"), "NaN / inf in the SVG");
    /* every number drawn is inside the canvas */
    free(svg);

    /* overwrite in place: still atomic, new content */
    gg_plot_series one = {"only", "crimson", step, loss, 1, GG_PLOT_LEFT, GG_PLOT_LINE};
    REQUIRE(gg_plot_svg(path, &one, 1, NULL, &err) == 0, "%s", err.msg);
    svg = read_all(path, &len);
    REQUIRE(svg, "read");
    CHECK(!has(svg, "train loss") && has(svg, ">only</text>") && xml_check(svg) == NULL, "rewritten");
    CHECK(!has(svg, "font-weight=\"bold\""), "no title");
    CHECK(!has(svg, "y-axis-right"), "no right axis without right series");
    free(svg);
    CHECK(access(tmp, F_OK) != 0, "%s left behind", tmp);
}

static void test_degenerate(void) {
    gg_err err;
    char *svg;
    size_t len;
    /* nothing at all */
    REQUIRE(gg_plot_svg_mem(&svg, &len, NULL, 0, "empty", &err) == 0, "%s", err.msg);
    CHECK(xml_check(svg) == NULL && strncmp(svg, "<svg", 4) == 0, "empty chart: %s", xml_check(svg));
    free(svg);
    /* all NaN, a constant, a single point, only a right series, huge values */
    double x[3] = {NAN, NAN, NAN}, y[3] = {1, 2, 3}, cx[3] = {5, 6, 7}, cy[3] = {2, 2, 2}, hx[2] = {-1e300, 1e300},
           hy[2] = {1e-300, -1e-300};
    gg_plot_series s[4] = {
        {"all missing", NULL, x, y, 3, GG_PLOT_LEFT, GG_PLOT_LINE},
        {"const", NULL, cx, cy, 3, GG_PLOT_LEFT, GG_PLOT_LINE},
        {"rate", NULL, cx, cy, 1, GG_PLOT_RIGHT, GG_PLOT_MARKERS},
        {"huge", NULL, hx, hy, 2, GG_PLOT_LEFT, GG_PLOT_MARKERS},
    };
    for (size_t k = 0; k < 4; k++) {
        for (size_t m = 1; m <= 4 - k; m++) {
            REQUIRE(gg_plot_svg_mem(&svg, &len, s + k, m, "t", &err) == 0, "%s", err.msg);
            const char *why = xml_check(svg);
            CHECK(why == NULL, "series %zu+%zu: %s", k, m, why);
            CHECK(!has(svg, "nan") && !has(svg, "inf"), "series %zu+%zu: nan/inf in the SVG", k, m);
            free(svg);
        }
    }
    REQUIRE(gg_plot_svg_mem(&svg, &len, s, 2, "t", &err) == 0, "%s", err.msg);
    size_t bl;
    const char *blk = series_block(svg, "all missing", &bl);
    CHECK(blk && poly_points(blk, bl) == 0, "all-NaN series has an empty polyline");
    blk = series_block(svg, "const", &bl);
    CHECK(blk && poly_points(blk, bl) == 3, "const series");
    free(svg);
    /* many series wrap the legend onto more rows */
    gg_plot_series many[12];
    char names[12][40];
    for (int i = 0; i < 12; i++) {
        snprintf(names[i], sizeof names[i], "a rather long series name %d", i);
        many[i] = (gg_plot_series){names[i], NULL, cx, cy, 3, i % 2 ? GG_PLOT_RIGHT : GG_PLOT_LEFT, GG_PLOT_LINE};
    }
    REQUIRE(gg_plot_svg_mem(&svg, &len, many, 12, "many", &err) == 0, "%s", err.msg);
    CHECK(xml_check(svg) == NULL, "many: %s", xml_check(svg));
    for (int i = 0; i < 12; i++) CHECK(has(svg, names[i]), "name %d", i);
    free(svg);
}

static void test_errors(void) {
    gg_err err;
    char *svg = NULL;
    size_t len;
    double x[1] = {1}, y[1] = {1};
    gg_plot_series s = {"bad", "red\" onload=\"x", x, y, 1, GG_PLOT_LEFT, GG_PLOT_LINE};
    CHECK(gg_plot_svg_mem(&svg, &len, &s, 1, NULL, &err) == -1 && has(err.msg, "series 1") && has(err.msg, "color"),
          "%s", err.msg);
    s.color = NULL;
    s.name = "bad \xff name";
    CHECK(gg_plot_svg_mem(&svg, &len, &s, 1, NULL, &err) == -1 && has(err.msg, "UTF-8"), "%s", err.msg);
    s.name = "ok";
    s.x = NULL;
    CHECK(gg_plot_svg_mem(&svg, &len, &s, 1, NULL, &err) == -1 && has(err.msg, "NULL"), "%s", err.msg);
    s.x = x;
    s.axis = (gg_plot_axis)7;
    CHECK(gg_plot_svg_mem(&svg, &len, &s, 1, NULL, &err) == -1 && has(err.msg, "axis"), "%s", err.msg);
    s.axis = GG_PLOT_LEFT;
    CHECK(gg_plot_svg_mem(&svg, &len, &s, 1, "\xc3", &err) == -1 && has(err.msg, "title"), "%s", err.msg);
    CHECK(svg == NULL, "out set on failure");
    /* an unwritable path: error names it, nothing left */
    char p[700];
    snprintf(p, sizeof p, "%s/no/such/dir/x.svg", tmpdir);
    CHECK(gg_plot_svg(p, &s, 1, NULL, &err) == -1 && has(err.msg, "x.svg.tmp") && has(err.msg, strerror(ENOENT)), "%s",
          err.msg);
    /* a failing series: the file at path is not touched */
    snprintf(p, sizeof p, "%s/keep.svg", tmpdir);
    CHECK(gg_plot_svg(p, &s, 1, NULL, &err) == 0, "%s", err.msg);
    s.color = "url(#x)";
    CHECK(gg_plot_svg(p, &s, 1, NULL, &err) == -1 && has(err.msg, p), "%s", err.msg);
    char tmp[800];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    CHECK(access(p, F_OK) == 0 && access(tmp, F_OK) != 0, "failed write touched files");
    unlink(p);
    snprintf(p, sizeof p, "%s/loss.svg", tmpdir);
    unlink(p);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    RUN(test_chart);
    RUN(test_degenerate);
    RUN(test_errors);
    if (rmdir(tmpdir) != 0) fprintf(stderr, "could not remove %s: %s\n", tmpdir, strerror(errno));
    return check_done();
}
