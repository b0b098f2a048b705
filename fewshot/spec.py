"""``TrainSpec``: everything that decides a trained model, in one frozen value.

A spec names the method and its embedding size, the training schedule (epochs, batch size,
learning rate, seed) and the method's own settings, each a typed field. Two equal specs on the same
data with the same code train the same model, so the spec (with the data and the source of the
training modules) is the model cache's key (:func:`fewshot.recipes.train_method`).

Notebooks do not write the schedule by hand: ``run.spec("triplet", dim=32, miner="batch_hard")``
(:meth:`fewshot.run.Run.spec`) fills it in from the run's profile and seed.

=======================  ==========================================================================
method                   its own settings (``None``: the method's default)
=======================  ==========================================================================
``softmax``              none
``siamese``              ``margin`` (1.0), ``miner``, ``reduction``, ``normalize``
``triplet``              ``margin`` (1.0, or :data:`SOFT`), ``miner``, ``reduction``, ``squared``
``softmax+triplet``      as ``triplet`` (the fine-tuning; its softmax model is trained first)
margin heads             ``margin`` and ``scale`` (derived from the classes and dimension), ``warmup``
``protonet``             ``n_way`` (20), ``k_shot`` (5), ``n_query`` (5): the training episodes
``supcon``               ``temperature``
any method               ``shift``: random translations of the training images (augmentation)
=======================  ==========================================================================

Any setting a method does not use raises ``ValueError`` naming it, so a spec never carries a
setting that silently does nothing.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, fields, replace

from .checks import check_choice, check_int, check_number

METHODS = ("softmax", "siamese", "triplet", "softmax+triplet", "normsoftmax", "sphereface",
           "cosface", "arcface", "protonet", "supcon")
MARGIN_METHODS = ("normsoftmax", "sphereface", "cosface", "arcface")
METRIC_METHODS = ("siamese", "triplet", "softmax+triplet")  # they mine pairs or triplets
PAIR_MINERS = ("all", "random", "hardest_negative")
TRIPLET_MINERS = ("all", "random", "batch_hard", "semi_hard")
SAMPLERS = ("random", "pk")
REDUCTIONS = ("mean", "mean_active")


class SoftMargin(str, enum.Enum):
    """The soft-margin triplet loss, ``log(1 + exp(d_ap − d_an))`` (Hermans et al. 2017): a margin
    that is not a number. Its one member, :data:`SOFT`, prints and compares as ``"soft"`` (a table
    shows it so), but only the member itself is accepted as a margin."""

    SOFT = "soft"

    def __repr__(self) -> str:
        return "SOFT"

    def __str__(self) -> str:
        return self.value


SOFT = SoftMargin.SOFT

# which method uses which of the method-specific settings
_USES: dict[str, tuple[str, ...]] = {
    "reduction": METRIC_METHODS,
    "normalize": ("siamese",),
    "squared": ("triplet", "softmax+triplet"),
    "temperature": ("supcon",),
    "scale": MARGIN_METHODS,
    "warmup": MARGIN_METHODS,
    "n_way": ("protonet",),
    "k_shot": ("protonet",),
    "n_query": ("protonet",),
    "margin": METRIC_METHODS + MARGIN_METHODS,
}


@dataclass(frozen=True)
class TrainSpec:
    """One trained model, completely described (the model cache's key, with the data).

    Attributes:
        method: one of :data:`METHODS`.
        embed_dim: embedding size (2 for the book's maps).
        epochs, batch_size, lr, seed: the schedule (:meth:`fewshot.run.Run.spec` takes them from
            the run's profile and seed). ``seed`` seeds the weights, the batches and the miners.
        frames: weight snapshots kept for 2-D/3-D models (widgets step through them).
        margin: contrastive/triplet margin (default 1.0), :data:`SOFT` for the soft-margin triplet,
            or a margin head's margin (default: derived, ``recipes.margin_head_settings``).
        miner: where pairs and triplets come from (metric methods only; default ``"all"``).
        sampler: ``"random"`` batches or ``"pk"`` (P classes × K images per batch).
        reduction: the contrastive/triplet loss's average, ``"mean"`` or ``"mean_active"``.
        normalize: contrastive loss on L2-normalised embeddings.
        squared: triplet loss on squared distances (FaceNet; default) or plain ones.
        temperature: supervised contrastive temperature.
        scale, warmup: a margin head's scale, and the epochs its margin ramps up over.
        n_way, k_shot, n_query: protonet's training episodes.
        shift: augmentation: each training image moves by a random offset of up to ±``shift``
            pixels along x and y, anew each time it is drawn (:func:`fewshot.train.shifted`);
            ``None`` trains on the images as they are.
    """

    method: str
    embed_dim: int
    epochs: int
    batch_size: int
    lr: float
    seed: int
    frames: int = 5
    margin: float | SoftMargin | None = None
    miner: str | None = None
    sampler: str = "random"
    reduction: str | None = None
    normalize: bool | None = None
    squared: bool | None = None
    temperature: float | None = None
    scale: float | None = None
    warmup: int | None = None
    n_way: int | None = None
    k_shot: int | None = None
    n_query: int | None = None
    shift: float | None = None

    def __post_init__(self) -> None:
        check_choice(self.method, "method", METHODS)
        check_int(self.embed_dim, "embed_dim")
        check_int(self.epochs, "epochs", 0)
        check_int(self.batch_size, "batch_size")
        check_number(self.lr, "lr", 0.0, strict=True)
        check_int(self.seed, "seed", 0)
        check_int(self.frames, "frames")
        check_choice(self.sampler, "sampler", SAMPLERS)
        if self.shift is not None:
            check_number(self.shift, "shift", 0.0)
        for name, users in _USES.items():
            if getattr(self, name) is not None and self.method not in users:
                raise ValueError(f"{name}={getattr(self, name)!r}: method {self.method!r} does not "
                                 f"use it (only {', '.join(users)})")
        if self.miner is not None and self.method not in METRIC_METHODS:
            raise ValueError(f"miner={self.miner!r}: method {self.method!r} does not mine pairs or "
                             "triplets")
        if self.method in METRIC_METHODS:
            pairs = self.method == "siamese"
            if self.miner is None:
                object.__setattr__(self, "miner", "all")  # one spelling per model: the key agrees
            check_choice(self.miner, "miner", PAIR_MINERS if pairs else TRIPLET_MINERS)
        if self.margin is SOFT:
            if self.method not in ("triplet", "softmax+triplet"):
                raise ValueError(f"margin=SOFT: only the triplet loss has a soft margin, not "
                                 f"{self.method!r}")
        elif self.margin is not None:
            if isinstance(self.margin, str):
                raise TypeError(f"margin={self.margin!r}: expected a number, or fewshot.spec.SOFT "
                                "for the soft margin")
            check_number(self.margin, "margin", 0.0)
        if self.reduction is not None:
            check_choice(self.reduction, "reduction", REDUCTIONS)
        if self.temperature is not None:
            check_number(self.temperature, "temperature", 0.0, strict=True)
        for name in ("n_way", "k_shot", "n_query", "warmup"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, 0 if name == "warmup" else 1)

    def replace(self, **changes: object) -> TrainSpec:
        """A copy with ``changes`` (``dataclasses.replace``), checked again."""
        return replace(self, **changes)

    def settings(self) -> dict[str, object]:
        """The method's own settings that are set (not ``None``), by name: what a table shows
        beside the method."""
        own = ("margin", "reduction", "normalize", "squared", "temperature", "scale", "warmup",
               "n_way", "k_shot", "n_query", "shift")
        return {k: getattr(self, k) for k in own if getattr(self, k) is not None}

    def to_dict(self) -> dict[str, object]:
        """Every field, JSON-able (:data:`SOFT` as ``"soft"``): the cache key's part."""
        d = asdict(self)
        if d["margin"] is SOFT:
            d["margin"] = SOFT.value
        return d

    @property
    def name(self) -> str:
        """A short file-name stem: ``triplet-batch_hard-pk-32d``."""
        return (f"{self.method.replace('+', '_')}-{self.miner or 'none'}-{self.sampler}-"
                f"{self.embed_dim}d")


FIELDS = tuple(f.name for f in fields(TrainSpec))
