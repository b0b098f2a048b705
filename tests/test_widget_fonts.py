"""The widgets' icon fonts: served from every place the widget bundle may ask for them.

A browser check alone can pass by luck (which ``@font-face`` rule wins depends on module load order),
so these tests build a tiny fake site around the real, served ``embed-amd.js`` and check the build
extension and ``tests/check_html.py`` against it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from local_modules import load

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "_extra" / "_static" / "ipywidgets" / "embed-amd.js"
STATE = '<script type="application/vnd.jupyter.widget-state+json">{}</script>'



widget_fonts = load("_ext/widget_fonts.py", "widget_fonts")
check_html = load("tests/check_html.py", "check_html")


def fake_site(tmp_path: Path) -> Path:
    """A built site: the served bundle, one widget page in book/, one page without widgets."""
    out = tmp_path / "html"
    (out / "_static" / "ipywidgets").mkdir(parents=True)
    shutil.copyfile(BUNDLE, out / "_static" / "ipywidgets" / "embed-amd.js")
    (out / "book").mkdir()
    (out / "book" / "widgets.html").write_text(f"<html>{STATE}</html>")
    (out / "plain.html").write_text("<html>no widgets</html>")
    return out


def test_the_bundle_asks_two_places_for_six_vendored_fonts() -> None:
    text = BUNDLE.read_text()
    assert widget_fonts.module_dirs(text) == ["@jupyter-widgets/", "@jupyter-widgets/html-manager/dist/"]
    fonts = widget_fonts.font_names(text)
    assert len(fonts) == 6 and {f.rsplit(".", 1)[1] for f in fonts} == {"woff", "woff2"}
    assert all((widget_fonts.FONTS / f).exists() for f in fonts), "vendor every font the bundle names"


def test_copy_fonts_serves_both_places_next_to_widget_pages_only(tmp_path: Path) -> None:
    out = fake_site(tmp_path)
    fonts = widget_fonts.font_names(BUNDLE.read_text())
    written = widget_fonts.copy_fonts(out)
    assert written == 2 * (len(fonts) + 1)  # two places, the fonts and their licence
    for place in ["@jupyter-widgets", "@jupyter-widgets/html-manager/dist"]:
        for font in fonts:
            copy = out / "book" / place / font
            assert copy.read_bytes() == (widget_fonts.FONTS / font).read_bytes()
    assert not (out / "@jupyter-widgets").exists(), "the root page has no widgets"


def test_copy_fonts_refuses_a_bundle_naming_fonts_that_are_not_vendored(tmp_path: Path) -> None:
    out = fake_site(tmp_path)
    bundle = out / "_static" / "ipywidgets" / "embed-amd.js"
    bundle.write_text(bundle.read_text() + 'x.p+"0123456789abcdef0123.woff2"')
    with pytest.raises(FileNotFoundError, match="0123456789abcdef0123.woff2"):
        widget_fonts.copy_fonts(out)


def test_check_html_finds_a_font_missing_from_either_place(tmp_path: Path, monkeypatch) -> None:
    out = fake_site(tmp_path)
    monkeypatch.setattr(check_html, "toc_pages", lambda: ["plain", "book/widgets"])
    problems = check_html.check_widget_fonts(out)
    assert len(problems) == 1 and "widgets.html" in problems[0]
    assert problems[0].count(".woff") == 12  # six fonts, two places
    widget_fonts.copy_fonts(out)
    assert check_html.check_widget_fonts(out) == []
    # the failure seen in CI: only html-manager/dist/ had the fonts, the page asked @jupyter-widgets/
    font = widget_fonts.font_names(BUNDLE.read_text())[0]
    (out / "book" / "@jupyter-widgets" / font).unlink()
    problems = check_html.check_widget_fonts(out)
    assert len(problems) == 1 and f"@jupyter-widgets/{font}" in problems[0]
