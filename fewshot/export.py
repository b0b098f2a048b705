"""Deployment: the embedding network as one ONNX file, and everything a deployed system needs
(chapter 11, ``python -m fewshot export --out DIR``).

* :func:`export_onnx` writes the embedding network alone (input ``images (B, 1, 28, 28)`` float32,
  normalised as the book normalises; output ``embeddings (B, D)``; the batch axis is dynamic) with
  ``torch.onnx.export``, and records the trained network's fingerprint in the file.
* :class:`OnnxEmbedding` runs that file in onnxruntime and is called like a model, so a
  :class:`~fewshot.verify.Gallery` accepts it (same fingerprint); :func:`onnx_parity` compares it
  with torch.
* :func:`canvas_to_pixels` turns a drawing into a 28 × 28 image the way the training images are
  made. It is the Python reference of the browser demo's ``preprocess.js``, step for step.
* :func:`build_demo` writes the model, the gallery and its calibrated thresholds (as JSON,
  :meth:`~fewshot.verify.Gallery.export`), a strip of the enrolled characters and a few known
  probes: what the chapter's live page loads. The last two are for the book only (the page shows
  the reader who is enrolled; the browser check reads the probes): a real deployment ships neither,
  since enrolment images are what a template exists to avoid storing.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from . import protocol
from .characters import character_names, characters_kind
from .checks import check_int, check_tensor
from .data import MNIST_MEAN, MNIST_STD
from .models import EmbeddingNet, embed
from .run import Run
from .verify import FAR_TARGETS, Gallery, model_fingerprint

INPUT, OUTPUT = "images", "embeddings"  # the ONNX graph's input and output names
IMAGE_SHAPE = (1, 28, 28)
OPSET = 18  # the oldest opset the dynamo exporter writes; onnxruntime (and -web) ≥ 1.14 run it
INK_CUTOFF = 0.5  # a pixel with at least half the full ink counts for the bounding box
INK = "light on dark"  # the training images: white strokes (255) on a black background (0)
# model: the network; gallery: templates, thresholds, preprocessing recipe; glyphs, probes: the
# enrolled images and a few test images, for the book's reader and browser check only
FILES = {"model": "model.onnx", "gallery": "gallery.json", "glyphs": "glyphs.png",
         "probes": "probes.json"}
GLYPH_COLUMNS = 32  # the strip of enrolled characters: this many 28 × 28 cells a row


def embedding_network(model: nn.Module) -> EmbeddingNet:
    """The :class:`~fewshot.models.EmbeddingNet` inside ``model`` (or ``model`` itself)."""
    net = model if isinstance(model, EmbeddingNet) else getattr(model, "embedding_net", None)
    if not isinstance(net, EmbeddingNet):
        raise TypeError(f"model must be an EmbeddingNet or wrap one as .embedding_net (the book's "
                        f"networks), got {type(model).__name__}")
    return net


def _writable(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {what} to {path}: folder {path.parent} does not exist")
    if path.is_dir() or not os.access(path.parent, os.W_OK):
        raise ValueError(f"cannot write {what} to {path}: not a writable file path")
    return path


def export_onnx(model: nn.Module, path: str | os.PathLike, *, opset: int = OPSET) -> Path:
    """Write ``model``'s embedding network to ``path`` as one ONNX file (weights inside).

    ``images (B, 1, 28, 28)`` → ``embeddings (B, D)``, batch size ``B`` free, in eval mode
    (BatchNorm uses its running statistics). The file's metadata holds ``fewshot_fingerprint``,
    :func:`~fewshot.verify.model_fingerprint` of the embedding network, so a gallery enrolled with
    the torch network accepts the exported one and refuses any other. ``model`` is left as it was.
    """
    net = embedding_network(model)
    path = _writable(path, "the ONNX model")
    opset = check_int(opset, "opset", 18)
    fingerprint = model_fingerprint(net)
    copy_ = copy.deepcopy(net).cpu().eval()
    example = torch.zeros(2, *IMAGE_SHAPE)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(copy_, (example,), None, dynamo=True, opset_version=opset,
                                    dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                                    input_names=[INPUT], output_names=[OUTPUT], verbose=False)
        program.model.metadata_props["fewshot_fingerprint"] = fingerprint
        program.model.metadata_props["fewshot_embedding_size"] = str(net.embed_dim)
        partial = path.with_name(path.name + ".partial")
        try:
            program.save(str(partial), external_data=False)
            os.replace(partial, path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ValueError(f"cannot write the ONNX model to {path}: {exc.strerror or exc}") from exc
    return path


def _check_images(images: object) -> torch.Tensor:
    images = check_tensor(images, "images")
    if images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor (B, 1, 28, 28), got shape "
                         f"{tuple(images.shape)} and dtype {images.dtype}")
    return images


class OnnxEmbedding:
    """An ONNX file written by :func:`export_onnx`, run by onnxruntime on the CPU.

    Call it like a model: ``images (B, 1, 28, 28)`` → CPU float32 ``embeddings (B, D)``.
    ``fingerprint`` is the trained network's, read from the file: :class:`~fewshot.verify.Gallery`
    treats the two as the same model.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such ONNX file")
        try:
            self.session = onnxruntime.InferenceSession(str(self.path),
                                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types: a corrupt or foreign file
            raise ValueError(f"{self.path} is not an ONNX model onnxruntime can load: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        self.fingerprint: str | None = meta.get("fewshot_fingerprint")
        names = ([i.name for i in self.session.get_inputs()],
                 [o.name for o in self.session.get_outputs()])
        if self.fingerprint is None or names != ([INPUT], [OUTPUT]):
            raise ValueError(f"{self.path} was not written by fewshot.export.export_onnx (inputs and "
                             f"outputs {names}, fingerprint {self.fingerprint})")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = _check_images(images).detach().cpu().float().contiguous().numpy()
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: x})[0])

    def __repr__(self) -> str:
        return f"OnnxEmbedding({str(self.path)!r})"


def onnx_parity(model: nn.Module, path: str | os.PathLike, images: torch.Tensor) -> float:
    """The largest absolute difference between torch's and onnxruntime's embeddings of ``images``.

    Args:
        model: the network that was exported (or the model around it).
        path: the file :func:`export_onnx` wrote for it; a file of another model is refused.
        images: ``(B, 1, 28, 28)`` normalised images.
    """
    net = embedding_network(model)
    images = _check_images(images)
    onnx = OnnxEmbedding(path)
    if onnx.fingerprint != model_fingerprint(net):
        raise ValueError(f"{path} holds another model (fingerprint {onnx.fingerprint}) than the one "
                         f"given ({model_fingerprint(net)})")
    theirs = torch.cat([onnx(images[i:i + 1024]) for i in range(0, len(images), 1024)])
    return float((embed(net, images) - theirs).abs().max())


# ----- from a drawing to the network's input -----
def ink_extent(images: torch.Tensor) -> int:
    """The size the training images give a character: the median, over ``images (N, 1, 28, 28)``
    (normalised), of the larger side of the ink's bounding box (pixels with at least
    :data:`INK_CUTOFF` of the image's brightest ink), in pixels."""
    pixels = (_check_images(images)[:, 0] * MNIST_STD + MNIST_MEAN).clamp(0, 1)
    ink = pixels >= INK_CUTOFF * pixels.amax((1, 2), keepdim=True).clamp_min(1e-6)
    sides = []
    for axis in (1, 2):  # rows, columns that hold ink
        hit = ink.any(axis).float()  # (N, 28)
        first = hit.argmax(1)
        last = hit.shape[1] - 1 - hit.flip(1).argmax(1)
        sides.append(last - first + 1)
    return int(torch.maximum(*sides).float().median())


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)``: output pixel i averages the input over ``[i·n_in/n_out, (i+1)·n_in/n_out)``,
    each input pixel weighted by how much of it lies inside (a box filter; rows sum to 1)."""
    k = np.arange(n_in)
    lo = np.arange(n_out)[:, None] * n_in / n_out
    hi = (np.arange(n_out)[:, None] + 1) * n_in / n_out
    overlap = np.minimum(k + 1, hi) - np.maximum(k, lo)
    return np.clip(overlap, 0, None) / (n_in / n_out)


def canvas_to_pixels(ink: np.ndarray, extent: int, size: int = 28) -> np.ndarray:
    """A drawing → a ``(size, size)`` image in [0, 1], placed as the training images are.

    The browser demo (``_extra/_static/fewshot-demo/preprocess.js``) does the same, step for step:

    1. ``ink (H, W)``: the canvas's alpha channel (uint8 0–255, or floats in [0, 1]); 1 = full ink.
    2. Crop to the bounding box of the pixels with ink ≥ :data:`INK_CUTOFF`, pad it to a square
       (centred; the padding is empty).
    3. Resample the square to ``extent × extent`` by area averaging (:func:`ink_extent`: the
       characters' typical size in the training images).
    4. Paste it into ``size × size`` with its centre of mass at the centre (as the printed glyphs
       and MNIST are centred; Omniglot's characters are not re-centred, they sit where their
       writers drew them, in the middle of the frame): offset ``floor(size/2 − c)``, ink beyond the
       edge is cut.
    5. Stretch so the brightest pixel is 1, and round to 1/255 steps (the training images are bytes).
       The ink stays light on dark, as in the training images.
    """
    ink = np.asarray(ink)
    if ink.ndim != 2 or min(ink.shape) < 1:
        raise ValueError(f"ink must be a 2-D array (H, W), got shape {ink.shape}")
    ink = ink / 255.0 if ink.dtype == np.uint8 else ink.astype(np.float64)
    if not np.isfinite(ink).all() or ink.min() < 0 or ink.max() > 1:
        raise ValueError("ink must hold values in [0, 1] (or uint8 0–255)")
    extent, size = check_int(extent, "extent"), check_int(size, "size")
    if extent > size:
        raise ValueError(f"extent={extent} does not fit in size={size}")
    ys, xs = np.nonzero(ink >= INK_CUTOFF)
    if len(ys) == 0:
        raise ValueError("the drawing has no ink: draw something first")
    crop = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = crop.shape
    side = max(h, w)
    square = np.zeros((side, side))
    square[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = crop
    r = _area_weights(side, extent)
    small = r @ square @ r.T  # (extent, extent)
    total = small.sum()
    cy = (small.sum(1) * np.arange(extent)).sum() / total
    cx = (small.sum(0) * np.arange(extent)).sum() / total
    top, left = math.floor(size / 2 - cy), math.floor(size / 2 - cx)
    out = np.zeros((size, size))
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + extent, size), min(left + extent, size)
    out[y0:y1, x0:x1] = small[y0 - top:y1 - top, x0 - left:x1 - left]
    out = out / out.max()
    return np.floor(out * 255 + 0.5) / 255


def pixels_to_input(pixels: np.ndarray, normalisation: dict) -> torch.Tensor:
    """``(28, 28)`` pixels in [0, 1] → the network's input ``(1, 1, 28, 28)``:
    ``(pixels − mean) / std`` with the gallery's ``normalisation``."""
    x = torch.as_tensor(np.asarray(pixels, dtype=np.float64)).reshape(1, *IMAGE_SHAPE)
    return ((x - normalisation["mean"]) / normalisation["std"]).float()


def input_normalisation(extent: int) -> dict:
    """What :meth:`~fewshot.verify.Gallery.export` records about the input, for the demo's JS."""
    return {"mean": MNIST_MEAN, "std": MNIST_STD, "size": list(IMAGE_SHAPE), "ink": INK,
            "extent": check_int(extent, "extent"), "ink_cutoff": INK_CUTOFF,
            "placement": "centre of mass", "levels": 255}


# ----- what the chapter's page loads -----
@dataclass
class DemoBuild:
    """What :func:`build_demo` wrote and measured.

    ``eers``: calibration-split EER of every candidate method (the lowest is deployed);
    ``parity``: :func:`onnx_parity` on up to 1,000 evaluation images; ``export_seconds``: the
    time :func:`export_onnx` took; ``files``: name (:data:`FILES`) → path.
    """

    folder: Path
    method: str
    metric: str
    network: EmbeddingNet = field(repr=False)
    result: protocol.VerificationResult = field(repr=False)
    eers: dict[str, float]
    gallery: Gallery = field(repr=False)
    parity: float
    export_seconds: float
    files: dict[str, Path]
    operating_points: list[dict] = field(repr=False)


def _glyph_png(pixels: torch.Tensor, path: Path) -> None:
    """``(N, 28, 28)`` uint8 → one PNG, :data:`GLYPH_COLUMNS` cells a row (the last row padded)."""
    from PIL import Image

    n, rows = len(pixels), math.ceil(len(pixels) / GLYPH_COLUMNS)
    sheet = torch.zeros(rows * GLYPH_COLUMNS, 28, 28, dtype=torch.uint8)
    sheet[:n] = pixels
    sheet = sheet.reshape(rows, GLYPH_COLUMNS, 28, 28).permute(0, 2, 1, 3).reshape(rows * 28, -1)
    Image.fromarray(sheet.numpy(), mode="L").save(path, optimize=True)


def _as_bytes(images: torch.Tensor) -> torch.Tensor:
    return ((images[:, 0] * MNIST_STD + MNIST_MEAN) * 255).round().clamp(0, 255).to(torch.uint8)


def build_demo(run: Run, out: str | os.PathLike, *, method: str | None = None,
               probes: int = 8) -> DemoBuild:
    """Deploy chapter 9's character system, as the run trained it, to ``out``: the files of
    :data:`FILES`.

    The deployed method is ``method`` or, by default, the learned method of
    :data:`~fewshot.protocol.VERIFY_METHODS` with the lowest EER on the **calibration** characters
    (the test characters choose nothing). Its thresholds for FAR 10⁻¹, 10⁻², 10⁻³ are the ones
    :func:`~fewshot.protocol.verification_results` calibrated on the calibration split; the TAR and
    FAR beside each are measured on the test split at that threshold. The gallery enrols every
    evaluation character (none of which the network trained on) with one image, its first, as
    chapter 9's thresholds assume; ``probes`` other images of enrolled characters are written as
    known test inputs (uint8 pixels) for the browser check.
    """
    folder = Path(out)
    if not folder.is_dir():
        raise ValueError(f"out={str(folder)!r}: not an existing folder")
    probes = check_int(probes, "probes")
    learned = [m for m in protocol.VERIFY_METHODS["characters"] if m != "pixels"]
    if method is not None and method not in learned:
        raise ValueError(f"method={method!r}: expected one of {learned}")
    results = protocol.verification_results(run, "characters",
                                           methods=[method] if method else learned)
    eers = {r.method: r.calibration.eer for r in results}
    chosen = min(results, key=lambda r: r.calibration.eer)
    model, metric = protocol.verification_model(run, chosen.method, "characters")
    net = embedding_network(model)
    files = {k: folder / v for k, v in FILES.items()}
    start = time.perf_counter()
    export_onnx(net, files["model"])
    seconds = time.perf_counter() - start
    images, labels = protocol.verification_data(run, "characters")
    parity = onnx_parity(net, files["model"], images[:1000])

    ids = labels.unique().tolist()  # sorted
    first = [int((labels == c).nonzero()[0]) for c in ids]
    gallery = Gallery(net, metric)
    for c, row in zip(ids, first):
        gallery.enrol(c, images[row])
    points = []
    for far in FAR_TARGETS:
        if far in chosen.thresholds:
            t = chosen.thresholds[far]
            test_far, test_frr = chosen.test.far_frr(t)
            points.append({"far": far, "threshold": t, "test_far": test_far, "test_tar": 1 - test_frr,
                           "calibration_tar": 1 - chosen.calibration.far_frr(t)[1]})
    _glyph_png(_as_bytes(images[first]), files["glyphs"])
    step = max(1, len(ids) // probes)
    picks = [int((labels == c).nonzero()[1]) for c in ids[::step][:probes]]
    probe_data = {"format": "fewshot.export.probes/1", "identities": [int(labels[i]) for i in picks],
                  "pixels": _as_bytes(images[picks]).reshape(len(picks), -1).tolist()}
    files["probes"].write_text(json.dumps(probe_data))
    extent = ink_extent(run.characters("background")[0])
    gallery.export(files["gallery"], thresholds=chosen.thresholds,
                   normalisation=input_normalisation(extent),
                   extra={"method": chosen.method, "data": characters_kind(), "seed": run.seed,
                          "profile": run.profile.name, "names": character_names(ids),
                          "operating_points": points, "parity": parity,
                          "glyphs": {"file": FILES["glyphs"], "cell": 28, "columns": GLYPH_COLUMNS},
                          "model": FILES["model"], "input_name": INPUT, "output_name": OUTPUT})
    return DemoBuild(folder, chosen.method, metric, net, chosen, eers, gallery, parity, seconds,
                     files, points)


def demo_html(static: str = "../_static") -> str:
    """The HTML the chapter displays: a box that ``demo.js`` turns into the live page.

    ``static``: the built book's ``_static/`` folder, relative to the chapter's page. Where the
    scripts are not served (Jupyter, Colab), the box keeps its note.
    """
    base = f"{static.rstrip('/')}/fewshot-demo"
    return (f'<div class="fewshot-demo"><p class="fewshot-demo-note"><em>The live demo runs in the '
            "built book, served over http (for example <code>python -m http.server</code> in "
            "<code>_build/html</code>). Here, the chapter's Python cells do the same steps.</em></p>"
            f'</div>\n<link rel="stylesheet" href="{base}/demo.css">\n'
            f'<script src="{base}/preprocess.js"></script>\n<script src="{base}/demo.js"></script>')
