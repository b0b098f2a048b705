/* A drawing -> the network's 28 x 28 input, exactly as fewshot.export.canvas_to_pixels does it
 * (the Python reference; tests/test_export.py checks that the two agree within 1/255).
 *
 * 1. ink: the canvas's alpha channel, 0..255 (1 = full ink after dividing by 255);
 * 2. crop to the bounding box of the pixels with ink >= input.ink_cutoff, pad it to a centred square;
 * 3. resample the square to input.extent x input.extent by area averaging;
 * 4. paste it into size x size with its centre of mass at the centre: offset floor(size/2 - c);
 * 5. stretch so the brightest pixel is 1, round to 1/255 steps; light ink on a dark background.
 * normalise() then gives (pixels - mean) / std, the training images' normalisation.
 *
 * Works in the page (window.fewshotPreprocess) and in Node (module.exports).
 */
(function (root) {
  "use strict";

  // (nOut x nIn) weights: output pixel i averages the input over [i*nIn/nOut, (i+1)*nIn/nOut).
  function areaWeights(nIn, nOut) {
    const w = [];
    const scale = nIn / nOut;
    for (let i = 0; i < nOut; i++) {
      const lo = (i * nIn) / nOut, hi = ((i + 1) * nIn) / nOut;
      const row = new Float64Array(nIn);
      for (let k = 0; k < nIn; k++) {
        const overlap = Math.min(k + 1, hi) - Math.max(k, lo);
        row[k] = overlap > 0 ? overlap / scale : 0;
      }
      w.push(row);
    }
    return w;
  }

  // alpha: 0..255 values, row-major, width x height. Returns Float64Array(size*size) in [0, 1],
  // or null when there is no ink.
  function canvasToPixels(alpha, width, height, input) {
    const extent = input.extent, size = input.size[input.size.length - 1];
    const cutoff = input.ink_cutoff, levels = input.levels || 255;
    let y0 = height, y1 = -1, x0 = width, x1 = -1;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (alpha[y * width + x] / 255 >= cutoff) {
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
          if (x < x0) x0 = x;
          if (x > x1) x1 = x;
        }
      }
    }
    if (y1 < 0) return null;
    const h = y1 - y0 + 1, w = x1 - x0 + 1, side = Math.max(h, w);
    const top0 = Math.floor((side - h) / 2), left0 = Math.floor((side - w) / 2);
    const square = new Float64Array(side * side);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        square[(top0 + y) * side + left0 + x] = alpha[(y0 + y) * width + x0 + x] / 255;
      }
    }
    const r = areaWeights(side, extent);
    // tmp = r @ square  (extent x side), small = tmp @ r^T  (extent x extent)
    const tmp = new Float64Array(extent * side);
    for (let i = 0; i < extent; i++) {
      const ri = r[i];
      for (let k = 0; k < side; k++) {
        const a = ri[k];
        if (a === 0) continue;
        for (let l = 0; l < side; l++) tmp[i * side + l] += a * square[k * side + l];
      }
    }
    const small = new Float64Array(extent * extent);
    for (let i = 0; i < extent; i++) {
      for (let j = 0; j < extent; j++) {
        const rj = r[j];
        let s = 0;
        for (let l = 0; l < side; l++) s += tmp[i * side + l] * rj[l];
        small[i * extent + j] = s;
      }
    }
    let total = 0, my = 0, mx = 0;
    for (let i = 0; i < extent; i++) {
      for (let j = 0; j < extent; j++) {
        const v = small[i * extent + j];
        total += v;
        my += i * v;
        mx += j * v;
      }
    }
    const top = Math.floor(size / 2 - my / total), left = Math.floor(size / 2 - mx / total);
    const out = new Float64Array(size * size);
    let peak = 0;
    for (let i = 0; i < extent; i++) {
      for (let j = 0; j < extent; j++) {
        const y = top + i, x = left + j;
        if (y < 0 || y >= size || x < 0 || x >= size) continue;
        const v = small[i * extent + j];
        out[y * size + x] = v;
        if (v > peak) peak = v;
      }
    }
    for (let i = 0; i < out.length; i++) out[i] = Math.floor((out[i] / peak) * levels + 0.5) / levels;
    return out;
  }

  // pixels in [0, 1] -> Float32Array of (pixels - mean) / std
  function normalise(pixels, input) {
    const x = new Float32Array(pixels.length);
    for (let i = 0; i < pixels.length; i++) x[i] = (pixels[i] - input.mean) / input.std;
    return x;
  }

  const api = { areaWeights, canvasToPixels, normalise };
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.fewshotPreprocess = api;
})(typeof self !== "undefined" ? self : this);
