#!/usr/bin/env python3
"""Check, in a real headless browser and with no network, that every page of a built book renders.

Usage:
    python tests/browser_check.py _build/html [--page book/01_why_few_shot.html ...] [--shots DIR] [-v]

Serves the built HTML folder on 127.0.0.1 (a free port) and opens every page named in ``_toc.yml`` (or
only the pages given with --page) in headless Chromium, at 1280 px and again at 390 px (a phone).
Requests to any other host are refused, as on a machine without internet access, so the page must
render from the book alone. Per page:

* maths: MathJax (served by the book, ``_static/mathjax/``) started, turned every formula
  (``.math``) into an ``mjx-container`` and reported no TeX error (``mjx-merror``), and no raw TeX
  delimiter (``\\(``, ``\\)``, ``\\[``, ``\\]``, ``$$``, ``\\begin{``) is left in the text outside
  code blocks;
* images: every ``<img>`` loaded (natural width > 0);
* requests: none failed (network error, refused host or HTTP >= 400) except those on ``ALLOWED_FAILURES``
  below;
* console: no JavaScript error and no ``console.error`` message, at either width;
* layout at 1280 px: no block (table, display formula, code or output block, image, widget) is wider
  than the text column, and no code or output block overflows its own box (a code line too long for
  the code font);
* layout at 390 px: the page never scrolls sideways (wide tables and formulas scroll inside their own
  box, images and widgets shrink to the column, long inline code wraps);
* widgets (pages that embed ipywidgets): each is rendered exactly once (one ``div.widget-subarea`` per
  widget-view script) and shows an image; for every slider in it, focuses the slider handle, presses
  ArrowRight and checks that the slider's readout and the displayed image (its ``src`` and the pixels
  of an element screenshot) change; for every row of toggle buttons, clicks the next button and checks
  that it becomes the selected one and that the image changes; require.js / embed-amd.js are each
  loaded once.

Prints one line per checked thing (per page: maths, images, requests, console, layout; one per widget)
and exits non-zero on failure; -v also lists console messages and every request.

Needs the ``playwright`` Python package and a Chromium binary: by default Debian's /usr/bin/chromium
(``apt-get install chromium``; set $CHROMIUM to use another, e.g. Google Chrome). ``playwright install``
is not needed.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import os
import re
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import yaml
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_SCRIPTS = re.compile(r"(require(\.min)?\.js|embed-amd\.js)(\?|$)")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]

# Failed requests that do not fail the check: (regular expression on the URL, why it is harmless).
# Keep this list short; every entry is something a reader's browser also fails to load.
ALLOWED_FAILURES: list[tuple[str, str]] = []

# Raw TeX left in the rendered text means MathJax did not typeset it (not loaded, or the HTML split it).
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{")

# Text nodes of the page body outside code, scripts and MathJax's own output, with raw TeX in them.
RAW_TEX_JS = r"""re => {
    const skip = 'pre, code, kbd, samp, script, style, textarea, mjx-container, .highlight';
    const root = document.querySelector('main') || document.body;
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const pattern = new RegExp(re), hits = [];
    while (walker.nextNode()) {
        const node = walker.currentNode, el = node.parentElement;
        if (!el || el.closest(skip)) continue;
        const m = pattern.exec(node.textContent);
        if (m) {
            const text = node.textContent.replace(/\s+/g, ' ');
            const i = Math.max(0, text.indexOf(m[0]) - 30);
            hits.push(text.slice(i, i + 80));
        }
    }
    return hits;
}"""

MATHJAX_JS = """async () => {
    if (!window.MathJax || !MathJax.startup || !MathJax.startup.promise) return null;
    await MathJax.startup.promise;
    return MathJax.version;
}"""

MATH_STATE_JS = """() => {
    const formulas = [...document.querySelectorAll('.math')];
    return {
        formulas: formulas.length,
        untypeset: formulas.filter(e => !e.querySelector('mjx-container'))
                           .map(e => e.textContent.trim().slice(0, 80)),
        containers: document.querySelectorAll('mjx-container').length,
        errors: [...document.querySelectorAll('mjx-merror')]
                    .map(e => e.getAttribute('data-mjx-error') || e.textContent.slice(0, 80)),
    };
}"""

# Every <img>, made eager and decoded (or failed): (src, natural width).
IMAGES_JS = """async () => {
    const imgs = [...document.images];
    imgs.forEach(i => { i.loading = 'eager'; });
    const settle = i => Promise.race([i.decode().catch(() => null),
                                      new Promise(r => setTimeout(r, 20000))]);
    await Promise.all(imgs.map(settle));
    return imgs.map(i => [i.currentSrc || i.src || '(no src)', i.naturalWidth]);
}"""


WIDE, NARROW = 1280, 390  # px: a laptop and a phone
# Blocks that must fit the text column at WIDE, and how each one's width is measured.
BLOCKS = {"table": "table", "formula": "div.math", "code": "pre",
          "output": ".output, .cell_output", "image": "img", "widget": ".widget-subarea, .jupyter-widgets"}

# The text column's width and every block wider than it (or, for code and outputs, wider than its own
# box: its lines overflow). A display formula's width is that of its typeset maths (mjx-math).
LAYOUT_JS = """blocks => {
    const article = document.querySelector('article.bd-article') || document.querySelector('main');
    const style = getComputedStyle(article);
    const column = article.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const label = e => {
        const section = e.closest('section[id]');
        const text = (e.textContent || e.getAttribute('src') || '').replace(/\\s+/g, ' ').trim();
        return `${section ? '#' + section.id + ' ' : ''}"${text.slice(0, 50)}"`;
    };
    const wide = [], counts = {};
    for (const [kind, selector] of Object.entries(blocks)) {
        const found = [...article.querySelectorAll(selector)].filter(e => e.getClientRects().length);
        counts[kind] = found.length;
        for (const e of found) {
            const maths = kind === 'formula' ? e.querySelector('mjx-math') : null;
            const width = Math.ceil((maths || e).getBoundingClientRect().width);
            const overflow = ['code', 'output'].includes(kind) ? e.scrollWidth - e.clientWidth : 0;
            if (width > column + 1) wide.push(`${kind} ${width} px wide: ${label(e)}`);
            else if (overflow > 1) wide.push(`${kind} overflows its box by ${overflow} px: ${label(e)}`);
        }
    }
    return {column: Math.round(column), counts, wide};
}"""

# At NARROW: how far the page scrolls sideways, and the outermost elements that stick out of the
# viewport without a scrolling box of their own around them.
NARROW_JS = """() => {
    const page = document.scrollingElement || document.documentElement;
    const width = window.innerWidth, out = [];
    const scrolls = e => { for (let p = e.parentElement; p; p = p.parentElement) {
        const o = getComputedStyle(p).overflowX;
        if (o === 'auto' || o === 'scroll' || o === 'hidden' || o === 'clip') return true; }
        return false; };
    for (const e of document.body.querySelectorAll('*')) {
        const r = e.getBoundingClientRect();
        if (r.width && r.right > width + 1 && !scrolls(e)
                && !(e.parentElement && e.parentElement.getBoundingClientRect().right > width + 1)) {
            const text = (e.textContent || '').replace(/\\s+/g, ' ').trim().slice(0, 50);
            out.push(`<${e.tagName.toLowerCase()}${e.className && typeof e.className === 'string'
                ? ' class="' + e.className.slice(0, 40) + '"' : ''}> right edge ${Math.round(r.right)} px: "${text}"`);
        }
    }
    return {scroll: page.scrollWidth - page.clientWidth, out: out.slice(0, 8)};
}"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep the output to one line per widget
        pass


def serve(directory: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def toc_pages(toc_file: Path = ROOT / "_toc.yml") -> list[str]:
    """Every page of the book, in _toc.yml order, as paths relative to the HTML folder."""
    toc = yaml.safe_load(toc_file.read_text())
    files = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []) + entry.get("chapters", []))

    walk(toc.get("parts", []) + toc.get("chapters", []) + toc.get("sections", []))
    return [f"{Path(f).with_suffix('').as_posix()}.html" for f in files]


def allowed(url: str) -> str | None:
    """The reason a failed request to ``url`` is allowed, or None."""
    return next((why for pattern, why in ALLOWED_FAILURES if re.search(pattern, url)), None)


def visible_image(widget):
    """The displayed <img> of a widget (a Stack keeps only the selected frame in the DOM)."""
    for img in widget.locator("img").all():
        box = img.bounding_box()
        if box and box["width"] > 0 and box["height"] > 0:
            return img
    return None


def image_state(widget) -> tuple[str, str] | None:
    img = visible_image(widget)
    if img is None:
        return None
    return img.get_attribute("src") or "", hashlib.sha256(img.screenshot()).hexdigest()[:12]


def check_page(page, base: str, rel: str, shots: Path | None, verbose: bool) -> list[str]:
    """Check one page; return the failures (and print one line per checked thing)."""
    failures: list[str] = []
    console_errors: list[str] = []
    failed_requests: list[tuple[str, str, str]] = []
    requests: list[str] = []
    page.set_default_timeout(60_000)
    page.on("console", lambda m: console_errors.append(f"console.{m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failed_requests.append((r.url, r.resource_type, r.failure or "failed")))
    page.on("response", lambda r: failed_requests.append((r.url, r.request.resource_type, f"HTTP {r.status}"))
            if r.status >= 400 else None)

    def report(ok: bool, what: str, problems: list[str]) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {rel}: {what}")
        failures.extend(f"{rel}: {p}" for p in problems)

    page.goto(f"{base}/{rel}", wait_until="load")

    # maths: MathJax typesets once it has loaded (startup.promise), then the text must hold no raw TeX
    try:
        version = page.evaluate(MATHJAX_JS)
    except PlaywrightError as e:
        version = None
        console_errors.append(f"MathJax did not finish: {e}")
    math = page.evaluate(MATH_STATE_JS)
    raw = page.evaluate(RAW_TEX_JS, RAW_TEX.pattern)
    problems = [f"raw TeX in the text: ...{h}..." for h in raw]
    problems += [f"MathJax error: {e}" for e in math["errors"]]
    if math["formulas"] and version is None:
        problems.append(f"{math['formulas']} formulas but MathJax did not start (script missing or blocked?)")
    elif math["untypeset"]:
        problems += [f"formula not typeset: {f}" for f in math["untypeset"]]
    if not math["formulas"] and not raw:
        report(True, "maths: none on this page", [])
    else:
        report(not problems, f"maths: {math['formulas']} formulas, {math['containers']} typeset by MathJax "
               f"{version or '(not started)'}, {len(math['errors'])} errors, {len(raw)} raw TeX", problems)
        if verbose:
            for p in problems:
                print(f"  {rel}: {p}")

    # images: every <img> loaded
    images = page.evaluate(IMAGES_JS)
    broken = [src for src, width in images if width == 0]
    report(not broken, f"images: {len(images) - len(broken)}/{len(images)} loaded",
           [f"image did not load: {src[:100]}" for src in broken])

    if page.locator(f'script[type="{WIDGET_VIEW}"]').count():
        failures += check_widgets(page, rel, shots)
    try:  # fonts and components MathJax or the widgets fetch late
        page.wait_for_load_state("networkidle", timeout=10_000)
    except PlaywrightError:
        pass

    # requests: none failed, other hosts included (they are refused: the book must render offline)
    local = urlparse(base).netloc
    bad, excused = [], []
    for url, kind, why in failed_requests:
        reason = allowed(url)
        (excused if reason else bad).append(f"{url} ({kind}, {why}){f': allowed, {reason}' if reason else ''}")
        if kind == "script" and WIDGET_SCRIPTS.search(urlparse(url).path):
            failures.append(f"{rel}: widget script failed to load: {url} ({why})")
    n_other = sum(urlparse(r).netloc not in (local, "") and not r.startswith("data:") for r in requests)
    report(not bad, f"requests: {len(requests)}, {len(bad)} failed, {len(excused)} allowed to fail, "
           f"{n_other} to other hosts", [f"request failed: {b}" for b in bad])
    errors = [e for e in console_errors if not (e.startswith("console.error: Failed to load resource")
                                                 and excused)]
    report(not errors, f"console: {len(errors)} errors at {WIDE} px", [f"at {WIDE} px: {e}" for e in errors])

    # layout: every block fits the text column
    layout = page.evaluate(LAYOUT_JS, BLOCKS)
    counts = ", ".join(f"{n} {kind}" for kind, n in layout["counts"].items() if n)
    report(not layout["wide"], f"layout at {WIDE} px: column {layout['column']} px; {counts or 'no blocks'}; "
           f"{len(layout['wide'])} too wide", [f"at {WIDE} px, column {layout['column']} px: {w}"
                                                for w in layout["wide"]])
    if verbose:
        for w in layout["wide"]:
            print(f"  {rel}: {w}")
    if verbose:
        for e in console_errors:
            print(f"  {rel}: {e[:300]}")
        for b in bad + excused:
            print(f"  {rel}: request failed: {b}")
        for r in requests:
            if not r.startswith("data:"):
                print(f"  {rel}: requested {r if urlparse(r).netloc != local else urlparse(r).path}")
    return failures


def wait_rendered(page) -> None:
    """Until MathJax has typeset and every widget view is rendered with its image (or 60 s passed)."""
    try:
        page.evaluate(MATHJAX_JS)
    except PlaywrightError:
        pass
    n_views = page.locator(f'script[type="{WIDGET_VIEW}"]').count()
    deadline = time.monotonic() + 60
    while n_views and time.monotonic() < deadline:
        done = page.evaluate("""() => [...document.querySelectorAll('div.widget-subarea')]
            .filter(d => !d.querySelector('.noUi-handle, .widget-toggle-buttons')
                         || (d.querySelector('img') && d.querySelector('img').naturalWidth > 0)).length""")
        if done >= n_views:
            break
        page.wait_for_timeout(250)
    page.evaluate(IMAGES_JS)


def check_narrow(page, base: str, rel: str, verbose: bool) -> list[str]:
    """At NARROW px: the page must not scroll sideways and must log no error; returns the failures."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.set_default_timeout(60_000)
    page.goto(f"{base}/{rel}", wait_until="load")
    wait_rendered(page)
    page.wait_for_timeout(300)
    state = page.evaluate(NARROW_JS)
    failures = [f"{rel}: at {NARROW} px: {e}" for e in errors]
    if state["scroll"] > 0:
        failures.append(f"{rel}: at {NARROW} px the page scrolls sideways by {state['scroll']} px; "
                        + ("sticking out: " + "; ".join(state["out"]) if state["out"] else "(no single element)"))
    print(f"{'FAIL' if failures else 'ok  '} {rel}: at {NARROW} px: page scrolls sideways by {state['scroll']} px, "
          f"{len(errors)} console errors")
    if verbose:
        for line in (state["out"] if state["scroll"] > 0 else []) + errors:
            print(f"  {rel}: {line[:300]}")
    return failures


def check_widgets(page, rel: str, shots: Path | None) -> list[str]:
    """Check the widgets of a page; return the failures (and print one line per widget)."""
    failures: list[str] = []
    wait_rendered(page)  # every widget view rendered with its image (or the timeout passed)
    page.wait_for_timeout(500)  # a duplicate render would arrive a little later

    scripts = page.evaluate("() => [...document.scripts].map(s => s.src).filter(Boolean)")
    widget_scripts = [s for s in scripts if WIDGET_SCRIPTS.search(urlparse(s).path)]
    for name in sorted({Path(urlparse(s).path).name for s in widget_scripts}):
        count = sum(Path(urlparse(s).path).name == name for s in widget_scripts)
        if count != 1:
            failures.append(f"{rel}: {name} is included {count} times")
    if not widget_scripts:
        failures.append(f"{rel}: no require.js / embed-amd.js script tag")

    views = page.locator(f'script[type="{WIDGET_VIEW}"]').all()
    for i, view in enumerate(views):
        label = f"{rel} widget {i + 1}/{len(views)}"
        rendered = view.evaluate("""s => { let n = 0, e = s.previousElementSibling;
            while (e && e.matches('div.widget-subarea')) { n++; e = e.previousElementSibling; } return n; }""")
        if rendered != 1:
            failures.append(f"{label}: rendered {rendered} times (expected 1)")
            print(f"FAIL {label}: rendered {rendered} times")
            continue
        widget = view.locator("xpath=preceding-sibling::div[contains(@class,'widget-subarea')][1]")
        handles = widget.locator(".noUi-handle").all()
        toggle_rows = widget.locator(".widget-toggle-buttons").all()
        if not handles and not toggle_rows:  # a training progress bar, say: rendering once is enough
            print(f"ok   {label}: rendered once (no slider)")
            continue
        state = image_state(widget)
        if state is None:
            failures.append(f"{label}: no visible image")
            print(f"FAIL {label}: no visible image")
            continue
        notes, ok = [], True
        for j, handle in enumerate(handles):
            slider = widget.locator(".widget-slider").nth(j)
            name = (slider.locator(".widget-label").first.text_content() or f"slider{j + 1}").strip()
            readout = slider.locator(".widget-readout")
            before_value = (readout.first.text_content() or "").strip() if readout.count() else "?"
            before = image_state(widget)
            if shots:
                widget.screenshot(path=str(shots / f"{rel.replace('/', '_')}_w{i + 1}_{name}_before.png"))
            handle.focus()
            page.keyboard.press("ArrowRight")
            after, deadline = before, time.monotonic() + 5
            while after == before and time.monotonic() < deadline:
                page.wait_for_timeout(100)
                after = image_state(widget)
            after_value = (readout.first.text_content() or "").strip() if readout.count() else "?"
            if shots:
                widget.screenshot(path=str(shots / f"{rel.replace('/', '_')}_w{i + 1}_{name}_after.png"))
            if after_value == before_value:
                ok = False
                notes.append(f"{name}: readout stayed {before_value!r} (last value or keyboard ignored)")
            elif after is None or after == before:
                ok = False
                notes.append(f"{name} {before_value}->{after_value}: image did not change")
            else:
                changed = [w for w, b, a in zip(("src", "pixels"), before, after) if b != a]
                notes.append(f"{name} {before_value}->{after_value}: image changed ({'+'.join(changed)}"
                             f" {before[1]}->{after[1]})")
        for j, row in enumerate(toggle_rows):
            name = (row.locator(".widget-label").first.text_content() or f"toggles{j + 1}").strip()
            buttons = row.locator("button").all()
            texts = [(b.text_content() or "").strip() for b in buttons]
            active = [k for k, b in enumerate(buttons) if "mod-active" in (b.get_attribute("class") or "")]
            if len(buttons) < 2 or len(active) != 1:
                ok = False
                notes.append(f"{name}: {len(buttons)} buttons, {len(active)} selected (expected ≥ 2 and 1)")
                continue
            target = (active[0] + 1) % len(buttons)
            before = image_state(widget)
            buttons[target].click()
            after, deadline = before, time.monotonic() + 5
            while after == before and time.monotonic() < deadline:
                page.wait_for_timeout(100)
                after = image_state(widget)
            selected = "mod-active" in (buttons[target].get_attribute("class") or "")
            if shots:
                widget.screenshot(path=str(shots / f"{rel.replace('/', '_')}_w{i + 1}_{name}_{target}.png"))
            step = f"{name} {texts[active[0]]!r}->{texts[target]!r}"
            if not selected:
                ok = False
                notes.append(f"{step}: the clicked button is not selected")
            elif after is None or after == before:
                ok = False
                notes.append(f"{step}: image did not change")
            else:
                notes.append(f"{step}: image changed ({before[1]}->{after[1]})")
        print(f"{'ok  ' if ok else 'FAIL'} {label}: {len(handles)} slider(s), {len(toggle_rows)} toggle row(s); "
              + "; ".join(notes))
        if not ok:
            failures.append(f"{label}: " + "; ".join(notes))

    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html_dir", type=Path, help="built HTML folder, e.g. _build/html")
    parser.add_argument("--page", action="append", help="page(s) to check, relative to html_dir "
                        "(default: every page in _toc.yml)")
    parser.add_argument("--shots", type=Path, help="save widget screenshots before/after each key press here")
    parser.add_argument("-v", "--verbose", action="store_true", help="list console errors and requests")
    args = parser.parse_args()

    html_dir = args.html_dir.resolve()
    pages = args.page or toc_pages()
    failures: list[str] = []
    for rel in [r for r in pages if not (html_dir / r).is_file()]:
        print(f"FAIL {rel}: missing")
        failures.append(f"{rel}: missing from {html_dir}")
    pages = [r for r in pages if (html_dir / r).is_file()]
    if args.shots:
        args.shots.mkdir(parents=True, exist_ok=True)
    server = serve(html_dir)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    local = urlparse(base).netloc

    def offline(route) -> None:  # as on a machine without internet access: only the book's server answers
        if urlparse(route.request.url).netloc == local:
            route.continue_()
        else:
            route.abort("internetdisconnected")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                        args=CHROMIUM_ARGS)
            try:
                for rel in pages:
                    for width, height in ((WIDE, 1600), (NARROW, 844)):
                        context = browser.new_context(viewport={"width": width, "height": height})
                        context.route(re.compile(r"^https?://"), offline)
                        try:
                            page = context.new_page()
                            failures += (check_page(page, base, rel, args.shots, args.verbose) if width == WIDE
                                         else check_narrow(page, base, rel, args.verbose))
                        finally:
                            context.close()
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    for f in failures:
        print(f"FAILED: {f}")
    verdict = "FAILED" if failures else "maths, images, requests, console, layout and widgets all fine"
    print(f"{len(pages)} page(s): {verdict}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
