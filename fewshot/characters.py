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
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .files import atomic_save
from .checks import check_choice, check_int
from .config import DEFAULT_SEED, settings
from .data import MNIST_MEAN, MNIST_STD, data_dir, plain_reason, staged_download
from .printed import (BACKGROUND_SPLIT, DISTORTION, EVALUATION_FRACTION, EVALUATION_SPLIT, SPLITS,
                      glyph_table, printed_characters)

_CACHE_VERSION = 1  # of the printed characters' file on disk
OMNIGLOT_ROOT = "omniglot-py"  # torchvision's folder for Omniglot inside the data directory
OMNIGLOT_FOLDERS = {BACKGROUND_SPLIT: "images_background", EVALUATION_SPLIT: "images_evaluation"}


# --------------------------------------------------------------------------------------------
# Where things live


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
    """Write ``blob`` atomically (:func:`fewshot.files.atomic_save`); an unwritable dir keeps it in
    memory only."""
    try:
        atomic_save(blob, path)
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


@functools.lru_cache(maxsize=4)  # a memo keyed by where the data lives and the seed
def _printed(root: Path, seed: int) -> dict:
    """:func:`printed_characters`, cached on disk in ``root`` (a corrupt file is remade)."""
    recipe = hashlib.sha256(repr(DISTORTION).encode()).hexdigest()[:8]  # new distortions: new file
    path = root / f"printed_characters_v{_CACHE_VERSION}_{recipe}_seed{seed}.pt"
    blob = _load_cache(path)
    if (blob is not None and blob.get("seed") == seed and isinstance(blob.get("codes"), torch.Tensor)
            and all(_valid_pixels(blob, s) for s in SPLITS)):
        return blob
    blob = {**printed_characters(seed), "version": _CACHE_VERSION}
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
    reason = "offline: FEWSHOT_OFFLINE=1"
    if not offline:
        try:
            blob, how = _omniglot(root)
            n_bg = len(blob["background_labels"].unique())
            n_ev = len(blob["evaluation_labels"].unique())
            return ("omniglot", f"Omniglot ({n_bg} background / {n_ev} evaluation characters, "
                                f"{how})", blob)
        except Exception as exc:  # no network, timeout, corrupt download: fall back
            reason = f"offline: {plain_reason(exc)}"
    n = len(glyph_table()["codes"])
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
    return _printed(data_dir(), seed)


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


def glyph_name(code: int) -> str:
    """A printed character's name: the character itself, or its code point (``"U+FFFD"``) in
    Unicode's Specials block (U+FFF0–U+FFFF), whose replacement character U+FFFD would read as an
    encoding error."""
    return f"U+{code:04X}" if 0xFFF0 <= code <= 0xFFFF else chr(code)


def character_names(labels: torch.Tensor | list[int]) -> list[str]:
    """A printable name per label id: the Unicode character (:func:`glyph_name`), or Omniglot's
    ``alphabet/character``.

    Args:
        labels: ``(N,)`` label ids as returned by :func:`load_characters` (default seed's source).
    """
    ids = [int(v) for v in torch.as_tensor(labels).flatten().tolist()]
    kind, _, omniglot = _decide_source(quiet=True)
    if kind == "omniglot":
        names = omniglot["names"]
    else:
        names = [glyph_name(c) for c in glyph_table()["codes"].tolist()]
    bad = [i for i in ids if not 0 <= i < len(names)]
    if bad:
        raise ValueError(f"label {bad[0]!r} is not a character id: expected 0..{len(names) - 1}")
    return [names[i] for i in ids]
