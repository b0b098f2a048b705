#!/usr/bin/env python3
"""Check, in a real headless browser, that the slider widgets of a built book work without a kernel.

Usage:
    python tests/browser_check.py _build/html [--page book/01_why_few_shot.html ...] [--shots DIR] [-v]

Serves the built HTML folder on 127.0.0.1 (a free port), opens every page that embeds ipywidgets
(or only the pages given with --page) in headless Chromium and, for every rendered widget:

* checks it is rendered exactly once (one ``div.widget-subarea`` per widget-view script) and shows an
  image;
* for every slider in it: focuses the slider handle, presses ArrowRight and checks that the slider's
  readout and the displayed image (its ``src`` and the pixels of an element screenshot) change.

It also fails when the page loads a widget script more than once, when a request to the local server
fails or returns an HTTP error (e.g. a missing vendored file), when require.js / embed-amd.js fails to load
from anywhere (e.g. an unreachable CDN), or when a page raises a JavaScript error that mentions widgets. Requests to other hosts (MathJax from a CDN, ...) and the Font Awesome 5 fonts that
the widget CSS asks for at <page dir>/@jupyter-widgets/... (missing, also with the CDN scripts; unused by
sliders) are only reported with -v.

Prints one line per checked widget and exits non-zero on failure.

Needs the ``playwright`` Python package and a Chromium binary: by default Debian's /usr/bin/chromium
(``apt-get install chromium``; set $CHROMIUM to use another). ``playwright install`` is not needed.
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

from playwright.sync_api import sync_playwright

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_SCRIPTS = re.compile(r"(require(\.min)?\.js|embed-amd\.js)(\?|$)")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep the output to one line per widget
        pass


def serve(directory: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def widget_pages(html_dir: Path) -> list[str]:
    return sorted(p.relative_to(html_dir).as_posix() for p in html_dir.rglob("*.html")
                  if "_static" not in p.parts and WIDGET_VIEW in p.read_text(encoding="utf-8", errors="replace"))


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
    """Check one page; return the failures (and print one line per widget)."""
    failures: list[str] = []
    console_errors: list[str] = []
    failed_requests: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: console_errors.append(f"console.{m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failed_requests.append((r.url, r.resource_type, r.failure)))
    page.on("response", lambda r: failed_requests.append((r.url, r.request.resource_type, f"HTTP {r.status}"))
            if r.status >= 400 else None)

    page.goto(f"{base}/{rel}", wait_until="domcontentloaded")
    n_views = page.locator(f'script[type="{WIDGET_VIEW}"]').count()
    # wait until every widget view is rendered and shows its image (or the timeout passes)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = page.evaluate("""() => [...document.querySelectorAll('div.widget-subarea')]
            .filter(d => !d.querySelector('.noUi-handle')
                         || (d.querySelector('img') && d.querySelector('img').naturalWidth > 0)).length""")
        if done >= n_views:
            break
        page.wait_for_timeout(250)
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
        if not handles:  # not a slider (a training progress bar, say): rendering once is enough
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
        print(f"{'ok  ' if ok else 'FAIL'} {label}: {len(handles)} slider(s); " + "; ".join(notes))
        if not ok:
            failures.append(f"{label}: " + "; ".join(notes))

    local = urlparse(base).netloc
    for url, kind, why in failed_requests:
        # Known and harmless: the widget CSS names Font Awesome 5 fonts relative to the *page*
        # (<page dir>/@jupyter-widgets/...), from a CDN as well; no slider uses them.
        known = kind == "font" and "/@jupyter-widgets/" in url
        if urlparse(url).netloc == local and not known and why != "net::ERR_ABORTED":
            failures.append(f"{rel}: local request failed: {url} ({why})")
        elif kind == "script" and WIDGET_SCRIPTS.search(urlparse(url).path):
            failures.append(f"{rel}: widget script failed to load: {url} ({why})")
    for e in console_errors:
        if re.search(r"widget|embed|require|jupyter", e, re.I) and "thebe" not in e.lower():
            failures.append(f"{rel}: {e}")
    if verbose:
        for e in console_errors:
            print(f"  {rel}: {e[:300]}")
        for url, kind, why in failed_requests:
            print(f"  {rel}: request failed: {url} ({kind}, {why})")
        for r in requests:
            if urlparse(r).netloc == local and not r.endswith(".html"):
                print(f"  {rel}: loaded {urlparse(r).path}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html_dir", type=Path, help="built HTML folder, e.g. _build/html")
    parser.add_argument("--page", action="append", help="page(s) to check, relative to html_dir "
                        "(default: every page with a widget)")
    parser.add_argument("--shots", type=Path, help="save widget screenshots before/after each key press here")
    parser.add_argument("-v", "--verbose", action="store_true", help="list console errors and requests")
    args = parser.parse_args()

    html_dir = args.html_dir.resolve()
    pages = args.page or widget_pages(html_dir)
    if not pages:
        print(f"no page with widgets under {html_dir}")
        return 1
    if args.shots:
        args.shots.mkdir(parents=True, exist_ok=True)
    server = serve(html_dir)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    failures: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                        args=CHROMIUM_ARGS)
            try:
                for rel in pages:
                    context = browser.new_context(viewport={"width": 1280, "height": 1600})
                    try:
                        failures += check_page(context.new_page(), base, rel, args.shots, args.verbose)
                    finally:
                        context.close()
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    for f in failures:
        print(f"FAILED: {f}")
    print(f"{len(pages)} page(s): {'FAILED' if failures else 'all sliders work'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
