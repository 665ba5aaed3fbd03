"""Pictures of anchor coverage: how well default boxes fit a set of ground-truth boxes (the
records of :mod:`gluon_ssd.coverage`), and a dataset's box shapes against the anchor shapes."""
from __future__ import annotations

from typing import Dict, Mapping, Sequence, Union

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..coverage import REPORT_THRESHOLDS, CoverageReport
from .canvas import Color, box_colors, new_figure, save_figure

Reports = Union[CoverageReport, Mapping[str, CoverageReport]]
# Histogram bins of box sizes (fractions of the input side) and ratios w / h, log-spaced.
_SIZE_EDGES = np.geomspace(0.01, 1.5, 31)
_RATIO_EDGES = np.geomspace(1 / 10, 10, 31)


def _named(reports: Reports) -> Dict[str, CoverageReport]:
    return dict(reports) if isinstance(reports, Mapping) else {"anchors": reports}


def plot_coverage(reports: Reports, path=None) -> Figure:
    """Histogram of each box's best anchor IoU and, with layers, boxes per layer.

    ``reports``: one :class:`~gluon_ssd.coverage.CoverageReport` or several by name (e.g.
    ``{"SSD300": before, "fitted": after}``), drawn side by side in the same panels.
    """
    named = _named(reports)
    with_layers = all(r.num_layers for r in named.values())
    fig, axes = new_figure(1, 2 if with_layers else 1, panel_size=(6.0, 4.0))
    colors = box_colors(len(named))
    _draw_iou_histogram(axes[0, 0], named, colors)
    if with_layers:
        _draw_layer_counts(axes[0, 1], named, colors)
    return save_figure(fig, path)


def plot_dataset_coverage(reports: Reports, *, title: str = "", path=None) -> Figure:
    """Six panels on one dataset's boxes (the same boxes in every report) and one or more anchor
    sets, by name: the box shapes (size against ratio, the first set's uncovered boxes in red)
    with each set's anchor shapes on top; the box size and ratio histograms with the anchors'
    sizes and ratios marked; the best-IoU histogram; coverage against the IoU threshold; boxes
    per layer. Sizes are ``sqrt(w * h)`` as fractions of the network's input side."""
    named = _named(reports)
    first = next(iter(named.values()))
    colors = box_colors(len(named))
    fig, axes = new_figure(2, 3, panel_size=(5.0, 4.0))
    _draw_shapes(axes[0, 0], first, named, colors)
    sizes, ratios = first.shapes
    _draw_distribution(axes[0, 1], sizes, _SIZE_EDGES, named, colors, 1,
                       "box size sqrt(w*h) / input side")
    _draw_distribution(axes[0, 2], ratios, _RATIO_EDGES, named, colors, 2, "box ratio w / h")
    _draw_iou_histogram(axes[1, 0], named, colors)
    _draw_threshold_curve(axes[1, 1], named, colors)
    if all(r.num_layers for r in named.values()):
        _draw_layer_counts(axes[1, 2], named, colors)
    else:
        axes[1, 2].set_axis_off()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def _draw_shapes(ax: Axes, first: CoverageReport, named: Mapping[str, CoverageReport],
                 colors: Sequence[Color]) -> None:
    """Boxes as points (size, ratio), grey if the first set covers them, red if not; anchor
    shapes of each set as crosses."""
    sizes, ratios = first.shapes
    covered = first.covered
    ax.scatter(sizes[covered], ratios[covered], s=4, color="0.6", alpha=0.5,
               label=f"boxes covered by {next(iter(named))}")
    ax.scatter(sizes[~covered], ratios[~covered], s=6, color="tab:red", alpha=0.7,
               label=f"not covered ({(~covered).sum()})")
    for (name, report), color, marker in zip(named.items(), colors, "x+1234"):
        if len(report.anchor_shapes):
            ax.scatter(report.anchor_shapes[:, 1], report.anchor_shapes[:, 2], s=60, marker=marker,
                       color=color, linewidths=2, label=f"{name} anchors")
    ax.set(xscale="log", yscale="log", xlabel="size sqrt(w*h) / input side", ylabel="ratio w / h",
           title="box shapes and anchor shapes")
    ax.legend(fontsize=7, loc="best")


def _draw_distribution(ax: Axes, values: np.ndarray, edges: np.ndarray,
                       named: Mapping[str, CoverageReport], colors: Sequence[Color], column: int,
                       xlabel: str) -> None:
    """Histogram of ``values`` (log bins) with each set's anchor values (``anchor_shapes``
    column ``column``) as ticks along the top."""
    ax.hist(np.clip(values, edges[0], edges[-1]), bins=edges, color="0.6")
    top = ax.get_ylim()[1]
    for n, ((name, report), color) in enumerate(zip(named.items(), colors)):
        if len(report.anchor_shapes):
            marks = np.unique(report.anchor_shapes[:, column])
            ax.vlines(marks, top * (0.92 - 0.08 * n), top * (1.0 - 0.08 * n), color=color,
                      linewidth=2, label=f"{name} anchors")
    ax.set(xscale="log", xlabel=xlabel, ylabel="boxes")
    if any(len(r.anchor_shapes) for r in named.values()):
        ax.legend(fontsize=7)


def _draw_iou_histogram(ax: Axes, named: Mapping[str, CoverageReport],
                        colors: Sequence[Color]) -> None:
    for (name, report), color in zip(named.items(), colors):
        ax.stairs(report.hist_counts, report.hist_edges, color=color, linewidth=2,
                  label=f"{name}: {report.coverage:.1%} covered")
    threshold = next(iter(named.values())).threshold
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1)
    ax.set(xlabel="best IoU of a box with any anchor", ylabel="boxes", xlim=(0, 1),
           title=f"IoU >= {threshold:g} counts as covered")
    ax.legend(fontsize=8)


def _draw_threshold_curve(ax: Axes, named: Mapping[str, CoverageReport],
                          colors: Sequence[Color]) -> None:
    """Fraction of boxes whose best IoU reaches each threshold, the report's thresholds marked."""
    thresholds = np.linspace(0.3, 0.9, 61)
    for (name, report), color in zip(named.items(), colors):
        ax.plot(thresholds, [report.coverage_at(t) for t in thresholds], color=color,
                linewidth=2, label=name)
        ax.scatter(REPORT_THRESHOLDS, [report.coverage_at(t) for t in REPORT_THRESHOLDS],
                   color=color, s=20)
    ax.set(xlabel="IoU threshold", ylabel="boxes covered", ylim=(0, 1.02),
           title="coverage against the threshold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _draw_layer_counts(ax: Axes, named: Mapping[str, CoverageReport],
                       colors: Sequence[Color]) -> None:
    """Bars per layer: boxes whose best anchor is there (light) and the covered ones (solid)."""
    width = 0.8 / len(named)
    for n, ((name, report), color) in enumerate(zip(named.items(), colors)):
        x = np.arange(report.num_layers) + (n - (len(named) - 1) / 2) * width
        ax.bar(x, report.layer_counts, width, color=color, alpha=0.3)
        ax.bar(x, report.layer_covered, width, color=color, label=f"{name} (solid: covered)")
    ax.set(xlabel="layer of the best anchor", ylabel="boxes", title="boxes each layer would take")
    ax.set_xticks(np.arange(max(r.num_layers for r in named.values())))
    ax.legend(fontsize=8)
