#!/usr/bin/env python3
"""Check chapter 11's live demo in a real headless browser, with no network.

Usage:
    python tests/browser_demo_check.py _build/html [--page book/11_try_it_in_your_browser.html] [-v]

Serves the built HTML folder on 127.0.0.1 (requests to any other host are refused, as on a machine
without internet access), opens the chapter in headless Chromium and checks, one line each:

* lazy runtime: opening the page fetches neither onnxruntime-web nor the model;
* runtime and model: ``window.fewshotDemo.ready()`` loads both (single-threaded WebAssembly);
* parity: for every known evaluation image the build wrote (``probes.json``), the browser's embedding
  equals Python onnxruntime's on the same exported file within 1e-3, and its nearest identity is
  the one ``Gallery.from_export(...).identify`` names;
* preprocessing: strokes drawn with the mouse give, in the page, the 28 × 28 input that
  ``fewshot.export.canvas_to_pixels`` makes from the same canvas, within 1/255;
* enrol: a drawing enrolled under a new name is found again (top 1) when drawn a second time,
  elsewhere on the canvas, and verifying it against that name accepts it;
* requests and console: no request failed, no console error;
* and it prints the time per embedding in the browser (target ≤ 50 ms here; printed, not enforced)
  and the page's transfer size before and after the runtime loads.

The expected numbers come from the exported files themselves (``_static/fewshot-demo/build/``),
computed here in Python. Needs ``playwright`` and a Chromium (Debian's /usr/bin/chromium, or $CHROMIUM).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from browser_check import CHROMIUM_ARGS, serve  # noqa: E402  (tests/, the script's folder)
from fewshot.export import OnnxEmbedding, canvas_to_pixels  # noqa: E402
from fewshot.verify import Gallery  # noqa: E402

PAGE = "book/11_try_it_in_your_browser.html"
BUILD = "_static/fewshot-demo/build"
RUNTIME = re.compile(r"onnxruntime-web/|\.onnx$")
# Console errors that would not fail the check: (regular expression, why it is harmless). Empty:
# the theme's two errors every page used to show are fixed (_ext/inline_scripts.py, _config.yml).
ALLOWED_CONSOLE: list[tuple[str, str]] = []
TOLERANCE = 1e-3
ENROLLED = "my symbol"
# two hand-made drawings of one symbol (a hook with a bar), the second shifted and a little larger
STROKES = [[(70, 60), (180, 60), (180, 200), (110, 220)], [(90, 130), (200, 130)]]


def expected(html_dir: Path) -> dict:
    """What Python's onnxruntime says about the known probes, from the exported files."""
    build = html_dir / BUILD
    onnx = OnnxEmbedding(build / "model.onnx")
    gallery = Gallery.from_export(build / "gallery.json", onnx)
    probes = json.loads((build / "probes.json").read_text())
    norm = gallery.deployment.normalisation
    pixels = torch.tensor(probes["pixels"], dtype=torch.float64).reshape(-1, 1, 28, 28)
    x = ((pixels / 255 - norm["mean"]) / norm["std"]).float()
    names, _ = gallery.identify(x)
    return {"pixels": probes["pixels"], "embeddings": onnx(x), "top1": names, "input": norm}


def draw(page, canvas, strokes: list, shift: tuple[float, float] = (0, 0), scale: float = 1.0) -> None:
    canvas.evaluate("c => c.scrollIntoView({block: 'center'})")  # mouse events need it on screen
    box = canvas.bounding_box()
    factor = box["width"] / 280
    for stroke in strokes:
        points = [(box["x"] + (shift[0] + scale * x) * factor, box["y"] + (shift[1] + scale * y) * factor)
                  for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for p in points[1:]:
            page.mouse.move(*p, steps=12)
        page.mouse.up()


def transfer(page, part: str = "") -> int:
    """Bytes the page has fetched so far (only URLs containing ``part``, when given)."""
    return page.evaluate("""part => performance.getEntriesByType('navigation')
        .concat(performance.getEntriesByType('resource')).filter(e => e.name.includes(part))
        .reduce((s, e) => s + (e.transferSize || e.encodedBodySize || 0), 0)""", part)


def gzipped(html_dir: Path, urls: list[str]) -> int:
    """The size of the local files behind ``urls`` gzipped, as GitHub Pages would serve them."""
    total = 0
    for url in set(urls):
        path = html_dir / urlparse(url).path.lstrip("/")
        if path.is_file():
            total += len(gzip.compress(path.read_bytes(), 6))
    return total


def check(html_dir: Path, rel: str, verbose: bool) -> list[str]:
    failures: list[str] = []

    def report(ok: bool, what: str) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {rel}: {what}")
        if not ok:
            failures.append(what)

    want = expected(html_dir)
    server = serve(html_dir)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    local = urlparse(base).netloc
    console, failed, requests = [], [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                        args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 1600})
            context.route(re.compile(r"^https?://"), lambda route: route.continue_()
                          if urlparse(route.request.url).netloc == local
                          else route.abort("internetdisconnected"))
            page = context.new_page()
            page.set_default_timeout(120_000)
            page.on("console", lambda m: console.append(f"console.{m.type}: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
            page.on("response", lambda r: failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400
                    else None)
            page.goto(f"{base}/{rel}", wait_until="load")
            page.wait_for_load_state("networkidle")
            page.wait_for_selector(".fewshot-canvas")
            early = [u for u in requests if RUNTIME.search(urlparse(u).path)]
            before, demo_part = transfer(page), transfer(page, "/fewshot-demo/")
            report(not early, f"lazy runtime: the page opened with {len(requests)} requests, "
                   f"{len(early)} for onnxruntime or the model")

            seconds = page.evaluate("async () => { const t = performance.now(); "
                                    "await fewshotDemo.ready(); return (performance.now() - t) / 1000; }")
            threads = page.evaluate("() => ort.env.wasm.numThreads")
            report(threads == 1, f"runtime and model loaded in {seconds:.2f} s (numThreads = {threads})")

            worst, same = 0.0, 0
            for i, pixels in enumerate(want["pixels"]):
                got = page.evaluate("a => fewshotDemo.embedPixels(a)", pixels)
                worst = max(worst, float((torch.tensor(got["embedding"]) - want["embeddings"][i]).abs().max()))
                same += got["top"][0]["identity"] == want["top1"][i]
            n = len(want["pixels"])
            report(worst <= TOLERANCE and same == n,
                   f"parity: {n} known evaluation images, max |browser − Python onnxruntime| = "
                   f"{worst:.1e} (≤ {TOLERANCE:g}), same top-1 identity as Gallery.identify for {same}/{n}")
            ms = page.evaluate("n => fewshotDemo.benchmark(n)", 50)
            print(f"     {rel}: {ms:.1f} ms per embedding in the browser (mean of 50 after a warm-up; "
                  f"target ≤ 50 ms){'  SLOWER THAN THE TARGET' if ms > 50 else ''}")

            canvas = page.locator(".fewshot-canvas")
            draw(page, canvas, STROKES)
            page.wait_for_selector(".fewshot-results tr.accept, .fewshot-results tr.reject")
            alpha = np.array(page.evaluate("() => fewshotDemo.canvasAlpha()"), np.uint8).reshape(280, 280)
            in_page = np.array(page.evaluate("() => fewshotDemo.drawingPixels()")).reshape(28, 28)
            ours = canvas_to_pixels(alpha, want["input"]["extent"])
            gap = float(np.abs(in_page - ours).max())
            report(gap <= 1 / 255 + 1e-9, f"preprocessing: drawn strokes → 28 × 28 in the page and in "
                   f"Python (canvas_to_pixels) differ by at most {gap * 255:.2f}/255")

            page.fill(".fewshot-name", ENROLLED)
            page.click(".fewshot-enrol")
            page.wait_for_function("() => document.querySelector('.fewshot-enrol-out').textContent"
                                   ".includes('enrolled')")
            page.click(".fewshot-clear")
            draw(page, canvas, STROKES, shift=(-40, -30), scale=1.15)
            page.click(".fewshot-identify")
            page.wait_for_selector(".fewshot-results tr:nth-child(2)")
            top = page.locator(".fewshot-results tr:nth-child(2) td:nth-child(3)").text_content()
            page.select_option(".fewshot-claim", label=ENROLLED)
            page.click(".fewshot-verify")
            page.wait_for_function("() => document.querySelector('.fewshot-verify-out').textContent"
                                   ".includes('claim')")
            verdict = page.locator(".fewshot-verify-out").text_content()
            report(top == ENROLLED and verdict.rstrip().endswith("accepted"),
                   f"enrol: drawn again elsewhere, identified as {top!r}; verify: {verdict.strip()!r}")

            page.wait_for_load_state("networkidle")
            after = transfer(page)
            packed = gzipped(html_dir, [u for u in requests if urlparse(u).netloc == local])
            print(f"     {rel}: page transfer {before / 1e6:.2f} MB before the first stroke (the demo's "
                  f"scripts, gallery and glyphs: {demo_part / 1e6:.2f} MB), {after / 1e6:.2f} MB with the "
                  f"runtime and model ({packed / 1e6:.2f} MB gzipped); model file "
                  f"{(html_dir / BUILD / 'model.onnx').stat().st_size / 1e6:.2f} MB")
            context.close()
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    other = [u for u in requests if urlparse(u).netloc not in (local, "") and not u.startswith("data:")]
    report(not failed, f"requests: {len(requests)}, {len(failed)} failed, {len(other)} to other hosts")
    excused = [(c, why) for c in console for pattern, why in ALLOWED_CONSOLE if re.search(pattern, c)]
    errors = [c for c in console if c not in {e for e, _ in excused}]
    report(not errors, f"console: {len(errors)} errors ({len(excused)} from the book's theme, allowed)")
    for line in failed + errors:
        print(f"  {rel}: {line[:300]}")
    if verbose:
        for line, why in excused:
            print(f"  {rel}: allowed: {line[:120]} ({why})")
    if verbose:
        for u in requests:
            print(f"  {rel}: requested {urlparse(u).path}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html_dir", type=Path, help="built HTML folder, e.g. _build/html")
    parser.add_argument("--page", default=PAGE, help=f"the demo's page (default {PAGE})")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every request")
    args = parser.parse_args()
    html_dir = args.html_dir.resolve()
    missing = [p for p in (args.page, f"{BUILD}/model.onnx", f"{BUILD}/gallery.json", f"{BUILD}/probes.json")
               if not (html_dir / p).is_file()]
    if missing:
        print(f"FAIL {args.page}: missing from {html_dir}: {', '.join(missing)}")
        return 1
    failures = check(html_dir, args.page, args.verbose)
    for f in failures:
        print(f"FAILED: {f}")
    print(f"{args.page}: {'FAILED' if failures else 'the demo identifies, verifies and enrols offline'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
