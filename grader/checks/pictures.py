"""PNG pictures for feedback: what a trained model predicts next to the truth, and the loss
curves. Rendered in the parent with matplotlib (Agg), from plain arrays."""

from __future__ import annotations

import io


def _figure(rows: int, cols: int, size=(2.0, 2.0)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    return plt, fig, axes


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def prediction_grid(
    columns: dict[str, list], curves: dict[str, list[float]] | None = None, cmap=None
) -> bytes:
    """One column per entry of `columns` (a title and a list of HxW or HxWx3 images, one per
    row), plus an extra column with the loss curves when given."""
    titles = list(columns)
    rows = max(len(v) for v in columns.values())
    extra = 1 if curves else 0
    plt, fig, axes = _figure(rows, len(titles) + extra)
    for c, title in enumerate(titles):
        for r in range(rows):
            ax = axes[r][c]
            ax.axis("off")
            if r < len(columns[title]):
                image = columns[title][r]
                ax.imshow(
                    image,
                    cmap=cmap if getattr(image, "ndim", 3) == 2 else None,
                    vmin=0,
                    vmax=1 if getattr(image, "ndim", 3) == 3 else None,
                    interpolation="nearest",
                )
            if r == 0:
                ax.set_title(title, fontsize=9)
    if curves:
        for r in range(rows):
            axes[r][-1].axis("off")
        ax = fig.add_subplot(1, len(titles) + extra, len(titles) + extra)
        for label, values in curves.items():
            ax.plot(range(1, len(values) + 1), values, label=label)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("training loss", fontsize=8)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    return _png(plt, fig)
