"""Enrol, verify, identify: a one-shot recognition system (chapter 9).

A **distance** is small for "same": a probe is accepted when ``distance ≤ threshold``. The
:class:`Gallery` stores one mean embedding per identity, never images; it saves and loads itself, and
exports what a deployment needs (:meth:`Gallery.export`). The rates that measure it (ROC, EER, TAR at
a FAR, open-set DIR/FPIR) live in :mod:`fewshot.rates` and are re-exported here, so a chapter reads
``verify.threshold_at_far`` next to ``verify.Gallery``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Integral
from os import PathLike
from pathlib import Path

import torch

from .checks import check_embeddings, check_finite, check_number, check_tensor
from .distances import METRICS, check_metric, pairwise
from .rates import (FAR_TARGETS, Identity, OpenSetRates, VerificationRates, open_set_rates,
                    threshold_at_far, verification_rates)

__all__ = ["BATCH", "EXPORT_FORMAT", "FAR_TARGETS", "FORMAT", "Deployment", "EmbedFn", "Gallery", "Identity",
           "OpenSetRates", "VerificationRates", "model_fingerprint", "open_set_rates", "threshold_at_far",
           "verification_rates"]

EmbedFn = Callable[[torch.Tensor], torch.Tensor]
FORMAT = "fewshot.verify.Gallery/1"
EXPORT_FORMAT = "fewshot.verify.Gallery.export/1"  # the JSON of Gallery.export (a deployment reads it)
BATCH = 1024


def _module_of(embed: EmbedFn) -> torch.nn.Module | None:
    """The module behind ``embed``: the module itself, or the owner of a bound method; else None."""
    if isinstance(embed, torch.nn.Module):
        return embed
    owner = getattr(embed, "__self__", None)
    return owner if isinstance(owner, torch.nn.Module) else None


def model_fingerprint(embed: EmbedFn) -> str | None:
    """sha256 over the state dict (names, dtypes, shapes, bytes) of the module behind ``embed``.

    ``None`` when ``embed`` is a plain function (a lambda, ``flatten``): there is nothing to hash.
    A function that carries its model's fingerprint as a ``fingerprint`` string (the exported network
    in onnxruntime, :class:`fewshot.export.OnnxEmbedding`) gives that string.
    """
    carried = getattr(embed, "fingerprint", None)
    if isinstance(carried, str):
        return carried
    module = _module_of(embed)
    if module is None:
        return None
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_identity(identity: object) -> Identity:
    if isinstance(identity, str):
        return identity
    if isinstance(identity, Integral) and not isinstance(identity, bool):
        return int(identity)
    raise TypeError(f"identity={identity!r}: expected a str or an int, got {type(identity).__name__}")


def _check_threshold(threshold: object) -> float:
    """A distance threshold: finite and ≥ 0 (every distance of a gallery is ≥ 0)."""
    return check_number(threshold, "threshold", 0.0)


def _read_gallery_file(path: str | PathLike) -> dict:
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


def _export_thresholds(thresholds: object) -> dict[float, float]:
    """``{far: threshold}``: at least one, each FAR in (0, 1], each threshold finite and ≥ 0."""
    if not isinstance(thresholds, dict) or not thresholds:
        raise ValueError(f"thresholds must be a non-empty dict {{FAR target: distance threshold}}, "
                         f"got {thresholds!r}")
    out = {}
    for far, t in thresholds.items():
        far = check_number(far, "FAR target", 0.0, strict=True)
        if far > 1:
            raise ValueError(f"FAR target {far!r}: expected a number in (0, 1]")
        out[far] = _check_threshold(t)
    return out


def _export_normalisation(normalisation: object, image_shape: tuple[int, ...] | None) -> dict:
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


class Gallery:
    """One mean embedding per enrolled identity; identify and verify probes against them.

    Args:
        embed: images ``(B, C, H, W)`` → embeddings ``(B, D)``, e.g. ``model.get_embedding``. When it is
            a module or a bound method of one, the module runs in eval mode under ``torch.no_grad()``
            on its own device (its train/eval mode is restored afterwards); images go in chunks of 1024.
        metric: ``"euclidean"`` (plain ``‖x − y‖``) or ``"cosine"`` (``1 − cos(x, y)``).

    Re-enrolling an identity replaces its template; :meth:`enrol` returns True when it did.
    """

    def __init__(self, embed: EmbedFn, metric: str = "euclidean") -> None:
        if not callable(embed):
            raise TypeError(f"embed must be callable (images → embeddings), got {type(embed).__name__}")
        check_metric(metric)
        self.embed = embed
        self.metric = metric
        self._identities: list[Identity] = []
        self._templates = torch.empty(0, 0)  # (N, D) mean embeddings, row i ↔ self._identities[i]
        self._image_shape: tuple[int, ...] | None = None  # (C, H, W) of the first enrolment
        self.deployment: Deployment | None = None  # what from_export read besides the templates

    # ----- embedding -----
    def _batch(self, images: object) -> torch.Tensor:
        """``images`` as a non-empty batch ``(B, C, H, W)``; one image ``(C, H, W)`` becomes ``B = 1``."""
        images = check_finite(check_tensor(images, "images"), "images")
        shape = tuple(images.shape)
        if self._image_shape is None:
            if images.ndim not in (3, 4):
                raise ValueError(f"images must be (K, C, H, W) or one (C, H, W) image, got shape {shape}")
            batch = images if images.ndim == 4 else images[None]
        elif shape == self._image_shape:
            batch = images[None]
        elif shape[1:] == self._image_shape:
            batch = images
        else:
            raise ValueError(f"images have shape {shape}: expected (B, *{self._image_shape}) or "
                             f"{self._image_shape}, the shape of the first enrolment")
        if len(batch) == 0:
            raise ValueError(f"images is empty (shape {shape}): expected at least one image")
        return batch

    @torch.no_grad()
    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → CPU float ``(B, D)``; raises on a wrong row count or NaN embeddings."""
        module = _module_of(self.embed)
        device, was_training = torch.device("cpu"), False
        if module is not None:
            was_training = module.training
            module.eval()
            first = next(module.parameters(), None)
            first = next(module.buffers(), None) if first is None else first
            device = first.device if first is not None else device
        try:
            chunks = []
            for start in range(0, len(images), BATCH):
                chunk = images[start:start + BATCH]
                out = check_tensor(self.embed(chunk.to(device)), "embed(images)")
                if out.ndim == 0 or len(out) != len(chunk):
                    raise ValueError(f"embed returned shape {tuple(out.shape)} for {len(chunk)} images: "
                                     f"expected {len(chunk)} rows (B, D)")
                chunks.append(out.float().cpu())
        finally:
            if module is not None:
                module.train(was_training)
        emb = check_embeddings(torch.cat(chunks), "embed(images)")
        if len(self._identities) and emb.shape[1] != self._templates.shape[1]:
            raise ValueError(f"embed returned {emb.shape[1]}-D embeddings; the gallery holds "
                             f"{self._templates.shape[1]}-D ones")
        return emb

    # ----- enrolment -----
    def enrol(self, identity: Identity, images: torch.Tensor) -> bool:
        """Store the mean embedding of ``images`` (``(K, C, H, W)`` or one ``(C, H, W)``) as ``identity``.

        Template = ``(1/K) Σₖ embed(imageₖ)`` (for cosine, only its direction matters).
        Returns True when ``identity`` was already enrolled and has been replaced, else False.
        """
        identity = _check_identity(identity)
        batch = self._batch(images)
        template = self._embed(batch).mean(0)  # (D,)
        if self._image_shape is None:
            self._image_shape = tuple(batch.shape[1:])
        if identity in self._identities:
            self._templates[self._identities.index(identity)] = template
            return True
        self._identities.append(identity)
        self._templates = template[None] if len(self._identities) == 1 else torch.cat(
            [self._templates, template[None]])
        return False

    def _check_not_empty(self) -> None:
        if not self._identities:
            raise ValueError("the gallery is empty: enrol at least one identity first")

    # ----- search -----
    def identify(self, images: torch.Tensor,
                 threshold: float | None = None) -> tuple[list[Identity | None], torch.Tensor]:
        """Nearest enrolled identity of each probe: open-set identification at rank 1.

        Args:
            images: probes ``(B, C, H, W)`` (or one ``(C, H, W)``).
            threshold: a probe whose nearest distance is ``> threshold`` comes back as ``None``
                (unknown). ``None`` (default): always return the nearest identity (a plain search).

        Returns:
            ``(identities, distances)``: a list of ``B`` identities (or ``None``) and the distances
            ``(B,)`` to the nearest template. Ties go to the identity enrolled first.
        """
        self._check_not_empty()
        limit = None if threshold is None else _check_threshold(threshold)
        dist = pairwise(self._embed(self._batch(images)), self._templates, self.metric)  # (B, N)
        nearest, index = dist.min(1)
        names = [self._identities[i] for i in index.tolist()]
        if limit is not None:
            names = [n if d <= limit else None for n, d in zip(names, nearest.tolist())]
        return names, nearest

    def verify(self, identity: Identity, images: torch.Tensor,
               threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Accept each probe as ``identity`` when ``distance(probe, template) ≤ threshold``.

        Returns:
            ``(accepted, distances)``: bool ``(B,)`` and float ``(B,)``.
        """
        self._check_not_empty()
        identity = _check_identity(identity)
        if identity not in self._identities:
            known = ", ".join(repr(i) for i in self._identities[:10])
            more = ", …" if len(self._identities) > 10 else ""
            raise ValueError(f"identity={identity!r} is not enrolled (enrolled: {known}{more})")
        limit = _check_threshold(threshold)
        template = self._templates[self._identities.index(identity)][None]  # (1, D)
        dist = pairwise(self._embed(self._batch(images)), template, self.metric)[:, 0]  # (B,)
        return dist <= limit, dist

    # ----- bookkeeping -----
    @property
    def identities(self) -> list[Identity]:
        """Enrolled identities, in enrolment order (a copy)."""
        return list(self._identities)

    @property
    def templates(self) -> torch.Tensor:
        """The stored mean embeddings ``(N, D)``, row i ↔ ``identities[i]`` (a copy)."""
        return self._templates.clone()

    def __len__(self) -> int:
        return len(self._identities)

    def __contains__(self, identity: object) -> bool:
        return identity in self._identities

    def __repr__(self) -> str:
        if not self._identities:
            return f"Gallery(empty, metric={self.metric!r})"
        shown = ", ".join(repr(i) for i in self._identities[:5]) + (", …" if len(self) > 5 else "")
        return (f"Gallery({len(self)} identities [{shown}], metric={self.metric!r}, "
                f"dim={self._templates.shape[1]}, image_shape={self._image_shape})")

    # ----- persistence -----
    def save(self, path: str | PathLike) -> None:
        """Write templates, identities, metric, image shape and the model fingerprint to ``path``.

        Only tensors and JSON-able values: :meth:`load` reads it with ``torch.load(weights_only=True)``.
        """
        torch.save({"format": FORMAT, "metric": self.metric, "identities": list(self._identities),
                    "templates": self._templates.clone(),
                    "image_shape": None if self._image_shape is None else list(self._image_shape),
                    "fingerprint": model_fingerprint(self.embed)}, path)

    @classmethod
    def load(cls, path: str | PathLike, embed: EmbedFn) -> Gallery:
        """Read a gallery saved by :meth:`save`, to be used with ``embed``.

        Raises ``ValueError`` when ``embed``'s model fingerprint differs from the saved one (a
        different or retrained model would put probes in another embedding space). A plain function
        has fingerprint ``None``: it matches only a gallery saved with a plain function. A missing file
        raises ``FileNotFoundError``; a truncated file, another kind of file or a damaged gallery
        raises ``ValueError`` naming the file.
        """
        data = _read_gallery_file(path)
        found = model_fingerprint(embed)
        if found != data["fingerprint"]:
            raise ValueError(f"embed's model fingerprint {found} differs from the one the gallery in "
                             f"{path!s} was enrolled with ({data['fingerprint']}): load it with that model")
        gallery = cls(embed, data["metric"])
        gallery._identities = list(data["identities"])
        gallery._templates = data["templates"]
        shape = data["image_shape"]
        gallery._image_shape = None if shape is None else tuple(shape)
        return gallery


    # ----- deployment -----
    def export(self, path: str | PathLike, *, thresholds: dict[float, float], normalisation: dict,
               extra: dict | None = None) -> None:
        """Write what a deployment needs to ``path`` as JSON (format :data:`EXPORT_FORMAT`).

        The file holds the identities and their templates ``(N, D)`` (float32, exactly), the metric,
        the embedding size, the model fingerprint, the calibrated ``thresholds`` (FAR target →
        distance; calibrate them on held-out identities, never on test data), the input
        ``normalisation`` (see :class:`Deployment`) and ``extra``. JavaScript reads it as it is;
        :meth:`from_export` reads it back. Written atomically: a failed write leaves no partial file.
        """
        self._check_not_empty()
        deployment = Deployment(_export_thresholds(thresholds),
                                _export_normalisation(normalisation, self._image_shape),
                                {} if extra is None else extra)
        if not isinstance(deployment.extra, dict):
            raise TypeError(f"extra must be a dict or None, got {type(extra).__name__}")
        data = {"format": EXPORT_FORMAT, "metric": self.metric,
                "embedding_size": int(self._templates.shape[1]),
                "fingerprint": model_fingerprint(self.embed),
                "thresholds": [{"far": f, "threshold": t} for f, t in deployment.thresholds.items()],
                "input": deployment.normalisation, "identities": list(self._identities),
                "templates": [[float(f"{v:.9g}") for v in row] for row in self._templates.tolist()],
                "extra": deployment.extra}
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

    @classmethod
    def from_export(cls, path: str | PathLike, embed: EmbedFn) -> Gallery:
        """Read a file written by :meth:`export`, to be used with ``embed``.

        ``embed`` may be the trained module or the exported network
        (:class:`fewshot.export.OnnxEmbedding`): both carry the same fingerprint. The thresholds,
        normalisation and extra come back in ``gallery.deployment``.

        Raises ``ValueError`` when the file is truncated or not JSON, was written by another
        version of this format, is inconsistent, or belongs to another model.
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
        found = model_fingerprint(embed)
        if found != data["fingerprint"]:
            raise ValueError(f"embed's model fingerprint {found} differs from the one the gallery in "
                             f"{path!s} was exported with ({data['fingerprint']}): use that model")
        try:
            templates = torch.tensor(data["templates"], dtype=torch.float32)
            identities = [_check_identity(i) for i in data["identities"]]
            thresholds = {float(t["far"]): float(t["threshold"]) for t in data["thresholds"]}
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"{path!s} holds malformed templates, identities or thresholds: {exc}") from exc
        n, dim = len(identities), data["embedding_size"]
        if templates.shape != (n, dim) or n == 0 or len(set(identities)) != n:
            raise ValueError(f"{path!s}: {n} identities (unique: {len(set(identities))}) and templates "
                             f"of shape {tuple(templates.shape)}: expected ({n}, {dim}), n ≥ 1")
        shape = data["input"].get("size") if isinstance(data["input"], dict) else None
        gallery = cls(embed, data["metric"])
        gallery._identities, gallery._templates = identities, check_finite(templates, "templates")
        gallery._image_shape = tuple(shape) if isinstance(shape, list) else None
        gallery.deployment = Deployment(_export_thresholds(thresholds),
                                        _export_normalisation(data["input"], gallery._image_shape),
                                        data["extra"] if isinstance(data["extra"], dict) else {})
        return gallery
