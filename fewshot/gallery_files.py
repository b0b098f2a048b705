"""The gallery's files (chapters 9 and 11): what :meth:`fewshot.verify.Gallery.save` writes and
:meth:`~fewshot.verify.Gallery.load` reads back (a ``torch.save`` file of tensors and JSON values),
and the JSON a deployment reads (:meth:`~fewshot.verify.Gallery.export`, format
:data:`EXPORT_FORMAT`). Every reader checks what it reads and names the file when it is missing,
truncated, of another kind or damaged; the gallery itself checks the model fingerprint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from numbers import Integral
from os import PathLike
from pathlib import Path

import torch

from .checks import check_finite, check_number
from .distances import METRICS
from .rates import Identity

__all__ = ["EXPORT_FORMAT", "FORMAT", "Deployment", "check_identity", "check_threshold",
           "export_normalisation", "export_thresholds", "read_export", "read_saved", "write_export"]

FORMAT = "fewshot.verify.Gallery/1"
EXPORT_FORMAT = "fewshot.verify.Gallery.export/1"  # the JSON of Gallery.export (a deployment reads it)


def check_identity(identity: object) -> Identity:
    """An enrolled identity: a str or an int (not a bool)."""
    if isinstance(identity, str):
        return identity
    if isinstance(identity, Integral) and not isinstance(identity, bool):
        return int(identity)
    raise TypeError(f"identity={identity!r}: expected a str or an int, got {type(identity).__name__}")


def check_threshold(threshold: object) -> float:
    """A distance threshold: finite and ≥ 0 (every distance of a gallery is ≥ 0)."""
    return check_number(threshold, "threshold", 0.0)


def read_saved(path: str | PathLike) -> dict:
    """The checked contents of a file written by :meth:`Gallery.save` (see :meth:`Gallery.load`)."""
    if not isinstance(path, (str, PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no gallery file at {path!s}"
                                f"{' (it is a folder)' if Path(path).is_dir() else ''}")
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # truncated zip, another format, pickled objects weights_only refuses
        reason = f"{type(exc).__name__}: {str(exc).strip().split('. ')[0][:100]}"
        raise ValueError(f"{path!s} is not a saved Gallery: torch.load cannot read it ({reason}); "
                         "it is truncated or another kind of file") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path!s} is not a saved Gallery (expected format {FORMAT!r})")
    keys = ("metric", "identities", "templates", "image_shape", "fingerprint")
    t, ids, shape = data.get("templates"), data.get("identities"), data.get("image_shape")
    problems = {f"it lacks {[k for k in keys if k not in data]}": any(k not in data for k in keys),
                "templates is not a 2-D float tensor": not (isinstance(t, torch.Tensor) and t.ndim == 2
                                                            and t.is_floating_point()),
                f"identities {ids!r:.60} do not match the templates": not isinstance(ids, list)
                or not isinstance(t, torch.Tensor) or len(ids) != len(t),
                f"metric={data.get('metric')!r}": data.get("metric") not in METRICS,
                f"image_shape={shape!r}": shape is not None and not (
                    isinstance(shape, list) and all(isinstance(n, int) and n > 0 for n in shape))}
    problem = next((what for what, bad in problems.items() if bad), None)
    if problem:
        raise ValueError(f"{path!s} is a damaged Gallery file: {problem}")
    return data

@dataclass
class Deployment:
    """What a deployed gallery needs besides its templates (:meth:`Gallery.export` writes it).

    Attributes:
        thresholds: FAR target → distance threshold, calibrated on held-out identities.
        normalisation: how an image becomes the network's input: ``mean``, ``std`` (the input is
            ``(pixels/255 − mean)/std``), ``size`` ``[C, H, W]``, ``ink`` (e.g. ``"light on dark"``),
            and any placement settings the preprocessing needs.
        extra: anything else JSON-able (names of the identities, the method, measured rates).
    """

    thresholds: dict[float, float]
    normalisation: dict
    extra: dict = field(default_factory=dict)


def export_thresholds(thresholds: object) -> dict[float, float]:
    """``{far: threshold}``: at least one, each FAR in (0, 1], each threshold finite and ≥ 0."""
    if not isinstance(thresholds, dict) or not thresholds:
        raise ValueError(f"thresholds must be a non-empty dict {{FAR target: distance threshold}}, "
                         f"got {thresholds!r}")
    out = {}
    for far, t in thresholds.items():
        far = check_number(far, "FAR target", 0.0, strict=True)
        if far > 1:
            raise ValueError(f"FAR target {far!r}: expected a number in (0, 1]")
        out[far] = check_threshold(t)
    return out


def export_normalisation(normalisation: object, image_shape: tuple[int, ...] | None) -> dict:
    """``mean``, ``std`` > 0, ``size`` (the gallery's image shape) and ``ink``, plus any other keys."""
    if not isinstance(normalisation, dict):
        raise TypeError(f"normalisation must be a dict with mean, std, size and ink, got "
                        f"{type(normalisation).__name__}")
    missing = [k for k in ("mean", "std", "size", "ink") if k not in normalisation]
    if missing:
        raise ValueError(f"normalisation lacks {missing}: expected mean, std, size [C, H, W] and ink")
    out = dict(normalisation)
    out["mean"] = check_number(out["mean"], "normalisation mean", -math.inf)
    out["std"] = check_number(out["std"], "normalisation std", 0.0, strict=True)
    size = out["size"]
    if (not isinstance(size, (list, tuple)) or not all(isinstance(v, Integral) for v in size)
            or (image_shape is not None and tuple(size) != image_shape)):
        raise ValueError(f"normalisation size={size!r}: expected the gallery's image shape "
                         f"{list(image_shape or ())} as a list [C, H, W]")
    out["size"] = [int(v) for v in size]
    if not isinstance(out["ink"], str):
        raise TypeError(f"normalisation ink={out['ink']!r}: expected a str such as 'light on dark'")
    return out

def write_export(path: str | PathLike, data: dict) -> None:
    """``data`` as JSON to ``path``, atomically: a failed write leaves no partial file. Raises
    ``ValueError`` when ``data`` holds a value JSON cannot hold (only ``data["extra"]`` can) or the
    file cannot be written."""
    try:
        text = json.dumps(data, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"extra must hold only JSON values (str, numbers, lists, dicts): "
                         f"{exc}") from exc
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write the gallery export to {target}: folder {folder} does not exist")
    partial = f"{target}.partial"
    try:
        with open(partial, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(partial, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise ValueError(f"cannot write the gallery export to {target}: "
                         f"{exc.strerror or exc}") from exc


def read_export(path: str | PathLike) -> dict:
    """The checked contents of a file written by :meth:`~fewshot.verify.Gallery.export`: its JSON
    keys, with ``templates`` a float32 tensor ``(N, D)``, ``identities`` checked, ``image_shape``
    (``input.size`` as a tuple, or ``None``) and ``deployment`` (a :class:`Deployment`).

    Raises ``ValueError`` when the file is truncated or not JSON, was written by another version of
    this format, or is inconsistent.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path!s} is not a complete gallery export (truncated or not JSON: "
                         f"{exc.msg} at character {exc.pos})") from exc
    found_format = data.get("format") if isinstance(data, dict) else None
    if found_format != EXPORT_FORMAT:
        family = EXPORT_FORMAT.split("/")[0] + "/"
        if isinstance(found_format, str) and found_format.startswith(family):
            raise ValueError(f"{path!s} was written by another version ({found_format!r}); this "
                             f"fewshot reads {EXPORT_FORMAT!r}: export the gallery again")
        raise ValueError(f"{path!s} is not a gallery export (expected format {EXPORT_FORMAT!r})")
    keys = ("metric", "embedding_size", "fingerprint", "thresholds", "input", "identities",
            "templates", "extra")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"{path!s} lacks {missing}: not a complete gallery export")
    try:
        templates = torch.tensor(data["templates"], dtype=torch.float32)
        identities = [check_identity(i) for i in data["identities"]]
        thresholds = {float(t["far"]): float(t["threshold"]) for t in data["thresholds"]}
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path!s} holds malformed templates, identities or thresholds: {exc}") from exc
    n, dim = len(identities), data["embedding_size"]
    if templates.shape != (n, dim) or n == 0 or len(set(identities)) != n:
        raise ValueError(f"{path!s}: {n} identities (unique: {len(set(identities))}) and templates "
                         f"of shape {tuple(templates.shape)}: expected ({n}, {dim}), n ≥ 1")
    shape = data["input"].get("size") if isinstance(data["input"], dict) else None
    image_shape = tuple(shape) if isinstance(shape, list) else None
    deployment = Deployment(export_thresholds(thresholds),
                            export_normalisation(data["input"], image_shape),
                            data["extra"] if isinstance(data["extra"], dict) else {})
    return {**data, "templates": check_finite(templates, "templates"), "identities": identities,
            "image_shape": image_shape, "deployment": deployment}
