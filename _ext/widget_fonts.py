"""Sphinx extension for the book build: serve the widget icon fonts wherever the widget bundle asks.

The widget manager (``_static/ipywidgets/embed-amd.js``) carries Font Awesome's CSS in two of its
webpack bundles, and each bundle names the font files relative to its own require.js module, which
require.js places relative to the *page*: the ``@jupyter-widgets/base`` and ``controls`` modules ask
for ``<page dir>/@jupyter-widgets/<hash>.woff2``, the ``html-manager/dist/libembed-amd`` module for
``<page dir>/@jupyter-widgets/html-manager/dist/<hash>.woff2``. Which of the two ``@font-face`` rules
the browser ends up using depends on the order the modules load in, so a page can ask either place.

After an HTML build this copies the vendored fonts (``_ext/widget_fonts/``, see the README there) into
every such place next to every page that embeds widgets. The places are read from the served bundle's
``define("...")`` names, so they follow the bundle when it is updated. ``tests/check_html.py`` checks
that every font the bundle may ask for is there.
"""

from __future__ import annotations

import posixpath
import re
import shutil
from pathlib import Path

FONTS = Path(__file__).with_name("widget_fonts")
BUNDLE = Path("_static/ipywidgets/embed-amd.js")
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def module_dirs(bundle: str) -> list[str]:
    """The folders, relative to a page, that the bundle's require.js modules resolve to."""
    names = re.findall(r'define\("([^"]+)"', bundle)
    return sorted({posixpath.dirname(f"{name}.js") + "/" for name in names})


def font_names(bundle: str) -> list[str]:
    """The ``.woff2`` and ``.woff`` files the bundle's Font Awesome CSS refers to."""
    return sorted(set(re.findall(r'\.p\+"([0-9a-f]{20}\.woff2?)"', bundle)))


def widget_page_dirs(outdir: Path) -> list[Path]:
    """Every folder of the built site that holds a page with saved widget state."""
    pages = [p for p in outdir.rglob("*.html") if WIDGET_STATE in p.read_text(errors="ignore")]
    return sorted({p.parent for p in pages})


def copy_fonts(outdir: Path) -> int:
    """Copy the vendored fonts next to every widget page; returns how many files were written."""
    bundle = outdir / BUNDLE
    if not bundle.exists():
        return 0
    text = bundle.read_text()
    missing = [name for name in font_names(text) if not (FONTS / name).exists()]
    if missing:
        raise FileNotFoundError(f"{BUNDLE} asks for fonts not vendored in {FONTS}: {missing} "
                                "(see the README there)")
    written = 0
    for page_dir in widget_page_dirs(outdir):
        for sub in module_dirs(text):
            target = page_dir / sub
            target.mkdir(parents=True, exist_ok=True)
            for name in font_names(text) + ["FONT-AWESOME-LICENSE.txt"]:
                shutil.copyfile(FONTS / name, target / name)
                written += 1
    return written


def _build_finished(app, exception) -> None:  # noqa: ANN001 (Sphinx objects)
    if exception is None and app.builder.format == "html":
        copy_fonts(Path(app.outdir))


def setup(app) -> dict:  # noqa: ANN001
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
