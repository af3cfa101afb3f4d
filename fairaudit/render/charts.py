"""Static charts for the HTML report, drawn with matplotlib (Agg) and embedded as PNG data URIs.

PNG (not SVG) keeps user-supplied text (cohort names, column values) out of the page's markup: a
name drawn into pixels cannot inject anything. Charts only draw figures already in the result;
they compute no statistics.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

DPI = 100
INK = "#1f2933"
MUTED = "#6b7280"
GRID = "#e5e7eb"
BOTTOM = "#b42318"
TOP = "#1d4ed8"
OTHER = "#9ca3af"
FONT: Any = {  # matplotlib types rc keys as literals; these are checked by matplotlib at run time
    "font.family": "DejaVu Sans",
    "text.parse_math": False,  # cohort names come from the data: "$x^2$" is text, not a formula
    "font.size": 9,
    "axes.edgecolor": "#9ca3af",
    "axes.labelcolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "axes.titlesize": 10,
    "svg.fonttype": "none",
}
CLUSTER_COLOURS = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#1b9e77",
    "#d95f02",
    "#7570b3",
    "#e7298a",
    "#66a61e",
    "#e6ab02",
)
LABEL_CHARS = 34


def png_data_uri(fig, quantize: bool = True) -> str:
    """Encode a figure as a compact PNG data URI (about 100 dpi, palette-quantised) and close it.

    ``quantize=False`` keeps full colour (smooth colour bars) at a few times the size.
    """
    from PIL import Image

    # Draw once and take the pixels (no PNG written by matplotlib and read back by PIL).
    fig.set_dpi(DPI)
    fig.set_facecolor("white")
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
    plt.close(fig)
    # 256 colours are plenty for flat charts and shrink the file about threefold.
    if quantize:
        image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    # zlib's default level: 1-2% larger than optimize=True (which tries level 9), ten times faster
    image.save(out, format="PNG", compress_level=6)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def short(text: str, limit: int = LABEL_CHARS) -> str:
    """A label cut to ``limit`` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def wer_by_cohort(
    cohorts: Sequence[dict],
    bottom: Sequence[str],
    top: Sequence[str],
    overall_wer: float | None,
    overall_label: str = "overall WER",
) -> str | None:
    """Horizontal bars of cohort WER (%) with 95% interval whiskers, rank 1 at the top.

    ``cohorts`` are the JSON cohort records (suppressed ones are skipped: they carry no numbers);
    the bottom cohort(s) are red, the top blue, and the overall WER is a dashed reference line.
    """
    rows = [c for c in cohorts if not c.get("suppressed") and c.get("wer") is not None]
    if not rows:
        return None
    rows = sorted(rows, key=lambda c: c["rank"])
    with plt.rc_context(FONT):
        n = len(rows)
        fig, ax = plt.subplots(figsize=(8.6, 1.25 + 0.3 * n))
        y = list(range(n))[::-1]
        values = [100 * c["wer"] for c in rows]
        colours = [BOTTOM if c["id"] in bottom else TOP if c["id"] in top else OTHER for c in rows]
        ax.barh(y, values, height=0.62, color=colours, alpha=0.9, zorder=2)
        lows = [100 * c["wer_ci"][0] if c["wer_ci"][0] is not None else v for c, v in zip(rows, values)]
        highs = [100 * c["wer_ci"][1] if c["wer_ci"][1] is not None else v for c, v in zip(rows, values)]
        err = [[max(v - lo, 0) for v, lo in zip(values, lows)], [max(hi - v, 0) for v, hi in zip(values, highs)]]
        ax.errorbar(values, y, xerr=err, fmt="none", ecolor=INK, elinewidth=1, capsize=3, zorder=3)
        right = max(highs + values)
        for yy, v, hi in zip(y, values, highs):
            ax.text(
                max(hi, v) + right * 0.012,
                yy,
                f"{v:.2f}%",
                va="center",
                ha="left",
                fontsize=8,
                color=INK,
                zorder=5,
                bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85},
            )
        handles = [
            Patch(color=BOTTOM, label="bottom cohort"),
            Patch(color=TOP, label="top cohort"),
            Patch(color=OTHER, label="other cohorts"),
            Line2D([], [], color=INK, lw=1, marker="|", markersize=8, label="95% interval"),
        ]
        if overall_wer is not None:
            ax.axvline(100 * overall_wer, color=INK, ls="--", lw=1, zorder=4)
            handles.append(Line2D([], [], color=INK, ls="--", lw=1, label=f"{overall_label} {100 * overall_wer:.2f}%"))
            right = max(right, 100 * overall_wer)
        ax.set_xlim(0, right * 1.14 if right > 0 else 1)
        ax.set_yticks(y, [short(c["id"]) for c in rows])
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_xlabel("WER (% of reference words)")
        ax.grid(axis="x", color=GRID, zorder=0)
        ax.spines[["top", "right"]].set_visible(False)
        _legend_above(ax, handles)
        fig.tight_layout()
        return png_data_uri(fig)


def projection_view(
    projection: dict,
    cohort_ids: Sequence[str],
    hidden: set[int],
    bottom: Sequence[str],
    top: Sequence[str],
    wer_by_id: dict[str, float | None],
) -> str | None:
    """The 2-D PCA view of the clusters from aggregates only: each cluster as ellipses of one and
    two standard deviations around its mean, in its colour, labelled with its id.

    ``hidden`` holds the indices of suppressed clusters, which are not drawn.
    """
    from matplotlib.patches import Ellipse

    if not projection or not projection.get("centres"):
        return None
    shown = [
        (index, centre, cov)
        for index, (centre, cov) in enumerate(zip(projection["centres"], projection.get("covariances") or []))
        if index not in hidden and index < len(cohort_ids) and centre is not None and cov is not None
    ]
    if not shown:
        return None
    variance = projection.get("explained_variance_pct") or [None, None]
    with plt.rc_context(FONT):
        fig, ax = plt.subplots(figsize=(8.6, 5.6))
        handles, extent, labels = [], [], []
        for index, centre, cov in shown:
            cid = cohort_ids[index]
            colour = CLUSTER_COLOURS[index % len(CLUSTER_COLOURS)]
            values, vectors = np.linalg.eigh(np.asarray(cov, dtype=float))
            angle = math.degrees(math.atan2(vectors[1, 1], vectors[0, 1]))
            for sd, alpha in ((2, 0.12), (1, 0.28)):
                width, height = 2 * sd * np.sqrt(np.maximum(values[::-1], 0))
                ax.add_patch(
                    Ellipse(centre, width, height, angle=angle, facecolor=colour, edgecolor=colour, alpha=alpha, lw=1)
                )
                extent += [
                    (centre[0] - width / 2, centre[1] - height / 2),
                    (centre[0] + width / 2, centre[1] + height / 2),
                ]
            single_top = len(top) == 1  # a "rest" top cohort is everyone else: not worth a label each
            role = " (bottom)" if cid in bottom else " (top)" if cid in top and single_top else ""
            labels.append((centre, short(cid, 18) + role, BOTTOM if cid in bottom else TOP if role else colour, role))
            wer = wer_by_id.get(cid)
            handles.append(
                Patch(color=colour, label=f"{short(cid, 18)}  {100 * wer:.2f}%" if wer is not None else short(cid, 18))
            )
        xs, ys = zip(*extent)
        ax.set_xlim(min(xs), max(xs))
        ax.set_ylim(min(ys), max(ys))
        _place_cluster_labels(ax, labels, (max(xs) - min(xs), max(ys) - min(ys)))
        ax.set_xlabel(f"PC1 ({variance[0]:.1f}% of variance)" if variance[0] is not None else "PC1")
        ax.set_ylabel(
            f"PC2 ({variance[1]:.1f}% of variance)" if len(variance) > 1 and variance[1] is not None else "PC2"
        )
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(
            handles=handles,
            title="cluster  WER",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            frameon=False,
            fontsize=8,
            title_fontsize=8,
        )
        ax.set_title(
            "ellipses: 1 and 2 standard deviations of each cluster's speakers (aggregates only)",
            fontsize=8,
            color=MUTED,
        )
        fig.tight_layout()
        return png_data_uri(fig)


WORSE = "#b42318"
BETTER = "#15803d"


def _label_fits(x: float, y: float, at_centre: bool, placed: list[tuple[float, float]], step: float) -> bool:
    """Whether a label at (x, y) (axes fractions) stays inside the axes (unless it is at its centre)
    and clear of the labels already placed."""
    inside = at_centre or step / 2 <= y <= 1 - step / 2
    return inside and not any(abs(x - px) < 0.16 and abs(y - py) < step for px, py in placed)


def _place_cluster_labels(ax, labels: list, span: tuple[float, float]) -> None:
    """Write each cluster's label at its centre, roles (bottom, top) first with a heavier box; a
    label that would sit on one already placed moves down or up, a line at a time, to the nearest
    clear place inside the axes, with a leader line (with 20+ clusters the centres crowd)."""
    placed: list[tuple[float, float]] = []
    step = 0.055  # of the axes' height: about one line of 8-point text
    shifts = [0] + [sign * k for k in range(1, 13) for sign in (1, -1)]
    for centre, text, edge, role in sorted(labels, key=lambda label: not label[3]):
        x, y = (centre[0] - ax.get_xlim()[0]) / span[0], (centre[1] - ax.get_ylim()[0]) / span[1]
        shift = next((k for k in shifts if _label_fits(x, y - k * step, k == 0, placed, step)), 0)
        placed.append((x, y - shift * step))
        ax.annotate(
            text,
            xy=centre,
            xytext=(0, -shift * step * ax.bbox.height),
            textcoords="offset pixels",
            ha="center",
            va="center",
            fontsize=8,
            fontweight="bold" if role else "normal",
            color=INK,
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": edge, "lw": 2 if role else 1, "alpha": 0.92},
            arrowprops={"arrowstyle": "-", "color": edge, "lw": 0.8} if shift else None,
            zorder=5 if role else 4,
        )


def change_by_cohort(cohorts: Sequence[dict]) -> str | None:
    """Each cohort's change in WER (new - baseline, percentage points) with its 95% interval:
    red when the new model is worse, green when better, grey when there is no evidence."""
    rows = [c for c in cohorts if not c.get("suppressed") and c.get("change_points") is not None]
    if not rows:
        return None
    with plt.rc_context(FONT):
        n = len(rows)
        fig, ax = plt.subplots(figsize=(8.6, 1.25 + 0.3 * n))
        y = list(range(n))[::-1]
        values = [c["change_points"] for c in rows]
        colours = [WORSE if c["verdict"] == "worse" else BETTER if c["verdict"] == "better" else OTHER for c in rows]
        ax.barh(y, values, height=0.62, color=colours, alpha=0.9, zorder=2)
        lows = [c["change_ci"][0] if c["change_ci"][0] is not None else v for c, v in zip(rows, values)]
        highs = [c["change_ci"][1] if c["change_ci"][1] is not None else v for c, v in zip(rows, values)]
        err = [[max(v - lo, 0) for v, lo in zip(values, lows)], [max(hi - v, 0) for v, hi in zip(values, highs)]]
        ax.errorbar(values, y, xerr=err, fmt="none", ecolor=INK, elinewidth=1, capsize=3, zorder=3)
        ax.axvline(0, color=INK, lw=1, zorder=4)
        span = max(max(abs(v) for v in lows + highs + values), 0.5)
        ax.set_xlim(-span * 1.15, span * 1.15)
        ax.set_yticks(y, [short(c["id"]) for c in rows])
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_xlabel("change in WER, new - baseline (percentage points)")
        ax.grid(axis="x", color=GRID, zorder=0)
        ax.spines[["top", "right"]].set_visible(False)
        handles = [
            Patch(color=WORSE, label="worse"),
            Patch(color=BETTER, label="better"),
            Patch(color=OTHER, label="no evidence"),
            Line2D([], [], color=INK, lw=1, marker="|", markersize=8, label="95% interval"),
        ]
        _legend_above(ax, handles)
        fig.tight_layout()
        return png_data_uri(fig)


def _legend_above(ax, handles: list) -> None:
    """One row of legend entries centred above the plot, without a frame."""
    ax.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=len(handles),
        frameon=False,
        fontsize=8,
        handlelength=1.4,
        columnspacing=1.2,
    )
