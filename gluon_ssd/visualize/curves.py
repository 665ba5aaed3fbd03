"""Curves: the training log and precision-recall, from arrays and plain records."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .canvas import new_figure, save_figure


def plot_training_curves(history: Sequence[Mapping[str, float]], path=None) -> Figure:
    """Loss (total, confidence, localization) and validation mAP per epoch.

    ``history``: one mapping per epoch with ``epoch``, ``loss``, ``confidence``,
    ``localization`` and optionally ``val_map`` (None when not evaluated that epoch).
    """
    epochs = [h["epoch"] for h in history]
    fig, axes = new_figure(1, 2, panel_size=(5.0, 3.6))
    loss_ax, map_ax = axes[0]
    for key in ("loss", "confidence", "localization"):
        loss_ax.plot(epochs, [h[key] for h in history], marker="o", label=key)
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="loss")
    loss_ax.legend()
    evaluated = [(h["epoch"], h["val_map"]) for h in history if h.get("val_map") is not None]
    if evaluated:
        map_ax.plot(*zip(*evaluated), marker="o", color="tab:green")
    map_ax.set(xlabel="epoch", ylabel="VOC07 mAP@0.5", title="validation mAP", ylim=(0, 1))
    map_ax.grid(alpha=0.3)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# Evaluation.

AP_LABELS = {"voc07": "VOC07 AP", "voc2010": "VOC2010 AP"}


def draw_pr_curve(ax: Axes, recall: np.ndarray, precision: np.ndarray, *,
                  envelope: Optional[np.ndarray] = None,
                  eleven_point: Optional[np.ndarray] = None,
                  num_positives: Optional[int] = None,
                  aps: Optional[Mapping[str, float]] = None, title: Optional[str] = None,
                  legend: bool = True, fontsize: float = 8) -> Axes:
    """One class's precision-recall curve on ``ax``.

    Args:
        recall, precision: ``(D,)`` after each detection in descending score order (thin line;
            ``nan`` precision is drawn as a gap).
        envelope: ``(D,)`` the best precision at equal or higher recall (shaded: the area is
            the VOC2010+ AP); not drawn if ``None``.
        eleven_point: ``(11,)`` the envelope at recall 0, 0.1, ..., 1 (dots: their mean is the
            VOC07 AP); not drawn if ``None``.
        num_positives: ground-truth boxes of the class, for the title.
        aps: e.g. ``{"voc07": 0.7}``, shown in the title.
    """
    recall = np.asarray(recall, np.float64)
    ax.plot(recall, precision, ".-", color="tab:blue", linewidth=1, markersize=3,
            label="precision after each detection")
    if envelope is not None:
        steps = np.concatenate([[0.0], recall])
        envelope = np.asarray(envelope, np.float64)
        envelope = np.concatenate([envelope[:1], envelope]) if len(envelope) else np.zeros(1)
        ax.step(steps, envelope, where="pre", color="tab:orange", linewidth=1.5,
                label="envelope (area: VOC2010 AP)")
        ax.fill_between(steps, envelope, step="pre", color="tab:orange", alpha=0.15)
    if eleven_point is not None:
        ax.plot(np.linspace(0, 1, 11), eleven_point, "o", color="tab:red", markersize=3,
                label="11 points (mean: VOC07 AP)")
    text = ", ".join(f"{AP_LABELS.get(k, k)} {v:.3f}" for k, v in (aps or {}).items()
                     if v is not None and not np.isnan(v))
    counts = (f"{num_positives} boxes, " if num_positives is not None else "") + \
        f"{len(recall)} detections"
    ax.set_title(f"{title or ''}{': ' if title and text else ''}{text}\n{counts}",
                 fontsize=fontsize + 1)
    ax.set(xlim=(0, 1.02), ylim=(0, 1.05), xlabel="recall", ylabel="precision")
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(loc="lower left", fontsize=fontsize)
    return ax


def plot_pr_curve(recall: np.ndarray, precision: np.ndarray, *, path=None,
                  **kwargs) -> Figure:
    """One class's precision-recall curve with its legend; ``kwargs``: those of
    :func:`draw_pr_curve` (``envelope``, ``eleven_point``, ``num_positives``, ``aps``,
    ``title``)."""
    fig, axes = new_figure(panel_size=(5.5, 4.5))
    draw_pr_curve(axes[0, 0], recall, precision, **kwargs)
    return save_figure(fig, path)


def plot_pr_curves(curves: Mapping[str, Mapping[str, Any]],
                   aps: Optional[Mapping[str, Mapping[str, float]]] = None, *, ncols: int = 4,
                   title: Optional[str] = None, path=None) -> Figure:
    """A grid with every class's precision-recall curve (see :func:`draw_pr_curve`).

    Args:
        curves: class name -> a plain record of :func:`draw_pr_curve`'s arrays: ``recall``,
            ``precision`` and optionally ``envelope``, ``eleven_point``, ``num_positives``.
        aps: metric name (``"voc07"``, ``"voc2010"``) -> class name -> AP, for the titles.
        ncols: panels per row.
    """
    names = list(curves)
    ncols = max(1, min(ncols, len(names)))
    nrows = max(1, -(-len(names) // ncols))
    fig, axes = new_figure(nrows, ncols, panel_size=(3.6, 3.2))
    for k, (ax, name) in enumerate(zip(axes.flat, names)):
        draw_pr_curve(ax, **curves[name], aps={m: a.get(name) for m, a in (aps or {}).items()},
                      title=name, legend=k == 0, fontsize=6)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    if not names:
        axes[0, 0].text(0.5, 0.5, "no class has ground truth", ha="center", va="center")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
