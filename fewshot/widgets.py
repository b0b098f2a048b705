"""Widgets that also work in the static book, where there is no kernel.

The rendered book has no Python behind it, so an ``interact`` callback does nothing there. Instead we
render every frame in Python up front (one image per slider position) and let the *browser* switch
between them: an ipywidgets 8 ``Stack`` of images whose ``selected_index`` is ``jslink``-ed to the
control's ``index``. A control is a slider (an ordered value: a margin, a count) or a row of toggle
buttons (a categorical choice: a kind of example); both have an ``index``. The widget state saved
when the notebook is executed carries the frames into the HTML page.

With ipywidgets 7 (Colab) there is no ``Stack``; the same call then returns a live widget whose
slider swaps the image from Python, which works wherever a kernel runs.

Keep frame counts small: every frame is a PNG inside the page.
"""

from __future__ import annotations

import io
import itertools
from typing import Any, Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

HAS_STACK = hasattr(widgets, "Stack")  # ipywidgets ≥ 8


def figure_png(fig: Figure, dpi: int = 80, tight: bool = True) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it.

    ``tight=True`` crops the white border (the size then depends on what is drawn);
    ``tight=False`` keeps the figure's own size, so equal ``figsize`` gives equal pixels."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return buf.getvalue()


def _render(render: Callable[..., Figure], kwargs: dict[str, Any], dpi: int,
            tight: bool = True) -> widgets.Image:
    fig = render(**kwargs)
    if not isinstance(fig, Figure):
        raise TypeError(f"render(**{kwargs}) must return a matplotlib Figure, got {type(fig).__name__}")
    return widgets.Image(value=figure_png(fig, dpi, tight), format="png")


def _control(name: str, values: Sequence[Any], toggle: bool) -> widgets.Widget:
    """A slider, or toggle buttons, over ``values``; its ``index`` picks the frame."""
    options = [(str(v), i) for i, v in enumerate(values)]
    style = {"description_width": "initial"}
    if toggle:
        return widgets.ToggleButtons(options=options, value=0, description=name, style=style,
                                     layout=widgets.Layout(max_width="100%"))
    return widgets.SelectionSlider(options=options, value=0, description=name, continuous_update=True,
                                   style=style, layout=widgets.Layout(width="420px", max_width="100%"))


def slider_frames(render: Callable[..., Figure], sliders: dict[str, Sequence[Any]], dpi: int = 80,
                  tight: bool = True, toggles: Sequence[str] = ()) -> widgets.Widget:
    """One or two controls over pre-rendered frames: ``render(**values) → Figure`` for every combination.

    Args:
        render: draws one frame; called once per combination of values, with keyword arguments
            named like the controls.
        sliders: ``{"name": [value, …]}``, one or two entries, each with at least one value.
        dpi: resolution of the frames.
        tight: crop each frame's white border. Pass ``False`` (with a fixed ``figsize`` in
            ``render``) when frames differ in what they draw, so every frame has the same size.
        toggles: names in ``sliders`` that are a categorical choice rather than an ordered value:
            those are shown as toggle buttons (one per value) instead of a slider.

    Returns:
        A widget: the controls above the image. In the static book the browser switches frames.

    Example:
        >>> slider_frames(lambda margin: plot_loss(margin), {"margin": [0.5, 1.0, 2.0]})  # doctest: +SKIP
        >>> slider_frames(draw, {"kind": ["pair", "triplet"], "i": [0, 1]}, toggles=["kind"])  # doctest: +SKIP
    """
    if not 1 <= len(sliders) <= 2:
        raise ValueError(f"slider_frames takes one or two sliders, got {list(sliders)}")
    for name, values in sliders.items():
        if len(values) == 0:
            raise ValueError(f"slider {name!r} has no values")
    if isinstance(toggles, str) or any(t not in sliders for t in toggles):
        raise ValueError(f"toggles={toggles!r}: expected a list of names among {list(sliders)}")
    names = list(sliders)
    controls = {n: _control(n, sliders[n], toggle=n in toggles) for n in names}
    frames = {combo: _render(render, {n: sliders[n][i] for n, i in zip(names, combo)}, dpi, tight)
              for combo in itertools.product(*(range(len(sliders[n])) for n in names))}
    if HAS_STACK:
        if len(names) == 1:
            view = widgets.Stack([frames[(i,)] for i in range(len(sliders[names[0]]))], selected_index=0)
            widgets.jslink((controls[names[0]], "index"), (view, "selected_index"))
        else:
            first, second = names
            rows = []
            for i in range(len(sliders[first])):
                row = widgets.Stack([frames[(i, j)] for j in range(len(sliders[second]))], selected_index=0)
                widgets.jslink((controls[second], "index"), (row, "selected_index"))
                rows.append(row)
            view = widgets.Stack(rows, selected_index=0)
            widgets.jslink((controls[first], "index"), (view, "selected_index"))
        return widgets.VBox([*controls.values(), view])

    # ipywidgets 7: no Stack; swap the image from Python (needs a live kernel, as in Colab)
    image = widgets.Image(value=next(iter(frames.values())).value, format="png")

    def update(_: object = None) -> None:
        image.value = frames[tuple(controls[n].index for n in names)].value

    for control in controls.values():
        control.observe(update, names="index")
    return widgets.VBox([*controls.values(), image])
