"""Pre-rendered slider frames: Stack + jslink with ipywidgets 8, a Python fallback for ipywidgets 7."""

from __future__ import annotations

import re

import ipywidgets as widgets
from ipywidgets.widgets.widget_link import Link
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import fewshot.widgets as fw  # noqa: E402
from fewshot.widgets import figure_png, slider_frames  # noqa: E402

DPI = 20


def render(**values) -> plt.Figure:
    """A tiny figure whose pixels depend on the values (so every frame differs)."""
    fig = plt.figure(figsize=(1, 1))
    fig.text(0.1, 0.5, " ".join(f"{v}" for v in values.values()), fontsize=14)
    return fig


def png(**values) -> bytes:
    return figure_png(render(**values), dpi=DPI)


def links() -> list:
    """Every widget Link alive in the kernel's registry."""
    from ipywidgets.widgets import widget as widget_module

    registry = getattr(widget_module, "_instances", None)
    if registry is None:  # ipywidgets 7
        registry = widgets.Widget.widgets
    return [w for w in list(registry.values()) if isinstance(w, Link)]


def linked(source: widgets.Widget, target: widgets.Widget) -> bool:
    return any(link.source == (source, "index") and link.target == (target, "selected_index")
               for link in links())


needs_stack = pytest.mark.skipif(not fw.HAS_STACK, reason="ipywidgets < 8 has no Stack")


@needs_stack
def test_one_slider_stack_and_jslink() -> None:
    values = [0.5, 1.0, 2.0]
    box = slider_frames(lambda margin: render(margin=margin), {"margin": values}, dpi=DPI)
    assert isinstance(box, widgets.VBox)
    slider, stack = box.children
    assert isinstance(slider, widgets.SelectionSlider) and slider.description == "margin"
    assert slider.index == 0 and len(slider.options) == 3
    assert isinstance(stack, widgets.Stack) and stack.selected_index == 0
    assert len(stack.children) == len(values)
    assert [frame.value for frame in stack.children] == [png(margin=v) for v in values]
    assert linked(slider, stack)


@needs_stack
def test_two_sliders_nested_stacks_and_jslinks() -> None:
    sliders = {"a": [1, 2], "b": ["x", "y", "z"]}
    box = slider_frames(lambda a, b: render(a=a, b=b), sliders, dpi=DPI)
    assert isinstance(box, widgets.VBox)
    sa, sb, outer = box.children
    assert (sa.description, sb.description) == ("a", "b")
    assert isinstance(outer, widgets.Stack) and len(outer.children) == 2
    assert sum(len(row.children) for row in outer.children) == 6  # one frame per combination
    for i, row in enumerate(outer.children):
        assert isinstance(row, widgets.Stack) and len(row.children) == 3
        assert [f.value for f in row.children] == [png(a=sliders["a"][i], b=b) for b in sliders["b"]]
        assert linked(sb, row)
    assert linked(sa, outer)
    assert not linked(sb, outer) and not linked(sa, outer.children[0])


@needs_stack
def test_toggle_buttons_for_a_categorical_choice() -> None:
    sliders = {"kind": ["pair", "triplet"], "example": [0, 1, 2]}
    box = slider_frames(lambda kind, example: render(kind=kind, example=example), sliders, dpi=DPI,
                        toggles=["kind"])
    kind, example, outer = box.children
    assert isinstance(kind, widgets.ToggleButtons) and kind.description == "kind"
    assert [label for label, _ in kind.options] == ["pair", "triplet"] and kind.index == 0
    assert isinstance(example, widgets.SelectionSlider)  # an ordered value stays a slider
    assert linked(kind, outer) and all(linked(example, row) for row in outer.children)
    assert [f.value for f in outer.children[1].children] == [png(kind="triplet", example=e)
                                                              for e in sliders["example"]]


def test_toggles_must_name_controls() -> None:
    for bad in (["colour"], "kind"):
        with pytest.raises(ValueError, match=re.escape(f"toggles={bad!r}: expected a list of names among ['kind']")):
            slider_frames(render, {"kind": [1, 2]}, toggles=bad)


def test_controls_shrink_to_a_narrow_column() -> None:
    box = slider_frames(lambda a, b: render(a=a, b=b), {"a": [1, 2], "b": [3]}, dpi=DPI, toggles=["b"])
    assert all(control.layout.max_width == "100%" for control in box.children[:2])


def test_ipywidgets7_fallback_swaps_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fw, "HAS_STACK", False)
    box = slider_frames(lambda n: render(n=n), {"n": [1, 2, 3]}, dpi=DPI)
    assert isinstance(box, widgets.VBox)
    slider, image = box.children
    assert isinstance(image, widgets.Image)
    assert image.value == png(n=1)
    slider.index = 2
    assert image.value == png(n=3)
    slider.index = 0
    assert image.value == png(n=1)


def test_ipywidgets7_fallback_two_sliders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fw, "HAS_STACK", False)
    box = slider_frames(lambda a, b: render(a=a, b=b), {"a": [1, 2], "b": [3, 4]}, dpi=DPI)
    sa, sb, image = box.children
    assert image.value == png(a=1, b=3)
    sb.index = 1
    assert image.value == png(a=1, b=4)
    sa.index = 1
    assert image.value == png(a=2, b=4)


def test_ipywidgets7_fallback_toggle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fw, "HAS_STACK", False)
    box = slider_frames(lambda kind: render(kind=kind), {"kind": ["a", "b"]}, dpi=DPI, toggles=["kind"])
    toggle, image = box.children
    assert isinstance(toggle, widgets.ToggleButtons)
    toggle.index = 1
    assert image.value == png(kind="b")


@pytest.mark.parametrize("sliders", [{}, {"a": [1], "b": [1], "c": [1]}])
def test_one_or_two_sliders_only(sliders: dict) -> None:
    with pytest.raises(ValueError, match="one or two"):
        slider_frames(render, sliders)


def test_empty_values() -> None:
    with pytest.raises(ValueError, match="'b'"):
        slider_frames(render, {"a": [1], "b": []})


def test_render_must_return_a_figure() -> None:
    with pytest.raises(TypeError, match="NoneType"):
        slider_frames(lambda a: None, {"a": [1]})
    fig, ax = plt.subplots()
    with pytest.raises(TypeError, match="Axes"):
        slider_frames(lambda a: ax, {"a": [1]})
    plt.close(fig)
