"""Many identities: Omniglot characters, or printed characters when offline.

``load_characters(split)`` returns ``(images, labels)`` for a one-shot benchmark with hundreds of
classes: ``images`` is a float32 tensor ``(N, 1, 28, 28)`` normalised exactly like MNIST
(``(pixels/255 − MNIST_MEAN)/MNIST_STD``, white strokes on black), ``labels`` an int64 tensor
``(N,)`` of character ids that are unique across both splits. The two splits share no character:
the net trains on ``"background"`` characters and is tested on ``"evaluation"`` characters it has
never seen. 20 images per character.

Where the characters come from, decided once per process:

1. ``torchvision.datasets.Omniglot`` (Lake et al. 2015): 1,623 hand-drawn characters from 50
   alphabets, 964 background / 659 evaluation, 20 drawers each. Downloaded once into
   ``FEWSHOT_DATA_DIR`` (default ``~/.cache/fewshot``) from ``Omniglot.download_url_prefix``, each
   zip checked against ``Omniglot.zips_md5``; the download is staged in a temporary folder and
   moved into place only when both splits arrived whole. The images are read in the documented
   layout, ``omniglot-py/images_{background,evaluation}/<alphabet>/<character>/NNNN_NN.png``,
   resized from 105×105 to 28×28 and inverted.
2. If that cannot download (no internet, a timeout, corrupt files) or ``FEWSHOT_OFFLINE=1``:
   **printed characters** rendered from the fonts matplotlib ships. Each class is one Unicode
   character (letters, digits, symbols) drawn by at least 8 of 16 font faces; each image is one
   face ("writer") with a random affine distortion, a smooth elastic warp and a stroke-thickness
   change. See :func:`printed_characters` for the recipe.

:func:`characters_source` says in one line which source is in use; :func:`character_names` gives
a printable name for each label (to title a gallery).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checks import check_choice, check_int
from .config import DEFAULT_SEED, get_profile, settings
from .data import MNIST_MEAN, MNIST_STD, data_dir, plain_reason, staged_download

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
_CACHE_VERSION = 1

_MEMORY: dict[tuple, dict] = {}  # generated printed characters, keyed by ("printed", seed)
OMNIGLOT_ROOT = "omniglot-py"  # torchvision's folder for Omniglot inside the data directory
OMNIGLOT_FOLDERS = {BACKGROUND_SPLIT: "images_background", EVALUATION_SPLIT: "images_evaluation"}


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


# --------------------------------------------------------------------------------------------
# Where things live


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _load_cache(path: Path) -> dict | None:
    """The tensors saved at ``path``, or ``None`` if missing or unreadable (a corrupt file is a miss)."""
    try:
        blob = torch.load(path, weights_only=True)
    except Exception:  # missing, truncated, not a torch file: regenerate
        return None
    if not isinstance(blob, dict) or blob.get("version") != _CACHE_VERSION:
        return None
    return blob


def _save_cache(path: Path, blob: dict) -> None:
    """Write ``blob`` atomically (temporary file, then rename); an unwritable dir keeps it in memory."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(blob, fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass


def _valid_pixels(blob: dict, key: str) -> bool:
    px, y = blob.get(f"{key}_pixels"), blob.get(f"{key}_labels")
    return (isinstance(px, torch.Tensor) and isinstance(y, torch.Tensor) and px.dtype == torch.uint8
            and px.ndim == 3 and tuple(px.shape[1:]) == (28, 28) and len(px) == len(y) > 0)


# --------------------------------------------------------------------------------------------
# Source 1: Omniglot


def _omniglot_folder(folder: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """One Omniglot split from its folder in the documented layout,
    ``<alphabet>/<character>/NNNN_NN.png`` (sorted by alphabet, then character), as inverted
    28×28 uint8 pixels ``(N, 28, 28)``, labels ``(N,)`` and ``alphabet/character`` names."""
    from PIL import Image

    names = sorted(f"{a.name}/{c.name}" for a in folder.iterdir() if a.is_dir()
                   for c in a.iterdir() if c.is_dir())
    if not names:
        raise RuntimeError(f"no characters in {folder.name}: the files are incomplete")
    pixels, labels = [], []
    for target, name in enumerate(names):
        files = sorted((folder / name).glob("*.png"))
        if not files:
            raise RuntimeError(f"character {name} has no images: the files are incomplete")
        for file in files:
            with Image.open(file) as im:
                pixels.append(torch.from_numpy(np.asarray(im.convert("L"), dtype=np.uint8).copy()))
            labels.append(target)
    big = torch.stack(pixels).float().unsqueeze(1) / 255.0  # (N, 1, 105, 105), black ink on white
    small = F.interpolate(1.0 - big, size=(28, 28), mode="area")  # inverted: white ink on black
    small = small / small.amax((2, 3), keepdim=True).clamp_min(1e-6)
    return (small[:, 0] * 255).round().to(torch.uint8), torch.tensor(labels), names


def _omniglot_files(root: Path) -> dict[str, tuple]:
    """Both splits from torchvision's Omniglot files under ``root``: each zip is checked against
    its MD5 by ``Omniglot(download=False)`` (which raises if it is missing or corrupt), then the
    extracted images are read from disk."""
    from torchvision.datasets import Omniglot

    out = {}
    for split, folder in OMNIGLOT_FOLDERS.items():
        Omniglot(str(root), background=(split == BACKGROUND_SPLIT), download=False)
        out[split] = _omniglot_folder(root / OMNIGLOT_ROOT / folder)
    return out


def _omniglot(root: Path) -> tuple[dict, str]:
    """Both Omniglot splits, downloaded (staged, MD5-checked) if not yet in ``root``, and how they
    were had; converted once, then cached as a tensor file."""
    from torchvision.datasets import Omniglot

    path = root / "omniglot_28x28.pt"
    blob = _load_cache(path)
    if blob is not None and all(_valid_pixels(blob, s) for s in SPLITS):
        return blob, "torchvision"
    try:
        splits, how = _omniglot_files(root), "torchvision"
    except Exception:  # not there yet, or incomplete: download both zips into a staging folder
        with staged_download(root, OMNIGLOT_ROOT) as tmp:
            for split in SPLITS:
                Omniglot(str(tmp), background=(split == BACKGROUND_SPLIT), download=True)
            _omniglot_files(tmp)  # every image reads before anything is replaced
        splits = _omniglot_files(root)
        how = f"downloaded from {Omniglot.download_url_prefix.split('://')[-1].split('/')[0]}"
    (bg_px, bg_y, bg_names), (ev_px, ev_y, ev_names) = splits[BACKGROUND_SPLIT], splits[EVALUATION_SPLIT]
    blob = {"version": _CACHE_VERSION, "source": "omniglot",
            "background_pixels": bg_px, "background_labels": bg_y,
            "evaluation_pixels": ev_px, "evaluation_labels": ev_y + len(bg_names),  # global ids
            "names": bg_names + ev_names}
    _save_cache(path, blob)
    return blob, how


# --------------------------------------------------------------------------------------------
# Source 2: printed characters


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


def _glyph_table() -> dict:
    """Every class's clean glyph in every face that draws it (seed-independent, so cached in memory).

    Returns a dict with ``codes`` (C,) int64 code points in order, ``canvases`` (G, 56, 56) float32
    clean centred glyphs, ``glyph_class`` (G,) and ``glyph_face`` (G,) saying whose glyph each is.
    """
    if ("glyphs",) in _MEMORY:
        return _MEMORY[("glyphs",)]
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
    _MEMORY[("glyphs",)] = table
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
    seed = _check_seed(seed)
    table = _glyph_table()
    n = len(table["codes"])
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    n_eval = round(n * EVALUATION_FRACTION)
    split_classes = {EVALUATION_SPLIT: order[:n_eval].sort().values,
                     BACKGROUND_SPLIT: order[n_eval:].sort().values}
    held = torch.tensor([FACES.index(f) for f in HELD_OUT_FACES])
    blob: dict = {"version": _CACHE_VERSION, "source": "printed", "seed": seed, "codes": table["codes"]}
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


def _printed(seed: int) -> dict:
    """:func:`printed_characters`, cached on disk in ``FEWSHOT_DATA_DIR`` (a corrupt file is remade)."""
    recipe = hashlib.sha256(repr(DISTORTION).encode()).hexdigest()[:8]  # new distortions: new file
    path = data_dir() / f"printed_characters_v{_CACHE_VERSION}_{recipe}_seed{seed}.pt"
    blob = _load_cache(path)
    if (blob is not None and blob.get("seed") == seed and isinstance(blob.get("codes"), torch.Tensor)
            and all(_valid_pixels(blob, s) for s in SPLITS)):
        return blob
    blob = printed_characters(seed)
    _save_cache(path, blob)
    return blob


# --------------------------------------------------------------------------------------------
# Public API


def _check_seed(seed: object) -> int:
    return check_int(seed, "seed", minimum=0)


@functools.lru_cache(maxsize=4)  # a memo keyed by where the data lives and whether to download
def _source(root: Path, offline: bool) -> tuple[str, str, dict | None]:
    """``(kind, line, Omniglot blob or None)``: Omniglot unless offline or it cannot be had, else
    printed characters, with the reason in plain words."""
    reason = "offline: FEWSHOT_OFFLINE is set"
    if not offline:
        try:
            blob, how = _omniglot(root)
            n_bg = len(blob["background_labels"].unique())
            n_ev = len(blob["evaluation_labels"].unique())
            return ("omniglot", f"Omniglot ({n_bg} background / {n_ev} evaluation characters, "
                                f"{how})", blob)
        except Exception as exc:  # no network, timeout, corrupt download: fall back
            reason = f"offline: {plain_reason(exc)}"
    n = len(_glyph_table()["codes"])
    n_eval = round(n * EVALUATION_FRACTION)
    return ("printed", f"printed characters from matplotlib's fonts ({reason}), "
                       f"{n - n_eval} background / {n_eval} evaluation", None)


def _decide_source(quiet: bool) -> tuple[str, str, dict | None]:
    """The source for the current settings, decided once; its line is printed (``Characters:
    …``) when decided, unless ``quiet``."""
    env = settings()
    before = _source.cache_info().misses
    source = _source(env.data_dir, env.offline)
    if not quiet and _source.cache_info().misses > before:
        print(f"Characters: {source[1]}")
    return source


def _blob(seed: int, quiet: bool = True) -> dict:
    kind, _, omniglot = _decide_source(quiet)
    if kind == "omniglot":
        return omniglot
    key = ("printed", seed)
    if key not in _MEMORY:
        _MEMORY[key] = _printed(seed)
    return _MEMORY[key]


def characters_source() -> str:
    """One short line saying where the characters come from (decides the source if not yet done)."""
    return _decide_source(quiet=True)[1]


def characters_kind() -> str:
    """``"omniglot"`` or ``"printed"``: which source is in use (decides it if not yet done)."""
    return _decide_source(quiet=True)[0]


def load_characters(split: str, *, classes: int | None = None, seed: int = DEFAULT_SEED,
                    quiet: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of the character benchmark as normalised images and int64 labels.

    Args:
        split: ``"background"`` (train on these characters) or ``"evaluation"`` (unseen ones).
        classes: keep only the first ``classes`` characters of the split in a seeded order, all 20
            images of each (``None``: every character). At least 2.
        seed: picks that subset and, for printed characters, the split and the distortions.
            Omniglot's split is fixed.
        quiet: do not print the line that names the source (printed once, when the source is
            decided).

    Returns:
        ``images`` ``(N, 1, 28, 28)`` float32, normalised like MNIST (a black pixel is
        ``(0 − MNIST_MEAN)/MNIST_STD``), and ``labels`` ``(N,)`` int64 character ids, unique
        across both splits, sorted, 20 images per id.
    """
    check_choice(split, "split", SPLITS)
    seed = _check_seed(seed)
    blob = _blob(seed, quiet)
    pixels, labels = blob[f"{split}_pixels"], blob[f"{split}_labels"]
    if classes is not None:
        ids = labels.unique()
        if isinstance(classes, bool) or not isinstance(classes, int) or not 2 <= classes <= len(ids):
            raise ValueError(f"classes={classes!r}: expected an integer in 2..{len(ids)} "
                             f"(the {split} split has {len(ids)} characters) or None")
        g = torch.Generator().manual_seed(seed)
        chosen = ids[torch.randperm(len(ids), generator=g)[:classes]]
        keep = torch.isin(labels, chosen)
        pixels, labels = pixels[keep], labels[keep]
    order = torch.argsort(labels, stable=True)
    images = (pixels[order].float().unsqueeze(1) / 255.0 - MNIST_MEAN) / MNIST_STD
    return images, labels[order].long()


def character_names(labels: torch.Tensor | list[int]) -> list[str]:
    """A printable name per label id: the Unicode character, or Omniglot's ``alphabet/character``.

    Args:
        labels: ``(N,)`` label ids as returned by :func:`load_characters` (default seed's source).
    """
    ids = [int(v) for v in torch.as_tensor(labels).flatten().tolist()]
    kind, _, omniglot = _decide_source(quiet=True)
    if kind == "omniglot":
        names = omniglot["names"]
    else:
        names = [chr(c) for c in _glyph_table()["codes"].tolist()]
    bad = [i for i in ids if not 0 <= i < len(names)]
    if bad:
        raise ValueError(f"label {bad[0]!r} is not a character id: expected 0..{len(names) - 1}")
    return [names[i] for i in ids]


def load_run_characters(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``load_characters`` at the run's size: ``Profile.characters`` background characters (all of
    them on a GPU), and every evaluation character (they are only embedded, never trained on)."""
    classes = get_profile().characters if split == BACKGROUND_SPLIT else None
    return load_characters(split, classes=classes)
