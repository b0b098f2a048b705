"""One copy of every inline script per page (_ext/inline_scripts.py), and the static page checks in
tests/check_html.py that catch the two console errors of issue 16 without a browser."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_modules import load

ROOT = Path(__file__).resolve().parents[1]



inline_scripts = load("_ext/inline_scripts.py", "inline_scripts")
check_html = load("tests/check_html.py", "check_html")


def test_the_same_inline_script_as_none_and_empty_filename_is_kept_once() -> None:
    """Sphinx 7.4 holds sphinx-thebe's script as filename None (added after the builder started) and
    again as '' (from the registry): its own duplicate check sees two scripts."""
    assets = pytest.importorskip("sphinx.builders.html._assets")
    body = 'const THEBE_JS_URL = "x"'
    scripts = [assets._JavaScript("_static/doctools.js", priority=200),
               assets._JavaScript(None, body=body, priority=500),
               assets._JavaScript("", body=body, priority=500),
               assets._JavaScript("", body="let other = 1", priority=500),
               assets._JavaScript("_static/doctools.js", priority=200)]
    kept = inline_scripts.unique_scripts(scripts)
    assert kept == [scripts[0], scripts[1], scripts[3]]
    assert inline_scripts.unique_scripts(["a.js", "a.js", "b.js"]) == ["a.js", "b.js"]


def page(scripts: str, widgets: bool = False) -> str:
    state = '<script type="application/vnd.jupyter.widget-state+json">{}</script>' if widgets else ""
    return (f'<html><head><link href="../_static/book-layout.css" rel="stylesheet" />{scripts}</head>'
            f"<body>{state}</body></html>")


def test_check_html_page_assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "book-layout.css").write_text("")
    (tmp_path / "book").mkdir()
    monkeypatch.setattr(check_html, "toc_pages", lambda: ["book/a", "book/b", "book/c"])
    shim = '<script src="../_static/ipywidgets/mathjax-hub-shim.js"></script>'
    bundle = '<script src="../_static/ipywidgets/embed-amd.js"></script>'
    (tmp_path / "book" / "a.html").write_text(page("<script>const A = 1</script>" * 2))
    (tmp_path / "book" / "b.html").write_text(page(bundle + shim, widgets=True))
    (tmp_path / "book" / "c.html").write_text(page("<script>const A = 1</script>" + shim + bundle, widgets=True))
    problems = check_html.check_page_assets(tmp_path)
    assert problems == ["a.html: inline script(s) written twice: ['const A = 1']",
                        "b.html: ipywidgets/mathjax-hub-shim.js must load before embed-amd.js"]
    (tmp_path / "_static" / "book-layout.css").unlink()
    assert "_static/book-layout.css is missing" in check_html.check_page_assets(tmp_path)[0]


def test_printed_lines_reads_stream_outputs_only() -> None:
    page = ('<div class="cell_input"><div class="highlight"><pre>x = "' + "a" * 90 + '"</pre></div>'
            '<div class="output stream highlight-myst-ansi notranslate"><div class="highlight"><pre>'
            '<span></span>short &amp; fine\n' + "b" * 81 + '</pre></div></div>')
    lines = check_html.printed_lines(page)
    assert lines == ["short & fine", "b" * 81]
    assert [len(line) > check_html.PRINTED_WIDTH for line in lines] == [False, True]
