"""The rates that measure a verification or identification system (chapter 9).

Conventions, everywhere in this module:

* A **distance** is small for "same": a probe is accepted when ``distance ≤ threshold``.
* ``same`` is a bool tensor, **True = genuine pair** (same identity), False = impostor pair.
* **FAR(T)** = fraction of impostor pairs with ``distance ≤ T`` (falsely accepted);
  **FRR(T)** = fraction of genuine pairs with ``distance > T`` (falsely rejected); TAR = 1 − FRR.
* Open-set identification (ISO/IEC 19795-1), rank 1: a *mated* search has its identity enrolled, a
  *non-mated* one does not. **DIR(T)** = fraction of mated searches whose nearest identity is right and
  within ``T``; **FPIR(T)** = fraction of non-mated searches whose nearest identity is within ``T``.

Thresholds are calibrated with :func:`threshold_at_far` on held-out pairs and only then applied to the
test split. :mod:`fewshot.verify` (the gallery) re-exports these names, so chapter 9 reads them as
``verify.threshold_at_far`` and so on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from .checks import check_finite, check_number, check_same_length, check_tensor

Identity = Union[str, int]
FAR_TARGETS = (1e-1, 1e-2, 1e-3)


# ----- verification rates -----
def _check_pairs(distances: object, same: object) -> tuple[np.ndarray, np.ndarray]:
    """Pair distances ``(P,)`` and bool ``same (P,)`` as float64 / bool numpy arrays, both classes present."""
    distances = check_finite(check_tensor(distances, "distances"), "distances")
    same = check_tensor(same, "same")
    if distances.ndim != 1 or not distances.is_floating_point():
        raise ValueError(f"distances must be a 1-D float tensor (P,), got shape {tuple(distances.shape)} "
                         f"and dtype {distances.dtype}")
    if same.ndim != 1 or same.dtype != torch.bool:
        raise ValueError(f"same must be a 1-D bool tensor (P,), True = genuine, got shape "
                         f"{tuple(same.shape)} and dtype {same.dtype}")
    check_same_length(distances, same, "distances", "same")
    n_genuine = int(same.sum())
    if n_genuine == 0 or n_genuine == len(same):
        raise ValueError(f"same has {n_genuine} genuine and {len(same) - n_genuine} impostor pairs: "
                         "expected at least one of each")
    return distances.detach().cpu().double().numpy(), same.cpu().numpy()


def _roc(d: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's ROC on ``score = −distance``, thresholds turned back into distances.

    ``roc_curve`` accepts when ``score ≥ t``, i.e. ``distance ≤ −t``. Its first point (FAR = TAR = 0)
    has ``t = inf`` (or max + 1 in older versions); we set that distance threshold to ``−inf``: accept nothing.
    """
    fpr, tpr, score_thresholds = roc_curve(s, -d, drop_intermediate=False)
    thresholds = -score_thresholds
    thresholds[0] = -np.inf
    return fpr, tpr, thresholds


@dataclass
class VerificationRates:
    """ROC of pair distances (accept when ``distance ≤ threshold``); see :func:`verification_rates`.

    ``fpr`` = FAR, ``tpr`` = TAR = 1 − FRR, at the distance ``thresholds`` (increasing; the first is
    ``−inf``: accept nothing). ``tar_at_far`` maps a FAR target to the largest TAR with FAR ≤ target.
    """

    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)
    thresholds: np.ndarray = field(repr=False)
    auc: float
    eer: float
    eer_threshold: float
    tar_at_far: dict[float, float]
    n_genuine: int
    n_impostor: int
    distances: np.ndarray = field(repr=False)
    same: np.ndarray = field(repr=False)

    @property
    def frr(self) -> np.ndarray:
        """FRR = 1 − TPR at each threshold (the DET curve plots ``fpr`` against it)."""
        return 1.0 - self.tpr

    def far_frr(self, threshold: float) -> tuple[float, float]:
        """``(FAR, FRR)`` at a distance threshold, counted on the stored pairs.

        ``FAR = #{impostor: d ≤ T} / n_impostor``, ``FRR = #{genuine: d > T} / n_genuine``.
        """
        t = check_number(threshold, "threshold", -math.inf)
        far = float((self.distances[~self.same] <= t).mean())
        frr = float((self.distances[self.same] > t).mean())
        return far, frr


def verification_rates(distances: torch.Tensor, same: torch.Tensor) -> VerificationRates:
    """ROC, AUC, EER and TAR@FAR of pair distances, with scikit-learn.

    Args:
        distances: ``(P,)`` float distances of P pairs (small = similar).
        same: ``(P,)`` bool, True = genuine pair (same identity), False = impostor.

    * ROC: ``roc_curve(same, −distance, drop_intermediate=False)``; AUC: ``roc_auc_score``.
    * EER: at ``i = argmin |(1 − tpr) − fpr|`` over the ROC points, ``eer = ((1 − tpr[i]) + fpr[i]) / 2``
      (FRR and FAR rarely meet exactly with finitely many pairs; the mean is the middle of the gap),
      ``eer_threshold = thresholds[i]``. Ties of ``|…|`` go to the smallest threshold.
    * TAR@FAR: for each target in ``FAR_TARGETS`` (10⁻¹, 10⁻², 10⁻³), ``max tpr where fpr ≤ target``;
      a target is left out when there are fewer than ``10 / target`` impostor pairs to resolve it.
    """
    d, s = _check_pairs(distances, same)
    fpr, tpr, thresholds = _roc(d, s)
    n_genuine, n_impostor = int(s.sum()), int((~s).sum())
    # |FRR − FAR| = |FN·n_impostor − FP·n_genuine| / (n_genuine·n_impostor): compared in integers, so
    # equal gaps tie exactly and the first (smallest threshold) wins
    fn, fp = np.rint((1 - tpr) * n_genuine).astype(np.int64), np.rint(fpr * n_impostor).astype(np.int64)
    i = int(np.argmin(np.abs(fn * n_impostor - fp * n_genuine)))
    tar_at_far = {target: float(tpr[fpr <= target].max()) for target in FAR_TARGETS
                  if n_impostor >= round(10 / target)}
    return VerificationRates(fpr=fpr, tpr=tpr, thresholds=thresholds,
                             auc=float(roc_auc_score(s, -d)), eer=float(((1 - tpr[i]) + fpr[i]) / 2),
                             eer_threshold=float(thresholds[i]), tar_at_far=tar_at_far,
                             n_genuine=n_genuine, n_impostor=n_impostor, distances=d, same=s)


def threshold_at_far(distances: torch.Tensor, same: torch.Tensor, far: float) -> float:
    """Calibrate: the largest observed pair distance ``T`` with ``FAR(T) ≤ far`` on these pairs.

    ``FAR(T) = #{impostor pairs: distance ≤ T} / #impostor pairs``. Always calibrate on held-out
    (calibration) pairs and apply ``T`` to a disjoint test split, never on the test split itself: a
    threshold tuned on the test pairs reports a FAR the system will not have on new data.

    Args:
        distances: ``(P,)`` calibration pair distances; same: ``(P,)`` bool, True = genuine.
        far: target FAR in (0, 1]. Needs at least ``1 / far`` impostor pairs.
    """
    far = check_number(far, "far", 0.0, strict=True)
    if far > 1:
        raise ValueError(f"far={far!r}: expected a number in (0, 1]")
    d, s = _check_pairs(distances, same)
    n_impostor = int((~s).sum())
    if n_impostor * far < 1 - 1e-9:
        raise ValueError(f"far={far!r} needs at least {math.ceil(1 / far - 1e-9)} impostor pairs to "
                         f"resolve, got {n_impostor}")
    fpr, _, thresholds = _roc(d, s)
    best = float(thresholds[fpr <= far].max())
    if best == -math.inf:
        raise ValueError(f"no observed distance gives FAR ≤ far={far!r}: the nearest impostor pairs tie "
                         "and are nearer than every genuine pair")
    return best


# ----- open-set identification -----
@dataclass
class OpenSetRates:
    """DIR and FPIR (ISO/IEC 19795-1, rank 1) at distance ``thresholds``; see :func:`open_set_rates`."""

    thresholds: np.ndarray = field(repr=False)
    dir: np.ndarray = field(repr=False)
    fpir: np.ndarray = field(repr=False)
    n_mated: int
    n_nonmated: int
    mated_distances: np.ndarray = field(repr=False)
    mated_correct: np.ndarray = field(repr=False)
    nonmated_distances: np.ndarray = field(repr=False)

    def at(self, threshold: float) -> tuple[float, float]:
        """``(DIR, FPIR)`` at one distance threshold, counted on the stored searches."""
        t = check_number(threshold, "threshold", -math.inf)
        dir_, fpir = _dir_fpir(self, np.array([t]))
        return float(dir_[0]), float(fpir[0])

    def dir_at_fpir(self, target: float) -> float:
        """The largest DIR over all thresholds with FPIR ≤ ``target`` (exact, not on the threshold grid).

        DIR and FPIR only change at observed distances, so trying every observed distance (and "accept
        nothing") finds it.
        """
        target = check_number(target, "target", 0.0)
        if target > 1:
            raise ValueError(f"target={target!r}: expected a number in [0, 1]")
        candidates = np.concatenate([[-np.inf], self.mated_distances, self.nonmated_distances])
        dir_, fpir = _dir_fpir(self, candidates)
        return float(dir_[fpir <= target].max())


def _dir_fpir(rates: OpenSetRates, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``DIR(T) = mean[correct ∧ d_mated ≤ T]``, ``FPIR(T) = mean[d_nonmated ≤ T]``, for each T."""
    hit = rates.mated_correct[None, :] & (rates.mated_distances[None, :] <= thresholds[:, None])
    fpir = (rates.nonmated_distances[None, :] <= thresholds[:, None]).mean(1)
    return hit.mean(1), fpir


def _check_search(search: object, name: str) -> tuple[list, np.ndarray]:
    """``(identities, distances)`` as returned by :meth:`Gallery.identify` with ``threshold=None``."""
    if not isinstance(search, tuple) or len(search) != 2:
        raise TypeError(f"{name} must be the (identities, distances) pair returned by Gallery.identify, "
                        f"got {type(search).__name__}")
    identities, distances = search
    distances = check_finite(check_tensor(distances, f"{name} distances"), f"{name} distances")
    if distances.ndim != 1 or len(identities) != len(distances) or len(distances) == 0:
        raise ValueError(f"{name}: expected B ≥ 1 identities and distances (B,), got {len(identities)} "
                         f"identities and distances of shape {tuple(distances.shape)}")
    if any(i is None for i in identities):
        raise ValueError(f"{name} holds unknown (None) identities: search with identify(images) "
                         "(threshold=None), the threshold is applied here")
    return list(identities), distances.detach().cpu().double().numpy()


def open_set_rates(mated: tuple[list, torch.Tensor], true_identities: Sequence[Identity],
                   nonmated: tuple[list, torch.Tensor],
                   thresholds: torch.Tensor | None = None) -> OpenSetRates:
    """Open-set identification rates at rank 1: DIR against FPIR over distance thresholds.

    Args:
        mated: ``gallery.identify(mated_probes)`` (threshold None): probes whose identity is enrolled.
        true_identities: the true identity of each mated probe (``B_m`` entries).
        nonmated: ``gallery.identify(nonmated_probes)``: probes of identities never enrolled.
        thresholds: ``(T,)`` distance thresholds; default: every observed distance, increasing.

    * ``DIR(T)  = #{mated: rank-1 identity right and d ≤ T} / #mated``  (= 1 − FNIR at rank 1)
    * ``FPIR(T) = #{non-mated: d ≤ T} / #non-mated``
    """
    identities, d_mated = _check_search(mated, "mated")
    _, d_non = _check_search(nonmated, "nonmated")
    if len(true_identities) != len(identities):
        raise ValueError(f"true_identities has {len(true_identities)} entries for {len(identities)} "
                         "mated searches")
    correct = np.array([i == t for i, t in zip(identities, true_identities)], dtype=bool)
    if thresholds is None:
        grid = np.unique(np.concatenate([d_mated, d_non]))
    else:
        thresholds = check_finite(check_tensor(thresholds, "thresholds"), "thresholds")
        if thresholds.ndim != 1 or len(thresholds) == 0:
            raise ValueError(f"thresholds must be 1-D and non-empty, got shape {tuple(thresholds.shape)}")
        grid = thresholds.detach().cpu().double().numpy()
    rates = OpenSetRates(thresholds=grid, dir=np.empty(0), fpir=np.empty(0), n_mated=len(d_mated),
                         n_nonmated=len(d_non), mated_distances=d_mated, mated_correct=correct,
                         nonmated_distances=d_non)
    rates.dir, rates.fpir = _dir_fpir(rates, grid)
    return rates
