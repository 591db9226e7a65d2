/* plot.c — training charts as SVG (plot.h): data ranges per axis, 1-2-5
 * ticks, the SVG text, and the atomic write. The layout is fixed: a
 * 900-wide canvas, the plot area framed by the axes, tick labels outside,
 * the legend in rows under the x-axis label. */
#include "convert/plot.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/safetensors.h" /* gg_write_atomic */
#include "ggfmt/utf8.h"

#define MAX_SERIES 64
#define MAX_COLOR 40
#define WIDTH 900.0
#define PLOT_H 380.0 /* height of the plot area */

static const char *const PALETTE[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

/* ---- text buffer ------------------------------------------------------------ */

typedef struct sb {
    char *p;
    size_t len, cap;
    int oom;
} sb;

static void sb_grow(sb *b, size_t need) {
    if (b->oom || b->len + need + 1 <= b->cap) return;
    size_t c = b->cap ? b->cap : 4096;
    while (c < b->len + need + 1) c *= 2;
    char *q = realloc(b->p, c);
    if (!q) {
        b->oom = 1;
        return;
    }
    b->p = q;
    b->cap = c;
}

static void sb_put(sb *b, const char *s, size_t n) {
    sb_grow(b, n);
    if (b->oom) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

#define SB_LIT(b, lit) sb_put((b), (lit), sizeof(lit) - 1)

static void sb_printf(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    sb_grow(b, (size_t)n);
    if (b->oom) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* XML text / attribute content; control characters become '?'. */
static void sb_xml(sb *b, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '&': sb_put(b, "&amp;", 5); break;
        case '<': sb_put(b, "&lt;", 4); break;
        case '>': sb_put(b, "&gt;", 4); break;
        case '"': sb_put(b, "&quot;", 6); break;
        case '\'': sb_put(b, "&apos;", 6); break;
        default: sb_put(b, c < 0x20 || c == 0x7f ? "?" : s, 1); break;
        }
    }
}

/* ---- scales and ticks ----------------------------------------------------------- */

typedef struct scale {
    double lo, hi;  /* data range, then the snapped axis range */
    double step;    /* tick step (1, 2 or 5 × 10^e) */
    int e;          /* floor(log10(step)) */
    int sci, exp10; /* labels as mantissa e exp10 */
    int any;
} scale;

static void scale_add(scale *s, double v) {
    if (!s->any)
        s->lo = s->hi = v, s->any = 1;
    else {
        if (v < s->lo) s->lo = v;
        if (v > s->hi) s->hi = v;
    }
}

/* Snap [lo, hi] to multiples of a 1-2-5 step giving about `target` ticks. */
static void scale_finish(scale *s, int target, int integer) {
    if (!s->any) s->lo = 0, s->hi = 1;
    if (s->hi - s->lo <= 0 || !isfinite(s->hi - s->lo)) {
        double pad = fabs(s->lo) > 0 ? fabs(s->lo) * 0.05 : 1.0;
        if (!isfinite(pad) || pad == 0) pad = 1.0;
        s->lo -= pad;
        s->hi += pad;
    }
    double range = s->hi - s->lo;
    if (!isfinite(range)) { /* values near ±DBL_MAX: no ticks worth drawing */
        s->lo = -1e300, s->hi = 1e300, range = 2e300;
    }
    double raw = range / target;
    int e = (int)floor(log10(raw));
    double f = raw / pow(10, e), m = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    if (m == 10) m = 1, e++;
    double step = m * pow(10, e);
    if (integer && step < 1) step = 1, e = 0;
    s->step = step;
    s->e = e;
    double lo = floor(s->lo / step) * step, hi = ceil(s->hi / step) * step;
    if (isfinite(lo) && isfinite(hi) && hi > lo) s->lo = lo, s->hi = hi;
    double big = fmax(fabs(s->lo), fabs(s->hi));
    s->sci = step < 1e-3 || big >= 1e6;
    s->exp10 = big > 0 ? (int)floor(log10(big)) : 0;
}

static void tick_label(char *buf, size_t cap, const scale *s, double v) {
    if (fabs(v) < s->step * 1e-6) {
        snprintf(buf, cap, "0");
        return;
    }
    if (s->sci) {
        int dec = s->exp10 - s->e;
        if (dec < 0) dec = 0;
        if (dec > 6) dec = 6;
        snprintf(buf, cap, "%.*fe%d", dec, v / pow(10, s->exp10), s->exp10);
        return;
    }
    int dec = s->e < 0 ? -s->e : 0;
    if (dec > 9) dec = 9;
    snprintf(buf, cap, "%.*f", dec, v);
}

/* Tick values of s: k*step for k in [ceil(lo/step), floor(hi/step)], at most 64. */
static int ticks(const scale *s, double *out, int max) {
    double k0 = ceil(s->lo / s->step - 1e-9), k1 = floor(s->hi / s->step + 1e-9);
    int n = 0;
    for (double k = k0; k <= k1 && n < max; k++) out[n++] = k * s->step;
    return n;
}

/* "#rgb", "#rrggbb" (4 and 8 digits with alpha), a name ("crimson"), or
 * rgb()/rgba()/hsl()/hsla() of numbers: nothing that could leave the
 * attribute or reference anything. */
static int color_ok(const char *c) {
    size_t n = strlen(c);
    if (n == 0 || n > MAX_COLOR) return 0;
    if (c[0] == '#') {
        if (n != 4 && n != 5 && n != 7 && n != 9) return 0;
        for (size_t i = 1; i < n; i++)
            if (!isxdigit((unsigned char)c[i])) return 0;
        return 1;
    }
    size_t k = 0;
    while (k < n && isalpha((unsigned char)c[k])) k++;
    if (k == n) return 1;
    static const char *const FN[] = {"rgb", "rgba", "hsl", "hsla"};
    int fn = 0;
    for (size_t i = 0; i < 4; i++)
        if (strlen(FN[i]) == k && strncmp(c, FN[i], k) == 0) fn = 1;
    if (!fn || c[k] != '(' || c[n - 1] != ')') return 0;
    for (size_t i = k + 1; i < n - 1; i++)
        if (!isdigit((unsigned char)c[i]) && !strchr(" ,.%", c[i])) return 0;
    return 1;
}

static int finite_pt(const gg_plot_series *s, size_t i) { return isfinite(s->x[i]) && isfinite(s->y[i]); }

/* ---- the chart ---------------------------------------------------------------------- */

int gg_plot_svg_mem(char **out, size_t *len, const gg_plot_series *series, size_t n_series, const char *title,
                    gg_err *err) {
    *out = NULL;
    *len = 0;
    if (n_series > MAX_SERIES) return gg_errf(err, "plot: %zu series (at most %d)", n_series, MAX_SERIES);
    if (n_series && !series) return gg_errf(err, "plot: NULL series array");
    if (title && gg_utf8_invalid_at(title, strlen(title)) != (size_t)-1)
        return gg_errf(err, "plot: the title is not valid UTF-8");
    char names[MAX_SERIES][32];
    const char *name[MAX_SERIES], *color[MAX_SERIES];
    scale sx = {0}, sl = {0}, sr = {0};
    int has_right = 0, has_left = 0;
    for (size_t k = 0; k < n_series; k++) {
        const gg_plot_series *s = &series[k];
        snprintf(names[k], sizeof names[k], "series %zu", k + 1);
        name[k] = s->name ? s->name : names[k];
        if (gg_utf8_invalid_at(name[k], strlen(name[k])) != (size_t)-1)
            return gg_errf(err, "plot: series %zu: the name is not valid UTF-8", k + 1);
        color[k] = s->color ? s->color : PALETTE[k % (sizeof PALETTE / sizeof *PALETTE)];
        if (!color_ok(color[k]))
            return gg_errf(err, "plot: series %zu ('%.60s'): color '%.60s' is not a CSS colour gg accepts", k + 1,
                           name[k], color[k]);
        if (s->axis != GG_PLOT_LEFT && s->axis != GG_PLOT_RIGHT)
            return gg_errf(err, "plot: series %zu ('%.60s'): axis %d is not left or right", k + 1, name[k],
                           (int)s->axis);
        if (s->style != GG_PLOT_LINE && s->style != GG_PLOT_MARKERS)
            return gg_errf(err, "plot: series %zu ('%.60s'): style %d is not line or markers", k + 1, name[k],
                           (int)s->style);
        if (s->n && (!s->x || !s->y))
            return gg_errf(err, "plot: series %zu ('%.60s'): %zu points but x or y is NULL", k + 1, name[k], s->n);
        if (s->axis == GG_PLOT_RIGHT)
            has_right = 1;
        else
            has_left = 1;
        scale *sy = s->axis == GG_PLOT_RIGHT ? &sr : &sl;
        for (size_t i = 0; i < s->n; i++)
            if (finite_pt(s, i)) {
                scale_add(&sx, s->x[i]);
                scale_add(sy, s->y[i]);
            }
    }
    /* the learning rate axis starts at 0 when the rates are not negative */
    if (sr.any && sr.lo > 0) sr.lo = 0;
    int int_x = 1;
    for (size_t k = 0; k < n_series && int_x; k++)
        for (size_t i = 0; i < series[k].n; i++)
            if (finite_pt(&series[k], i) && series[k].x[i] != floor(series[k].x[i])) {
                int_x = 0;
                break;
            }
    scale_finish(&sx, 8, int_x);
    scale_finish(&sl, 6, 0);
    scale_finish(&sr, 6, 0);

    /* layout */
    int has_title = title && title[0];
    double L = 80, R = WIDTH - (has_right ? 90 : 30), T = has_title ? 50 : 20, B = T + PLOT_H;
    /* legend rows: entries laid out left to right, wrapped at the width */
    double lx[MAX_SERIES], ly[MAX_SERIES], cx = L, cy = B + 68;
    for (size_t k = 0; k < n_series; k++) {
        double w = 34 + 7.0 * (double)strlen(name[k]) + (series[k].axis == GG_PLOT_RIGHT ? 7.0 * 13 : 0) + 20;
        if (cx > L && cx + w > WIDTH - 20) cx = L, cy += 20;
        lx[k] = cx, ly[k] = cy;
        cx += w;
    }
    double H = (n_series ? cy : B + 48) + 22;

    sb b = {0};
    sb_printf(&b,
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
              "font-family=\"sans-serif\" font-size=\"12\">\n",
              WIDTH, H, WIDTH, H);
    sb_printf(&b, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", WIDTH, H);
    if (has_title) {
        sb_printf(&b, "<text x=\"%.1f\" y=\"30\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">",
                  WIDTH / 2);
        sb_xml(&b, title);
        SB_LIT(&b, "</text>\n");
    }
    double tv[64], gv[64];
    char lab[64];
#define SX(v) (L + ((v)-sx.lo) / (sx.hi - sx.lo) * (R - L))
#define SY(s, v) (B - ((v) - (s).lo) / ((s).hi - (s).lo) * (B - T))
    /* grid and x ticks */
    SB_LIT(&b, "<g class=\"grid\" stroke=\"#e4e4e4\" stroke-width=\"1\">\n");
    int nt = ticks(&sx, tv, 64);
    for (int i = 0; i < nt; i++)
        sb_printf(&b, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n", SX(tv[i]), T, SX(tv[i]), B);
    const scale *gs = has_left || !has_right ? &sl : &sr;
    int ng = ticks(gs, gv, 64);
    for (int i = 0; i < ng; i++)
        sb_printf(&b, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n", L, SY(*gs, gv[i]), R,
                  SY(*gs, gv[i]));
    SB_LIT(&b, "</g>\n");
    /* axes */
    sb_printf(&b,
              "<rect class=\"frame\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
              "stroke=\"#333\" stroke-width=\"1\"/>\n",
              L, T, R - L, B - T);
    SB_LIT(&b, "<g class=\"x-axis\" text-anchor=\"middle\">\n");
    for (int i = 0; i < nt; i++) {
        tick_label(lab, sizeof lab, &sx, tv[i]);
        sb_printf(&b,
                  "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#333\"/><text x=\"%.2f\" "
                  "y=\"%.2f\">%s</text>\n",
                  SX(tv[i]), B, SX(tv[i]), B + 5, SX(tv[i]), B + 19, lab);
    }
    sb_printf(&b, "<text x=\"%.2f\" y=\"%.2f\">optimizer step</text>\n</g>\n", (L + R) / 2, B + 40);
    if (has_left || !has_right) {
        ng = ticks(&sl, tv, 64);
        SB_LIT(&b, "<g class=\"y-axis-left\" text-anchor=\"end\">\n");
        for (int i = 0; i < ng; i++) {
            tick_label(lab, sizeof lab, &sl, tv[i]);
            sb_printf(&b,
                      "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#333\"/><text x=\"%.2f\" "
                      "y=\"%.2f\">%s</text>\n",
                      L - 5, SY(sl, tv[i]), L, SY(sl, tv[i]), L - 8, SY(sl, tv[i]) + 4, lab);
        }
        sb_printf(&b,
                  "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" transform=\"rotate(-90 %.2f "
                  "%.2f)\">loss</text>\n</g>\n",
                  22.0, (T + B) / 2, 22.0, (T + B) / 2);
    }
    if (has_right) {
        ng = ticks(&sr, tv, 64);
        SB_LIT(&b, "<g class=\"y-axis-right\" text-anchor=\"start\">\n");
        for (int i = 0; i < ng; i++) {
            tick_label(lab, sizeof lab, &sr, tv[i]);
            sb_printf(&b,
                      "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#333\"/><text x=\"%.2f\" "
                      "y=\"%.2f\">%s</text>\n",
                      R, SY(sr, tv[i]), R + 5, SY(sr, tv[i]), R + 8, SY(sr, tv[i]) + 4, lab);
        }
        sb_printf(&b,
                  "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" transform=\"rotate(90 %.2f %.2f)\">learning "
                  "rate</text>\n</g>\n",
                  WIDTH - 18, (T + B) / 2, WIDTH - 18, (T + B) / 2);
    }
    /* series */
    for (size_t k = 0; k < n_series; k++) {
        const gg_plot_series *s = &series[k];
        const scale *sy = s->axis == GG_PLOT_RIGHT ? &sr : &sl;
        SB_LIT(&b, "<g class=\"series\" data-name=\"");
        sb_xml(&b, name[k]);
        sb_printf(&b, "\" data-axis=\"%s\">\n<title>", s->axis == GG_PLOT_RIGHT ? "right" : "left");
        sb_xml(&b, name[k]);
        SB_LIT(&b, "</title>\n");
        if (s->style == GG_PLOT_LINE) {
            sb_printf(&b,
                      "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" stroke-linejoin=\"round\" points=\"",
                      color[k]);
            int first = 1;
            for (size_t i = 0; i < s->n; i++) {
                if (!finite_pt(s, i)) continue;
                sb_printf(&b, "%s%.2f,%.2f", first ? "" : " ", SX(s->x[i]), SY(*sy, s->y[i]));
                first = 0;
            }
            SB_LIT(&b, "\"/>\n");
        } else {
            sb_printf(&b, "<g fill=\"%s\" stroke=\"white\" stroke-width=\"0.8\">\n", color[k]);
            for (size_t i = 0; i < s->n; i++)
                if (finite_pt(s, i))
                    sb_printf(&b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3.5\"/>\n", SX(s->x[i]), SY(*sy, s->y[i]));
            SB_LIT(&b, "</g>\n");
        }
        SB_LIT(&b, "</g>\n");
    }
    /* legend */
    if (n_series) {
        SB_LIT(&b, "<g class=\"legend\">\n");
        for (size_t k = 0; k < n_series; k++) {
            if (series[k].style == GG_PLOT_LINE)
                sb_printf(&b,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>",
                          lx[k], ly[k] - 4, lx[k] + 24, ly[k] - 4, color[k]);
            else
                sb_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>", lx[k] + 12, ly[k] - 4,
                          color[k]);
            sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">", lx[k] + 30, ly[k]);
            sb_xml(&b, name[k]);
            if (series[k].axis == GG_PLOT_RIGHT) SB_LIT(&b, " (right axis)");
            SB_LIT(&b, "</text>\n");
        }
        SB_LIT(&b, "</g>\n");
    }
#undef SX
#undef SY
    SB_LIT(&b, "</svg>\n");
    if (b.oom) {
        free(b.p);
        return gg_errf(err, "plot: out of memory");
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

int gg_plot_svg(const char *path, const gg_plot_series *series, size_t n_series, const char *title, gg_err *err) {
    char *svg;
    size_t len;
    if (gg_plot_svg_mem(&svg, &len, series, n_series, title, err)) return gg_err_prefix(err, "%s", path);
    const void *parts[1] = {svg};
    int rc = gg_write_atomic(path, parts, &len, 1, err);
    free(svg);
    return rc;
}
