/* The live one-shot system of chapter 11: draw, identify, verify, enrol, in the reader's browser.
 *
 * The notebook's output holds <div class="fewshot-demo" data-build="...">; this script fills it.
 * Files (paths relative to this script):
 *   build/gallery.json  written by fewshot.verify.Gallery.export (templates, thresholds, input)
 *   build/model.onnx    written by fewshot.export.export_onnx
 *   build/glyphs.png    the enrolled characters, 28 x 28 cells
 *   ../onnxruntime-web/ onnxruntime-web (see its README), loaded on the first stroke or click
 * Inference: single-threaded WebAssembly (numThreads = 1: threads need cross-origin isolation
 * headers that GitHub Pages cannot send). Served over http(s); browsers refuse file:// fetches.
 *
 * window.fewshotDemo is a small test hook (tests/browser_demo_check.py uses it).
 */
(function () {
  "use strict";
  const here = document.currentScript ? document.currentScript.src : window.location.href;
  const BUILD = new URL("build/", here).href;
  const ORT = new URL("../onnxruntime-web/", here).href;
  const PEN = 22, ERASER = 44, SIZE = 280, TOP = 5;

  const state = {
    gallery: null,    // gallery.json
    names: [],        // display name per identity, exported then enrolled
    templates: [],    // Float32Array per identity
    thumbs: [],       // {glyph: index} or {pixels: Float64Array}
    point: 0,         // index into gallery.thresholds
    session: null,
    loading: null,
    lastMs: null,
    tool: "pen",
  };

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children || []) e.append(c);
    return e;
  }

  function pct(x) {  // a measured rate
    const p = 100 * x;
    return (p >= 1 ? p.toFixed(1) : p.toFixed(2)) + "%";
  }

  function target(far) { return String(+(100 * far).toPrecision(3)) + "%"; }  // 0.001 -> "0.1%"

  // ----- the gallery -----
  async function loadGallery() {
    if (state.gallery) return state.gallery;
    const response = await fetch(BUILD + "gallery.json");
    if (!response.ok) throw new Error("gallery.json: HTTP " + response.status);
    const g = await response.json();
    state.gallery = g;
    state.names = g.extra.names.slice();
    state.templates = g.templates.map((t) => Float32Array.from(t));
    state.thumbs = g.identities.map((_, i) => ({ glyph: i }));
    const points = g.thresholds.map((t) => t.far);
    state.point = Math.max(0, points.indexOf(0.01));
    return g;
  }

  function distance(a, b, metric) {
    if (metric === "cosine") {
      let dot = 0, na = 0, nb = 0;
      for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
      return 1 - dot / (Math.max(Math.sqrt(na), 1e-12) * Math.max(Math.sqrt(nb), 1e-12));
    }
    let s = 0;
    for (let i = 0; i < a.length; i++) { const d = a[i] - b[i]; s += d * d; }
    return Math.sqrt(s);
  }

  // the TOP nearest identities: [{index, name, distance}], ties to the identity enrolled first
  function nearest(embedding, k) {
    const metric = state.gallery.metric;
    const all = state.templates.map((t, i) => ({ index: i, name: state.names[i],
                                                 distance: distance(embedding, t, metric) }));
    all.sort((a, b) => a.distance - b.distance || a.index - b.index);
    return all.slice(0, k || TOP);
  }

  function threshold() { return state.gallery.thresholds[state.point].threshold; }

  // ----- the runtime (loaded on first use) -----
  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = el("script", { src: src });
      s.onload = resolve;
      s.onerror = () => reject(new Error("could not load " + src));
      document.head.append(s);
    });
  }

  function ready() {
    if (!state.loading) {
      state.loading = (async () => {
        status("loading onnxruntime-web and the model…");
        const start = performance.now();
        const [g] = await Promise.all([loadGallery(), window.ort ? null : loadScript(ORT + "ort.wasm.min.js")]);
        window.ort.env.wasm.numThreads = 1;
        window.ort.env.wasm.wasmPaths = ORT;
        state.session = await window.ort.InferenceSession.create(BUILD + g.extra.model,
                                                                 { executionProviders: ["wasm"] });
        status("ready: runtime and model loaded in " + Math.round(performance.now() - start) + " ms");
      })();
      state.loading.catch((e) => status("could not start: " + e.message));
    }
    return state.loading;
  }

  async function embedInput(x) {
    const g = state.gallery, shape = [1].concat(g.input.size);
    const start = performance.now();
    const out = await state.session.run({ [g.extra.input_name]: new window.ort.Tensor("float32", x, shape) });
    state.lastMs = performance.now() - start;
    return out[g.extra.output_name].data;
  }

  // ----- the page -----
  let root, canvas, ctx, preview, statusLine, results, verifyOut, enrolOut, pointInfo, select, nameBox;

  function status(text) { if (statusLine) statusLine.textContent = text; }

  function thumb(i) {
    const c = el("canvas", { width: 28, height: 28, class: "fewshot-thumb" });
    const t = state.thumbs[i], cx = c.getContext("2d");
    if (t.glyph !== undefined) {
      const cols = state.gallery.extra.glyphs.columns, cell = state.gallery.extra.glyphs.cell;
      cx.drawImage(glyphImage, (t.glyph % cols) * cell, Math.floor(t.glyph / cols) * cell, cell, cell,
                   0, 0, 28, 28);
    } else {
      drawPixels(cx, t.pixels);
    }
    return c;
  }

  function drawPixels(cx, pixels) {
    const img = cx.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      const v = Math.round(255 * pixels[i]);
      img.data.set([v, v, v, 255], 4 * i);
    }
    cx.putImageData(img, 0, 0);
  }

  function canvasAlpha() {
    const data = ctx.getImageData(0, 0, SIZE, SIZE).data;
    const alpha = new Uint8ClampedArray(SIZE * SIZE);
    for (let i = 0; i < alpha.length; i++) alpha[i] = data[4 * i + 3];
    return alpha;
  }

  // the drawing -> {pixels, x} or null when the canvas is empty
  function drawingInput() {
    const pixels = window.fewshotPreprocess.canvasToPixels(canvasAlpha(), SIZE, SIZE, state.gallery.input);
    if (!pixels) return null;
    drawPixels(preview.getContext("2d"), pixels);
    return { pixels: pixels, x: window.fewshotPreprocess.normalise(pixels, state.gallery.input) };
  }

  async function embedDrawing() {
    await ready();
    const input = drawingInput();
    if (!input) { status("draw a character first"); return null; }
    return { input: input, embedding: await embedInput(input.x) };
  }

  async function identify() {
    const e = await embedDrawing();
    if (!e) return null;
    const top = nearest(e.embedding), t = threshold();
    results.replaceChildren();
    const head = el("tr", {}, ["rank", "", "identity", "distance", "at T = " + t.toFixed(3)]
      .map((h) => el("th", { text: h })));
    results.append(head);
    top.forEach((r, k) => {
      const ok = r.distance <= t;
      results.append(el("tr", { class: ok ? "accept" : "reject" }, [
        el("td", { text: String(k + 1) }), el("td", {}, [thumb(r.index)]), el("td", { text: r.name }),
        el("td", { text: r.distance.toFixed(3) }), el("td", { text: ok ? "accept" : "reject" })]));
    });
    const best = top[0];
    status(best.distance <= threshold()
      ? "identified as “" + best.name + "” (" + state.lastMs.toFixed(1) + " ms for the embedding)"
      : "unknown: the nearest, “" + best.name + "”, is beyond the threshold (" +
        state.lastMs.toFixed(1) + " ms for the embedding)");
    return top;
  }

  async function verify() {
    const e = await embedDrawing();
    if (!e) return null;
    const i = Number(select.value), t = threshold();
    const d = distance(e.embedding, state.templates[i], state.gallery.metric);
    const ok = d <= t;
    verifyOut.replaceChildren(thumb(i), document.createTextNode(
      " claim “" + state.names[i] + "”: distance " + d.toFixed(3) + (ok ? " ≤ " : " > ") + "T = " +
      t.toFixed(3) + ": " + (ok ? "accepted" : "rejected")));
    verifyOut.classList.toggle("accept", ok);
    verifyOut.classList.toggle("reject", !ok);
    return { accepted: ok, distance: d };
  }

  async function enrol() {
    const name = (nameBox.value || "").trim();
    if (!name) { enrolOut.textContent = "type a name first"; return null; }
    const e = await embedDrawing();
    if (!e) return null;
    let i = state.names.indexOf(name);
    const replaced = i >= 0;
    if (!replaced) {
      i = state.names.length;
      state.names.push(name);
      select.append(el("option", { value: String(i), text: name }));
    }
    state.templates[i] = Float32Array.from(e.embedding);
    state.thumbs[i] = { pixels: e.input.pixels };
    enrolOut.replaceChildren(thumb(i), document.createTextNode(
      (replaced ? " re-enrolled “" : " enrolled “") + name + "” with one drawing; the gallery holds " +
      state.names.length + " identities. Draw it again and press Identify."));
    return { index: i, name: name };
  }

  function showPoint() {
    const p = state.gallery.thresholds[state.point];
    const op = (state.gallery.extra.operating_points || []).find((o) => o.far === p.far);
    pointInfo.textContent = "T = " + p.threshold.toFixed(3) + (op
      ? " · on the test characters: TAR " + pct(op.test_tar) + ", FAR " + pct(op.test_far) +
        " (calibrated on other characters: TAR " + pct(op.calibration_tar) + ")"
      : "");
  }

  let glyphImage = null;

  function build(container) {
    root = container;
    const note = root.querySelector(".fewshot-demo-note");
    if (note) note.remove();
    canvas = el("canvas", { width: SIZE, height: SIZE, class: "fewshot-canvas",
                            "aria-label": "drawing canvas" });
    ctx = canvas.getContext("2d", { willReadFrequently: true });
    preview = el("canvas", { width: 28, height: 28, class: "fewshot-preview" });
    statusLine = el("p", { class: "fewshot-status", text: "draw a character (the model loads on the first stroke)" });
    results = el("table", { class: "fewshot-results" });
    verifyOut = el("div", { class: "fewshot-verify-out" });
    enrolOut = el("div", { class: "fewshot-enrol-out" });
    pointInfo = el("span", { class: "fewshot-point-info" });
    select = el("select", { class: "fewshot-claim", "aria-label": "claimed identity" });
    nameBox = el("input", { type: "text", class: "fewshot-name", placeholder: "my symbol",
                            "aria-label": "name to enrol" });
    const tools = el("div", { class: "fewshot-tools" }, [
      el("button", { type: "button", class: "fewshot-pen active", text: "Pen", onclick: () => tool("pen") }),
      el("button", { type: "button", class: "fewshot-eraser", text: "Eraser", onclick: () => tool("eraser") }),
      el("button", { type: "button", class: "fewshot-clear", text: "Clear", onclick: clear })]);
    const points = el("fieldset", { class: "fewshot-points" }, [el("legend", { text: "Operating point" })]);
    const strip = el("div", { class: "fewshot-strip" });
    root.append(
      el("div", { class: "fewshot-row" }, [
        el("div", {}, [canvas, tools]),
        el("div", { class: "fewshot-side" }, [
          el("div", { class: "fewshot-input" }, [preview, el("span", { text: "what the network sees (28 × 28)" })]),
          points, pointInfo])]),
      statusLine,
      el("div", { class: "fewshot-actions" }, [
        el("button", { type: "button", class: "fewshot-identify", text: "Identify", onclick: () => identify() }),
        el("span", { text: " Verify against " }), select,
        el("button", { type: "button", class: "fewshot-verify", text: "Verify", onclick: () => verify() }),
        el("span", { text: " Enrol as " }), nameBox,
        el("button", { type: "button", class: "fewshot-enrol", text: "Enrol", onclick: () => enrol() })]),
      results, verifyOut, enrolOut, strip);

    let drawing = false;
    canvas.addEventListener("pointerdown", (ev) => {
      ready();
      drawing = true;
      canvas.setPointerCapture(ev.pointerId);
      ctx.globalCompositeOperation = state.tool === "pen" ? "source-over" : "destination-out";
      ctx.lineWidth = state.tool === "pen" ? PEN : ERASER;
      ctx.lineCap = ctx.lineJoin = "round";
      ctx.strokeStyle = "#111";
      const p = at(ev);
      ctx.beginPath();
      ctx.moveTo(p.x, p.y);
      ctx.lineTo(p.x + 0.01, p.y);
      ctx.stroke();
    });
    canvas.addEventListener("pointermove", (ev) => {
      if (!drawing) return;
      const p = at(ev);
      ctx.lineTo(p.x, p.y);
      ctx.stroke();
    });
    const end = () => {
      if (!drawing) return;
      drawing = false;
      if (state.gallery && drawingInput()) ready().then(() => identify()).catch(() => null);
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    root.addEventListener("click", () => ready(), { once: true });

    loadGallery().then((g) => {
      g.thresholds.forEach((t, k) => {
        const id = "fewshot-far-" + k;
        const radio = el("input", { type: "radio", name: "fewshot-far", id: id, value: String(k) });
        radio.checked = k === state.point;
        radio.addEventListener("change", () => { state.point = k; showPoint(); });
        points.append(radio, el("label", { for: id, text: " FAR " + target(t.far) + " " }));
      });
      showPoint();
      state.names.forEach((n, i) => select.append(el("option", { value: String(i), text: n })));
      glyphImage = el("img", { src: BUILD + g.extra.glyphs.file, class: "fewshot-glyphs",
                               alt: "the " + g.identities.length + " characters enrolled on load" });
      strip.append(el("p", { text: "Gallery on load: " + g.identities.length + " evaluation characters (" +
                                   g.extra.data + "), one image each, none of which the network (" +
                                   g.extra.method + ") trained on." }), glyphImage);
    }).catch((e) => status(window.location.protocol === "file:"
      ? "browsers refuse to load the model from file://: serve the book over http, e.g. " +
        "python -m http.server -d _build/html"
      : "could not load the gallery: " + e.message));
  }

  function at(ev) {
    const box = canvas.getBoundingClientRect();
    return { x: ((ev.clientX - box.left) * SIZE) / box.width, y: ((ev.clientY - box.top) * SIZE) / box.height };
  }

  function tool(name) {
    state.tool = name;
    root.querySelector(".fewshot-pen").classList.toggle("active", name === "pen");
    root.querySelector(".fewshot-eraser").classList.toggle("active", name === "eraser");
  }

  function clear() {
    ctx.clearRect(0, 0, SIZE, SIZE);
    preview.getContext("2d").clearRect(0, 0, 28, 28);
    results.replaceChildren();
  }

  // ----- the test hook -----
  window.fewshotDemo = {
    ready: ready,
    // 784 pixel values 0..255 (a training image's bytes) -> {embedding, top, ms}
    embedPixels: async (array) => {
      await ready();
      const x = window.fewshotPreprocess.normalise(Array.from(array, (v) => v / 255), state.gallery.input);
      const embedding = await embedInput(x);
      return { embedding: Array.from(embedding),
               top: nearest(embedding).map((r) => ({ name: r.name, distance: r.distance,
                                                     identity: state.gallery.identities[r.index] })),
               ms: state.lastMs };
    },
    // mean milliseconds per embedding of one 28 x 28 input, over n runs after one warm-up run
    benchmark: async (n) => {
      await ready();
      const x = new Float32Array(784).fill(-state.gallery.input.mean / state.gallery.input.std);
      await embedInput(x);
      const start = performance.now();
      for (let i = 0; i < n; i++) await embedInput(x);
      return (performance.now() - start) / n;
    },
    canvasAlpha: () => Array.from(canvasAlpha()),
    drawingPixels: () => { const d = drawingInput(); return d ? Array.from(d.pixels) : null; },
    identify: identify, verify: verify, enrol: enrol, clear: () => clear(),
    state: state,
  };

  function start() {
    document.querySelectorAll(".fewshot-demo").forEach((c) => { if (!root) build(c); });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
