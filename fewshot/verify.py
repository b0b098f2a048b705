"""Enrol, verify, identify: a one-shot recognition system (chapter 9).

A **distance** is small for "same": a probe is accepted when ``distance ≤ threshold``. The
:class:`Gallery` stores one mean embedding per identity, never images; it saves and loads itself, and
exports what a deployment needs (:meth:`Gallery.export`); the files' formats and their checks live
in :mod:`fewshot.gallery_files`. The rates that measure it (ROC, EER, TAR at
a FAR, open-set DIR/FPIR) live in :mod:`fewshot.rates` and are re-exported here, so a chapter reads
``verify.threshold_at_far`` next to ``verify.Gallery``.
"""

from __future__ import annotations

import hashlib
from os import PathLike

import torch

from .checks import check_embeddings, check_finite, check_tensor
from .distances import check_metric, pairwise
from .models import EmbedFn, module_of
from .models import embed as embed_images
from .gallery_files import (EXPORT_FORMAT, FORMAT, Deployment, check_identity, check_threshold,
                            export_normalisation, export_thresholds, read_export, read_saved,
                            write_export)
from .rates import (FAR_TARGETS, Identity, OpenSetRates, VerificationRates, open_set_rates,
                    threshold_at_far, verification_rates)

__all__ = ["BATCH", "EXPORT_FORMAT", "FAR_TARGETS", "FORMAT", "Deployment", "EmbedFn", "Gallery", "Identity",
           "OpenSetRates", "VerificationRates", "model_fingerprint", "open_set_rates", "threshold_at_far",
           "verification_rates"]

BATCH = 1024


def model_fingerprint(embed: EmbedFn) -> str | None:
    """sha256 over the state dict (names, dtypes, shapes, bytes) of the module behind ``embed``.

    ``None`` when ``embed`` is a plain function (a lambda, ``flatten``): there is nothing to hash.
    A function that carries its model's fingerprint as a ``fingerprint`` string (the exported network
    in onnxruntime, :class:`fewshot.export.OnnxEmbedding`) gives that string.
    """
    carried = getattr(embed, "fingerprint", None)
    if isinstance(carried, str):
        return carried
    module = module_of(embed)
    if module is None:
        return None
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()



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

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → CPU float ``(B, D)`` through :func:`fewshot.models.embed`; raises on
        a wrong row count, NaN embeddings, or a width other than the gallery's."""
        emb = check_embeddings(embed_images(self.embed, images, BATCH), "embed(images)")
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
        identity = check_identity(identity)
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
        limit = None if threshold is None else check_threshold(threshold)
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
        identity = check_identity(identity)
        if identity not in self._identities:
            known = ", ".join(repr(i) for i in self._identities[:10])
            more = ", …" if len(self._identities) > 10 else ""
            raise ValueError(f"identity={identity!r} is not enrolled (enrolled: {known}{more})")
        limit = check_threshold(threshold)
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
        data = read_saved(path)
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
        deployment = Deployment(export_thresholds(thresholds),
                                export_normalisation(normalisation, self._image_shape),
                                {} if extra is None else extra)
        if not isinstance(deployment.extra, dict):
            raise TypeError(f"extra must be a dict or None, got {type(extra).__name__}")
        write_export(path, {
            "format": EXPORT_FORMAT, "metric": self.metric,
            "embedding_size": int(self._templates.shape[1]), "fingerprint": model_fingerprint(self.embed),
            "thresholds": [{"far": f, "threshold": t} for f, t in deployment.thresholds.items()],
            "input": deployment.normalisation, "identities": list(self._identities),
            "templates": [[float(f"{v:.9g}") for v in row] for row in self._templates.tolist()],
            "extra": deployment.extra})

    @classmethod
    def from_export(cls, path: str | PathLike, embed: EmbedFn) -> Gallery:
        """Read a file written by :meth:`export`, to be used with ``embed``.

        ``embed`` may be the trained module or the exported network
        (:class:`fewshot.export.OnnxEmbedding`): both carry the same fingerprint. The thresholds,
        normalisation and extra come back in ``gallery.deployment``.

        Raises ``ValueError`` when the file is truncated or not JSON, was written by another
        version of this format, is inconsistent, or belongs to another model.
        """
        data = read_export(path)
        found = model_fingerprint(embed)
        if found != data["fingerprint"]:
            raise ValueError(f"embed's model fingerprint {found} differs from the one the gallery in "
                             f"{path!s} was exported with ({data['fingerprint']}): use that model")
        gallery = cls(embed, data["metric"])
        gallery._identities, gallery._templates = data["identities"], data["templates"]
        gallery._image_shape, gallery.deployment = data["image_shape"], data["deployment"]
        return gallery
