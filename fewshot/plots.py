"""The book's figures: digit grids, episodes, 2-D embedding maps, loss curves.

Every digit has one colour across the whole book (:data:`DIGIT_COLORS`), so maps from different
chapters can be compared at a glance.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .data import MNIST_MEAN, MNIST_STD

DIGIT_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
# Colours with other meanings stay clear of the digit colours: pairs are navy (positive, same
# class) and gold (negative); methods in a training curve are black, told apart by line style.
PAIR_COLORS = {"positive": "#1a237e", "negative": "#e6b400"}
METHOD_STYLES = [dict(color="black", linestyle=ls, marker=mk)
                 for ls, mk in (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))]
SEEN_MARKER, UNSEEN_MARKER = "o", "x"  # plot_embeddings(..., unseen=...)


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """Normalised ``(N, 1, 28, 28)`` → 0–1 pixels ``(N, 28, 28)`` for ``imshow``."""
    return (images.detach().cpu().float() * MNIST_STD + MNIST_MEAN).clamp(0, 1).squeeze(1).numpy()


def show_images(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 10,
                size: float = 1.0, title: str | None = None) -> Figure:
    """A grid of digits, optionally titled one by one."""
    pixels = to_pixels(images)
    n = len(pixels)
    if n == 0:
        raise ValueError("no images to show")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * (1.25 if titles else 1)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(pixels[i], cmap="gray_r", vmin=0, vmax=1)
            if titles:
                ax.set_title(titles[i], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_embeddings(embeddings: torch.Tensor, labels: torch.Tensor, ax: Axes | None = None,
                    title: str | None = None, max_points: int = 3000, legend: bool = True,
                    ticks: bool = False, unseen: Sequence[int] = ()) -> Axes:
    """Scatter a 2-D embedding ``(N, 2)`` coloured by digit (at most ``max_points``, evenly spaced).

    ``ticks=True`` keeps the axis scale visible (to compare the size of maps). Digits in ``unseen``
    are drawn as crosses (:data:`UNSEEN_MARKER`) and labelled "(unseen)" in the legend; the others
    as dots. The legend sits outside the axes, on the right (for a legend below a whole figure,
    pass ``legend=False`` and call :func:`digit_legend`)."""
    emb = torch.as_tensor(embeddings).detach().cpu().float()
    labels = torch.as_tensor(labels).cpu()
    if emb.ndim != 2 or emb.shape[1] != 2:
        raise ValueError(f"plot_embeddings needs (N, 2) embeddings, got {tuple(emb.shape)}")
    if len(emb) != len(labels):
        raise ValueError(f"{len(emb)} embeddings for {len(labels)} labels")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    keep = torch.linspace(0, len(emb) - 1, min(max_points, len(emb))).long()
    emb, labels = emb[keep], labels[keep]
    unseen = {int(d) for d in unseen}
    for digit in labels.unique().tolist():
        m = labels == digit
        new = digit in unseen
        ax.scatter(emb[m, 0], emb[m, 1], s=10 if new else 4, alpha=0.6,
                   marker=UNSEEN_MARKER if new else SEEN_MARKER, linewidths=0.8 if new else 0,
                   color=DIGIT_COLORS[digit % 10], label=f"{digit} (unseen)" if new else str(digit))
    if legend:  # outside the data, to the right of the map
        ax.legend(markerscale=2.5, fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  frameon=False, handletextpad=0.2, borderaxespad=0.0)
    if title:
        ax.set_title(title, fontsize=10)
    if not ticks:
        ax.set_xticks([])
        ax.set_yticks([])
    return ax


def digit_legend(fig: Figure, digits: Sequence[int] = range(10), unseen: Sequence[int] = ()) -> None:
    """One legend for a whole figure, below the panels: a marker per digit in its colour."""
    unseen = {int(d) for d in unseen}
    handles = [plt.Line2D([], [], linestyle="", markersize=7,
                          marker=UNSEEN_MARKER if d in unseen else SEEN_MARKER,
                          color=DIGIT_COLORS[d % 10], label=str(d)) for d in digits]
    title = "digit (crosses: unseen)" if unseen else "digit"
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=10,
               frameon=False, handletextpad=0.1, columnspacing=1.0, title=title,
               title_fontsize=10, bbox_to_anchor=(0.5, 0.0))


def plot_maps(maps: dict[str, tuple[torch.Tensor, torch.Tensor]], size: float = 3.4,
              ticks: bool = False, ncols: int | None = None, width: float = 7.0) -> Figure:
    """2-D maps in a grid, at most three per row, with one shared digit legend below them.

    ``maps`` is ``{"title": (embeddings (N, 2), labels (N,)), …}``. ``ncols`` defaults to the
    number of maps, or 2 for four maps and 3 for more; a panel is ``size`` inches square but the
    figure is at most ``width`` inches wide (the book's column)."""
    n = len(maps)
    if n == 0:
        raise ValueError("plot_maps needs at least one map")
    ncols = ncols or (n if n <= 3 else 2 if n == 4 else 3)
    nrows = -(-n // ncols)
    side = min(size, width / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(side * ncols, side * nrows + 0.6),
                             squeeze=False)
    digits: set[int] = set()
    for ax, (title, (emb, labels)) in zip(axes.flat, maps.items()):
        plot_embeddings(emb, labels, ax=ax, title=title, legend=False, ticks=ticks)
        digits |= set(torch.as_tensor(labels).unique().tolist())
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0.6 / (side * nrows + 0.6), 1, 1))
    digit_legend(fig, sorted(digits))
    return fig


# What each recorded metric measures, in the words the book uses for it. The validation P@1 ranks
# each validation image among the *other validation images*; it differs from the test P@1 of the
# tables (test queries against the training references), so the two never share a label.
METRIC_LABELS = {"val_precision_at_1": "validation P@1\n(among the validation images)"}


def plot_history(histories: dict[str, "object"], metric: str = "val_precision_at_1") -> Figure:
    """Training loss and a validation metric per epoch, for one or more ``History`` objects
    (one line style per history, in black: colours are kept for digits and pairs). The metric's
    axis is labelled from :data:`METRIC_LABELS`."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7, 3.0))
    for style, (name, h) in zip(itertools.cycle(METHOD_STYLES), histories.items()):
        epochs = np.arange(1, len(h.loss) + 1)
        ax1.plot(epochs, h.loss, markersize=4, label=name, **style)
        if metric in h.metrics:
            ax2.plot(epochs, h.metrics[metric], markersize=4, label=name, **style)
    ax1.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax2.set(xlabel="epoch", ylabel=METRIC_LABELS.get(metric, metric.replace("_", " ")),
            title="validation")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax2.legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_episode(images: torch.Tensor, episode: "object", size: float = 0.9, max_query: int = 5,
                 grid: tuple[int, int] | None = None) -> Figure:
    """One episode: a row per class (labelled with its digit), its K support images, then (after a
    gap) some query images.

    ``grid=(rows, columns)`` draws on a fixed grid of at least the episode's size, leaving the rest
    blank, so that episodes of different N and K give figures of the same size (widget frames)."""
    n, k = len(episode.classes), int((episode.support_y == 0).sum())
    q = min(max_query, int((episode.query_y == 0).sum()))
    ncols = k + 1 + q
    rows, cols = grid or (n, ncols)
    if rows < n or cols < ncols:
        raise ValueError(f"grid={grid} is smaller than the episode's {n} rows × {ncols} columns")
    fig, all_axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows * 1.1),
                                 squeeze=False)
    for ax in all_axes.flat:
        ax.axis("off")
    axes = all_axes[:n, :ncols]
    for ax in axes.flat:
        ax.axis("on")
    support = to_pixels(images[episode.support]).reshape(n, k, 28, 28)
    query = to_pixels(images[episode.query]).reshape(n, -1, 28, 28)
    for r in range(n):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < k:
                ax.imshow(support[r, c], cmap="gray_r", vmin=0, vmax=1)
                for spine in ax.spines.values():
                    spine.set_color(DIGIT_COLORS[int(episode.classes[r]) % 10])
                    spine.set_linewidth(2)
            elif c > k:
                ax.imshow(query[r, c - k - 1], cmap="gray_r", vmin=0, vmax=1)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(f"digit {int(episode.classes[r])}", fontsize=9)
    axes[0, 0].set_title("support", fontsize=10, loc="left")
    axes[0, k + 1].set_title("query", fontsize=10, loc="left")
    fig.suptitle(f"{n}-way {k}-shot episode", fontsize=11)
    fig.tight_layout()
    return fig
