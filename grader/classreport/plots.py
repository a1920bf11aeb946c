"""The class report's plots, drawn with matplotlib as inline SVG: the page stays one file that
works offline, and the text in the plots stays text. Every plot reads without colour: black
outlines, hatching and marker shapes tell series apart, and counts are written on the bars."""

from __future__ import annotations

import io
import math
import re

# Hatches and markers for series, in order (no series is told by colour alone).
HATCHES = ("", "///", "...", "xx", "\\\\\\", "++")
MARKERS = {"graded": "o", "complete": "o", "error": "x", "timeout": "^"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text: smaller, searchable, sharp
            "svg.hashsalt": "class-report",  # the same ids, so the same page, every run
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "hatch.linewidth": 0.6,
        }
    )
    return plt


def _svg(plt, fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # the XML prolog and DOCTYPE do not belong inside HTML
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)
    # Scale with the page: keep the viewBox, let CSS set the size.
    return re.sub(
        r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 class="plot" role="img"', text, count=1
    )


def score_histograms(editions: list[dict]) -> str:
    """One histogram of total scores per edition (`{"edition", "max_score", "scores"}`), the
    count written on each bar."""
    plt = _pyplot()
    cols = min(2, max(1, len(editions)))
    rows = math.ceil(len(editions) / cols) if editions else 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat[len(editions) :]:
        ax.set_visible(False)
    for ax, edition in zip(axes.flat, editions):
        top = float(edition["max_score"]) or max(edition["scores"] or [1.0]) or 1.0
        bins = _bins(top)
        counts, edges, bars = ax.hist(
            [min(max(s, 0.0), top) for s in edition["scores"]],
            bins=bins,
            color="#d9d9d9",
            edgecolor="black",
            linewidth=0.7,
        )
        for count, bar in zip(counts, bars):
            if count:
                ax.annotate(
                    f"{int(count)}",
                    (bar.get_x() + bar.get_width() / 2, count),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 1),
                    textcoords="offset points",
                )
        ax.set_title(f"{edition['edition']} ({len(edition['scores'])} submissions)", fontsize=9)
        ax.set_xlabel(f"score out of {top:g}")
        ax.set_ylabel("submissions")
        ax.set_xlim(0, top)
        ax.set_ylim(0, max(counts.max() if len(counts) else 1, 1) * 1.2)
        ax.yaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return _svg(plt, fig)


def _bins(top: float) -> list[float]:
    """Whole points when there are few, else ten equal bins."""
    if top <= 30 and float(top).is_integer():
        return [x - 0.5 for x in range(int(top) + 2)]
    return [top * i / 10 for i in range(11)]


def part_pass_rates(parts: list[dict]) -> str:
    """Per part, two bars: the share of submissions that passed all its checks (hatched) and
    the share of its points the class earned (plain), each labelled with its percentage."""
    plt = _pyplot()
    labels = [p["part"] for p in parts]
    height = max(1.6, 0.42 * len(parts) + 0.8)
    fig, ax = plt.subplots(figsize=(6.4, height))
    y = list(range(len(parts)))
    series = (
        ("all checks passed", "complete_rate", HATCHES[1], "white"),
        ("share of the points", "points_rate", HATCHES[0], "#bdbdbd"),
    )
    for k, (name, key, hatch, face) in enumerate(series):
        values = [100 * p[key] for p in parts]
        offsets = [v - 0.2 + 0.4 * k for v in y]
        ax.barh(
            offsets,
            values,
            height=0.38,
            color=face,
            edgecolor="black",
            hatch=hatch,
            linewidth=0.7,
            label=name,
        )
        for offset, value in zip(offsets, values):
            ax.annotate(
                f"{value:.0f}%",
                (value, offset),
                va="center",
                fontsize=8,
                xytext=(3, 0),
                textcoords="offset points",
            )
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 112)
    ax.set_xlabel("% of the submissions graded on the part")
    ax.legend(loc="lower right", fontsize=8, frameon=False, bbox_to_anchor=(1.0, 1.0), ncol=2)
    fig.tight_layout()
    return _svg(plt, fig)


def time_and_memory(submissions: list[dict]) -> str:
    """Seconds to grade against the sandbox's peak memory, one marker shape per outcome."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    for status, marker in (("graded", "o"), ("timeout", "^"), ("error", "x")):
        points = [
            (s["seconds"], s["peak_memory_mib"])
            for s in submissions
            if s["peak_memory_mib"] is not None and _outcome(s) == status
        ]
        if points:
            xs, ys = zip(*points)
            ax.scatter(
                xs,
                ys,
                marker=marker,
                s=22,
                facecolors="none" if marker == "o" else "black",
                edgecolors="black",
                linewidths=0.8,
                label={
                    "graded": "graded",
                    "timeout": "a check ran out of time",
                    "error": "could not be graded",
                }[status],
            )
    ax.set_xlabel("seconds to grade")
    ax.set_ylabel("peak MiB (sandbox)")
    ax.set_xlim(left=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return _svg(plt, fig)


def _outcome(submission: dict) -> str:
    if submission["error"]:
        return "error"
    return "timeout" if submission["timed_out"] else "graded"
