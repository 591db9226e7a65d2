/* plot.h — a training chart as one self-contained SVG file (no scripts, no
 * external fonts or styles; opens in any browser): series of (x, y) points
 * against the optimizer step, on a left axis ("loss") and an optional
 * right-hand axis ("learning rate"), drawn as a line or as markers, with
 * 1-2-5 tick labels, axis labels, a legend and a title.
 *
 * Owns: scales and ticks, the SVG text (XML-escaped names and title). The
 * file is written with gg_write_atomic (PATH.tmp, fsync, rename).
 *
 * Points whose x or y is NaN or infinite are skipped (a line series joins
 * its neighbours); empty series are allowed and appear in the legend. A
 * line series with k finite points is one <polyline> of k points; a marker
 * series is k <circle>s; each series sits in
 * <g class="series" data-name="NAME">.
 *
 * Errors: 0 / -1 with a gg_err naming the path or the series at fault. */
#ifndef GG_PLOT_H
#define GG_PLOT_H

#include <stddef.h>

#include "ggfmt/err.h"

typedef enum gg_plot_axis { GG_PLOT_LEFT, GG_PLOT_RIGHT } gg_plot_axis;
typedef enum gg_plot_style { GG_PLOT_LINE, GG_PLOT_MARKERS } gg_plot_style;

typedef struct gg_plot_series {
    const char *name;  /* legend text, UTF-8 (NULL: "series N") */
    const char *color; /* a CSS colour ("#1f77b4", "crimson", "rgb(1,2,3)"); NULL: a palette colour */
    const double *x, *y;
    size_t n;
    gg_plot_axis axis;
    gg_plot_style style;
} gg_plot_series;

/* The SVG text (malloc'd, NUL-terminated) in *out, its length in *len. */
int gg_plot_svg_mem(char **out, size_t *len, const gg_plot_series *series, size_t n_series, const char *title,
                    gg_err *err);

/* Write the chart to path atomically. title may be NULL (no title). */
int gg_plot_svg(const char *path, const gg_plot_series *series, size_t n_series, const char *title, gg_err *err);

#endif
