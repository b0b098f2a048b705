"""Check the built book: every chapter page exists, has its figures, widget state and a Colab link, and
every page loads its scripts, styles and MathJax from the book itself (no CDN).

Usage: ``python tests/check_html.py _build/html`` (run by ``.ci/run`` after ``jupyter-book build``).
Exits non-zero, listing every problem, if a check fails.
"""

from __future__ import annotations

import html
import posixpath
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MIN_FIGURES = 2  # every chapter draws several; fewer means figures were not captured (e.g. MPLBACKEND=Agg)
MIN_FIGURES_FOR = {"book/10_where_next": 1}  # the closing chapter: one summary chart (and a widget)
PRINTED_WIDTH = 78  # printed lines fit the column, like code lines (test_book.CODE_LINE)


def chapters() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [f for f in files if (ROOT / f"{f}.ipynb").exists()]


def check(html_dir: Path) -> list[str]:
    problems = []
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]["url"].removeprefix("https://github.com/")
    for chapter in chapters():
        page = html_dir / f"{chapter}.html"
        if not page.exists():
            problems.append(f"{page} is missing")
            continue
        text = page.read_text()
        images = [src for src in re.findall(r'<img[^>]+src="([^"]+\.png)"', text) if "_images/" in src]
        inline = text.count("data:image/png;base64")
        least = MIN_FIGURES_FOR.get(chapter, MIN_FIGURES)
        if len(images) + inline < least:
            problems.append(f"{page.name}: {len(images) + inline} figures, expected at least {least}")
        for src in images:
            if not (page.parent / src).resolve().exists():
                problems.append(f"{page.name}: figure {src} does not exist")
        colab = f"colab.research.google.com/github/{repo}/blob/main/{chapter}.ipynb"
        if colab not in text:
            problems.append(f"{page.name}: no Colab link to {colab}")
        if re.search(r"<p>\|[^<]*\|[^<]*\|", text):
            problems.append(f"{page.name}: a Markdown table was rendered as plain text")
        if "Traceback (most recent call last)" in text:
            problems.append(f"{page.name}: shows a traceback")
        for line in printed_lines(text):
            if len(line) > PRINTED_WIDTH:
                problems.append(f"{page.name}: a printed line of {len(line)} characters (at most "
                                f"{PRINTED_WIDTH}): {line[:60]}…")
        has_state = "application/vnd.jupyter.widget-state+json" in text
        if "slider_frames" in (ROOT / f"{chapter}.ipynb").read_text() and not has_state:
            problems.append(f"{page.name}: has sliders but no saved widget state (they would be dead)")
        print(f"{page.relative_to(html_dir)}: {len(images)} figures, {inline} inline images, "
              f"widget state: {'yes' if has_state else 'no'}")
    problems += check_offline(html_dir)
    problems += check_widget_fonts(html_dir)
    problems += check_page_assets(html_dir)
    return problems


def printed_lines(page: str) -> list[str]:
    """Every line a page's code cells printed (their stream outputs), as plain text."""
    blocks = re.findall(r'<div class="output stream[^"]*"><div class="highlight"><pre>(.*?)</pre>',
                        page, flags=re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", line))
            for block in blocks for line in block.splitlines()]


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]


def check_offline(html_dir: Path) -> list[str]:
    """Every page takes its scripts and styles from the book; pages with maths use the vendored MathJax."""
    problems = []
    for name in toc_pages():
        page = html_dir / f"{name}.html"
        if not page.exists():
            problems.append(f"{page} is missing")
            continue
        text = page.read_text()
        for url in re.findall(r'<(?:script|link)[^>]+(?:src|href)="((?:https?:)?//[^"]+)"', text):
            problems.append(f"{page.name}: loads {url} from another host (vendor it under _extra/)")
        if 'class="math' in text and "_static/mathjax/tex-chtml.js" not in text:
            problems.append(f"{page.name}: has maths but does not load _static/mathjax/tex-chtml.js")
    return problems


def check_widget_fonts(html_dir: Path) -> list[str]:
    """Every icon font the widget bundle may ask for, from every place it may ask, exists.

    The bundle's Font Awesome CSS names ``<hash>.woff2`` / ``.woff`` files relative to the require.js
    module it sits in, and modules lie relative to the page, so a widget page in ``book/`` may ask
    ``book/@jupyter-widgets/`` or ``book/@jupyter-widgets/html-manager/dist/`` (which one depends on the
    order the modules load in: a browser check can pass by luck, this check cannot).
    """
    bundle = html_dir / "_static" / "ipywidgets" / "embed-amd.js"
    if not bundle.exists():
        return [f"{bundle} is missing"]
    js = bundle.read_text()
    fonts = sorted(set(re.findall(r'\.p\+"([0-9a-f]{20}\.woff2?)"', js)))
    places = sorted({posixpath.dirname(name + ".js") for name in re.findall(r'define\("([^"]+)"', js)})
    if not fonts or not places:
        return [f"{bundle}: found no fonts or no modules in it (has the bundle changed its format?)"]
    problems = []
    for name in toc_pages():
        page = html_dir / f"{name}.html"
        if not page.exists() or "application/vnd.jupyter.widget-state+json" not in page.read_text():
            continue
        missing = [f"{place}/{font}" for place in places for font in fonts
                   if not (page.parent / place / font).exists()]
        if missing:
            problems.append(f"{page.name}: widget icon fonts missing next to the page: {missing}")
    return problems


def check_page_assets(html_dir: Path) -> list[str]:
    """Each inline script once per page; the layout CSS on every page; on widget pages the MathJax 2
    shim before the widget bundle (both causes of console errors in the browser, caught without one)."""
    problems = []
    if not (html_dir / "_static" / "book-layout.css").exists():
        problems.append("_static/book-layout.css is missing (html_extra_path: _extra)")
    for name in toc_pages():
        page = html_dir / f"{name}.html"
        if not page.exists():
            continue
        text = page.read_text()
        bodies = [b.strip() for b in re.findall(r"<script>(.*?)</script>", text, re.S) if b.strip()]
        repeated = sorted({b[:60] for b in bodies if bodies.count(b) > 1})
        if repeated:
            problems.append(f"{page.name}: inline script(s) written twice: {repeated}")
        if "_static/book-layout.css" not in text:
            problems.append(f"{page.name}: does not link _static/book-layout.css")
        if "application/vnd.jupyter.widget-state+json" in text:
            shim, bundle = text.find("ipywidgets/mathjax-hub-shim.js"), text.find("ipywidgets/embed-amd.js")
            if shim < 0 or shim > bundle:
                problems.append(f"{page.name}: ipywidgets/mathjax-hub-shim.js must load before embed-amd.js")
    return problems


if __name__ == "__main__":
    found = check(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "_build" / "html"))
    for p in found:
        print("PROBLEM:", p)
    sys.exit(1 if found else 0)
