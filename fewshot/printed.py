"""Printed characters: a one-shot benchmark with hundreds of classes, synthesised from fonts.

The offline stand-in for Omniglot (:mod:`fewshot.characters` decides which one a run uses). Each
class is one Unicode character (letters, digits, symbols) drawn by at least ``MIN_FACES`` of the 16
font faces matplotlib ships; each image is one face (a "writer") with a random affine distortion, a
smooth elastic warp and a stroke-thickness change (:class:`Distortion`). See
:func:`printed_characters` for the recipe. Pixels are ink intensities 0..255 (ink is high), 28×28.
"""

from __future__ import annotations

import functools
import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checks import check_int
from .config import DEFAULT_SEED

BACKGROUND_SPLIT, EVALUATION_SPLIT = "background", "evaluation"
SPLITS = (BACKGROUND_SPLIT, EVALUATION_SPLIT)
INSTANCES_PER_CLASS = 20

# The printed fallback's faces ("writers"): matplotlib's Unicode text faces. Computer Modern is
# left out (its character maps follow TeX's layout, not Unicode), and so are the Display faces
# (a handful of glyphs) and STIX's size variants (big operators only).
FACES = (
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSans-BoldOblique",
    "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic", "DejaVuSerif-BoldItalic",
    "DejaVuSansMono", "DejaVuSansMono-Bold", "DejaVuSansMono-Oblique", "DejaVuSansMono-BoldOblique",
    "STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta",
)
# "New writers": faces the background split never shows, one per family. Evaluation images are
# drawn by all 16 faces, so a test character arrives partly in styles the net has never seen.
HELD_OUT_FACES = ("DejaVuSans-BoldOblique", "DejaVuSerif-Italic", "DejaVuSansMono-Bold",
                  "STIXGeneralBolIta")
MIN_FACES = 8  # a character needs this many faces to be a class
EVALUATION_FRACTION = 1 / 3  # classes split about 2:1 into background / evaluation
# Unicode blocks left out: box drawing and block elements (lines that run to the cell's edge) and
# Braille (256 dot patterns), none of which is a written character.
EXCLUDED_BLOCKS = ((0x2500, 0x259F), (0x2800, 0x28FF))

_RENDER = 56  # glyphs are rendered and distorted at 2× and pooled down to 28×28 at the end
_CAP_HEIGHT = 36  # height of "H" at 2× (18 px at 28): one font size per face, so o/O keep their sizes
_MAX_EXTENT = 44  # a glyph larger than this at 2× (22 px at 28) is shrunk to fit
_MIN_STEM = 4.0  # stems thinner than this at 2× (hairline faces) are thickened, not left grey
_MIN_EXTENT_28 = 4  # glyphs whose ink spans fewer pixels than this at 28×28 are dropped as tiny
_DUPLICATE_DISTANCE = 0.06  # RMS difference (0..1) of two clean renderings that counts as "the same"
_IDENTICAL_DISTANCE = 0.02  # RMS difference below which two renderings in one face are identical


@dataclass(frozen=True)
class Distortion:
    """How far a printed instance strays from its clean glyph (all drawn uniformly at random).

    Attributes:
        rotation_deg: rotation in ±degrees.
        shear: horizontal shear in ±(x shift per unit of y).
        scale: (low, high) overall scale.
        aspect: (low, high) width-to-height stretch.
        shift_px: translation in ±pixels (at 28×28).
        elastic_px: standard deviation of the smooth displacement field, in pixels at 28×28.
        elastic_grid: the field is drawn on a grid of this many nodes a side and upsampled
            (smaller: broader, smoother bends).
        thickness: (low, high) stroke change in pixels at 2× (−1 thins, +1.5 thickens).
    """

    rotation_deg: float = 10.0
    shear: float = 0.2
    scale: tuple[float, float] = (0.85, 1.05)
    aspect: tuple[float, float] = (0.9, 1.1)
    shift_px: float = 1.0
    elastic_px: float = 1.0
    elastic_grid: int = 4
    thickness: tuple[float, float] = (-0.5, 1.0)


DISTORTION = Distortion()


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"



def _faces() -> list:
    """The 16 faces as ``FT2Font`` objects, each sized so that its "H" is ``_CAP_HEIGHT`` high."""
    from matplotlib.ft2font import FT2Font

    faces = []
    for name in FACES:
        font = FT2Font(str(_font_dir() / f"{name}.ttf"))
        font.set_size(100, 72)
        font.set_text("H")
        font.draw_glyphs_to_bitmap(antialiased=True)
        cap = np.asarray(font.get_image()).shape[0]
        faces.append((font, 100 * _CAP_HEIGHT / cap))
    return faces


def _candidates(faces: list) -> tuple[list[int], dict[int, list[int]]]:
    """Code points of letters, digits and symbols without a decomposition, in ≥ MIN_FACES faces."""
    covered: dict[int, list[int]] = {}
    for f, (font, _) in enumerate(faces):
        for code in font.get_charmap():
            covered.setdefault(code, []).append(f)
    keep = []
    for code, fs in covered.items():
        ch = chr(code)
        cat = unicodedata.category(ch)
        if (len(fs) >= MIN_FACES and cat[0] in "LNS" and cat not in ("Lm", "Sk")
                and not unicodedata.decomposition(ch)
                and not any(lo <= code <= hi for lo, hi in EXCLUDED_BLOCKS)):
            keep.append(code)
    keep.sort()
    return keep, {c: covered[c] for c in keep}


def _render(font, size: float, code: int) -> np.ndarray:
    """One glyph's ink as a float array (h, w) in 0..1, at most ``_MAX_EXTENT`` a side."""
    font.set_size(size, 72)
    font.set_text(chr(code))
    font.draw_glyphs_to_bitmap(antialiased=True)
    ink = np.asarray(font.get_image())
    extent = max(ink.shape)
    if extent > _MAX_EXTENT:  # rare: tall or wide symbols; shrink this glyph only
        font.set_size(size * _MAX_EXTENT / (extent + 1), 72)
        font.set_text(chr(code))
        font.draw_glyphs_to_bitmap(antialiased=True)
        ink = np.asarray(font.get_image())
    return ink.astype(np.float32) / 255.0


def _centred(ink: np.ndarray) -> np.ndarray:
    """Paste ``ink`` into a ``_RENDER``² canvas with its centre of mass at the centre (as MNIST)."""
    canvas = np.zeros((_RENDER, _RENDER), np.float32)
    total = ink.sum()
    if total <= 0:
        return canvas
    h, w = ink.shape
    cy = (ink.sum(1) * np.arange(h)).sum() / total
    cx = (ink.sum(0) * np.arange(w)).sum() / total
    top, left = int(round(_RENDER / 2 - 0.5 - cy)), int(round(_RENDER / 2 - 0.5 - cx))
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, _RENDER), min(left + w, _RENDER)
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = ink[y0 - top:y1 - top, x0 - left:x1 - left]
    return canvas


def _stem_width(font, size: float) -> float:
    """The face's stroke width at 2×: ink per row across the middle of "l"."""
    ink = _render(font, size, ord("l"))
    mid = ink[ink.shape[0] // 3: 2 * ink.shape[0] // 3]
    return float(mid.sum(1).mean())


def _dilate(x: torch.Tensor) -> torch.Tensor:
    """3×3 grey-level dilation of ``(B, 1, H, W)``: a separable max (3× faster than ``max_pool2d``)."""
    p = F.pad(x, (1, 1, 1, 1))
    row = torch.maximum(torch.maximum(p[..., :, :-2], p[..., :, 1:-1]), p[..., :, 2:])
    return torch.maximum(torch.maximum(row[..., :-2, :], row[..., 1:-1, :]), row[..., 2:, :])


def _pool(canvas: torch.Tensor) -> torch.Tensor:
    """``(B, 1, 56, 56)`` → ``(B, 1, 28, 28)``, each image stretched so its brightest pixel is 1."""
    small = F.avg_pool2d(canvas, 2)
    return small / small.amax((2, 3), keepdim=True).clamp_min(1e-6)


def _rendering_distances(clean: torch.Tensor, owner: torch.Tensor, face: torch.Tensor,
                         usable: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    """How different every two classes look: RMS pixel difference (0..1) of their clean renderings
    at 14×14, averaged over the faces both have ``(n, n)``, the smallest in any one face ``(n, n)``,
    and the number of those faces ``(n, n)``."""
    dist_sum = torch.zeros(n, n)
    dist_min = torch.full((n, n), float("inf"))
    shared = torch.zeros(n, n)
    flat = F.avg_pool2d(clean.unsqueeze(1), 2).flatten(1)  # (G, 196): cheap, and as telling
    for f in face.unique().tolist():
        rows = (face == f) & usable
        cls, x = owner[rows], flat[rows]
        sq = (x * x).sum(1)
        d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0) / x.shape[1]
        block = cls[:, None], cls[None, :]
        dist_sum[block] += d2.sqrt()
        dist_min[block] = torch.minimum(dist_min[block], d2.sqrt())
        shared[block] += 1
    return dist_sum / shared.clamp_min(1), dist_min, shared


@functools.lru_cache(maxsize=1)  # seed-independent: made once per process
def glyph_table() -> dict:
    """Every class's clean glyph in every face that draws it (seed-independent, so cached in memory).

    Returns a dict with ``codes`` (C,) int64 code points in order, ``canvases`` (G, 56, 56) float32
    clean centred glyphs, ``glyph_class`` (G,) and ``glyph_face`` (G,) saying whose glyph each is.
    """
    faces = _faces()
    codes, covered = _candidates(faces)
    canvases, owner, face_of = [], [], []
    for c, code in enumerate(codes):
        for f in covered[code]:
            font, size = faces[f]
            canvases.append(_centred(_render(font, size, code)))
            owner.append(c)
            face_of.append(f)
    canvas = torch.from_numpy(np.stack(canvases)).unsqueeze(1)  # (G, 1, 56, 56)
    owner_t, face_t = torch.tensor(owner), torch.tensor(face_of)
    # Hairline faces: thicken their strokes up to _MIN_STEM so they do not come out grey at 28 px.
    for f, (font, size) in enumerate(faces):
        if _stem_width(font, size) < _MIN_STEM:
            rows = face_t == f
            canvas[rows] = _dilate(canvas[rows])
    clean = _pool(canvas)[:, 0]  # (G, 28, 28)

    # Tiny or empty glyphs: dropped per face; a character left with < MIN_FACES faces goes.
    ink = clean > 0.25
    rows_span = ink.any(2).sum(1)
    cols_span = ink.any(1).sum(1)
    big = torch.maximum(rows_span, cols_span) >= _MIN_EXTENT_28
    n_faces = torch.bincount(owner_t[big], minlength=len(codes))
    alive = n_faces >= MIN_FACES

    # Duplicates: two characters whose clean renderings match in the faces both have (Latin A,
    # Greek Α, Cyrillic А), or that are identical in any one face (italic Cyrillic т is Latin m),
    # are one class; the lowest code point names it and the other is dropped.
    n = len(codes)
    mean_dist, min_dist, shared = _rendering_distances(clean, owner_t, face_t, big & alive[owner_t], n)
    same = (((shared >= MIN_FACES // 2) & (mean_dist < _DUPLICATE_DISTANCE))
            | (min_dist < _IDENTICAL_DISTANCE))
    keep = alive.clone()
    for i in range(n):  # greedy in code-point order: a later twin of a kept class goes
        if keep[i]:
            twins = same[i].nonzero().flatten()
            keep[twins[twins > i]] = False
    kept = keep.nonzero().flatten()
    new_id = torch.full((n,), -1, dtype=torch.long)
    new_id[kept] = torch.arange(len(kept))
    rows = keep[owner_t] & big
    table = {"codes": torch.tensor(codes)[kept], "canvases": canvas[rows, 0],
             "glyph_class": new_id[owner_t[rows]], "glyph_face": face_t[rows],
             "clean": clean[rows]}
    return table


def _distort(canvas: torch.Tensor, g: torch.Generator, d: Distortion = DISTORTION) -> torch.Tensor:
    """Random affine + elastic warp + stroke change of ``(B, 1, 56, 56)`` clean glyphs → ``(B, 1, 28, 28)``."""
    B = len(canvas)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(B, generator=g)  # noqa: E731
    angle = u(-d.rotation_deg, d.rotation_deg) * math.pi / 180
    shear = u(-d.shear, d.shear)
    scale = u(*d.scale)
    aspect = u(*d.aspect)
    px = 2.0 / 28  # one pixel at 28×28 in grid_sample's [-1, 1] coordinates
    shift = u(-d.shift_px, d.shift_px), u(-d.shift_px, d.shift_px)
    # grid_sample maps each output pixel to where it reads from: the inverse of the distortion.
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx, sy = 1 / (scale * aspect.sqrt()), aspect.sqrt() / scale
    theta = torch.stack([
        torch.stack([sx * cos, sx * (-sin + shear * cos), shift[0] * px], 1),
        torch.stack([sy * sin, sy * (cos + shear * sin), shift[1] * px], 1),
    ], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, (B, 1, _RENDER, _RENDER), align_corners=False)  # (B, H, W, 2)
    coarse = torch.randn(B, 2, d.elastic_grid, d.elastic_grid, generator=g) * d.elastic_px * px
    field = F.interpolate(coarse, size=(14, 14), mode="bicubic", align_corners=True)
    field = F.interpolate(field, size=(_RENDER, _RENDER), mode="bilinear", align_corners=True)
    grid = grid + field.permute(0, 2, 3, 1)
    warped = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Stroke thickness: blend between eroded, original and dilated (by 1 and 2 px at 2×).
    t = u(*d.thickness).view(B, 1, 1, 1)
    thin = -_dilate(-warped)
    thick1 = _dilate(warped)
    thick2 = _dilate(thick1)
    out = torch.where(t < 0, warped + t * (warped - thin),
                      torch.where(t < 1, warped + t * (thick1 - warped),
                                  thick1 + (t - 1) * (thick2 - thick1)))
    return _pool(out.clamp(0, 1))


def printed_characters(seed: int = DEFAULT_SEED) -> dict:
    """Generate the printed-character benchmark (both splits) for ``seed``; no disk cache.

    Recipe: every letter, digit and symbol (no accented variants, no box drawing or Braille) that
    at least ``MIN_FACES`` of the 16 :data:`FACES` draw is a class, after dropping glyphs that are
    empty or tiny at 28×28 and merging characters whose clean renderings match (Latin A, Greek Α,
    Cyrillic А). Each face has one font size (its "H" 18 px high), so case survives (o/O). The
    classes are split about 2:1 (seeded) into background and evaluation. A class's 20 instances
    cycle through its faces in a seeded order (background: never :data:`HELD_OUT_FACES`), each
    centred by its centre of mass and distorted by :data:`DISTORTION`.

    Returns:
        A dict with ``"{split}_pixels"`` ``(N, 28, 28)`` uint8 and ``"{split}_labels"`` ``(N,)``
        int64 for both splits, and ``"codes"`` ``(C,)`` the code point of each label id.
    """
    seed = check_int(seed, "seed", minimum=0)
    table = glyph_table()
    n = len(table["codes"])
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    n_eval = round(n * EVALUATION_FRACTION)
    split_classes = {EVALUATION_SPLIT: order[:n_eval].sort().values,
                     BACKGROUND_SPLIT: order[n_eval:].sort().values}
    held = torch.tensor([FACES.index(f) for f in HELD_OUT_FACES])
    blob: dict = {"source": "printed", "seed": seed, "codes": table["codes"]}
    for split in SPLITS:
        picks = []
        for c in split_classes[split].tolist():
            rows = (table["glyph_class"] == c).nonzero().flatten()
            if split == BACKGROUND_SPLIT:
                seen = rows[~torch.isin(table["glyph_face"][rows], held)]
                rows = seen if len(seen) else rows
            rows = rows[torch.randperm(len(rows), generator=g)]
            picks.append(rows.repeat(math.ceil(INSTANCES_PER_CLASS / len(rows)))[:INSTANCES_PER_CLASS])
        picks_t = torch.cat(picks)
        pixels = torch.empty(len(picks_t), 28, 28, dtype=torch.uint8)
        for start in range(0, len(picks_t), 2048):  # in chunks: 2048 canvases are 25 MB
            rows = picks_t[start:start + 2048]
            out = _distort(table["canvases"][rows].unsqueeze(1), g)
            pixels[start:start + len(rows)] = (out[:, 0] * 255).round().to(torch.uint8)
        blob[f"{split}_pixels"] = pixels
        blob[f"{split}_labels"] = table["glyph_class"][picks_t]
    return blob
