"""Retrieval metrics of an embedding: precision@1 and MAP@R (Musgrave, Belongie & Lim 2020).

For each query embedding, rank the reference embeddings by Euclidean distance.

* **precision@1**: the fraction of queries whose nearest reference has the query's class.
* **R-precision**: with R = the number of references of the query's class, the fraction of the
  R nearest references that have the query's class.
* **MAP@R**: like R-precision, but rewarding correct neighbours that come first:
  ``MAP@R = (1/R) · Σ_{i=1..R} P(i) · [i-th neighbour correct]``, with P(i) the precision among the
  i nearest. Averaged over queries.

When the queries *are* the references (``same_set=True``), each query is left out of its own ranking.
No faiss: distances are computed in chunks with ``torch.cdist``.
"""

from __future__ import annotations

import torch

from .data import check_images_labels


@torch.no_grad()
def retrieval_metrics(query: torch.Tensor, query_labels: torch.Tensor, reference: torch.Tensor,
                      reference_labels: torch.Tensor, same_set: bool = False,
                      chunk: int = 512) -> dict[str, float]:
    """Precision@1, R-precision and MAP@R of ``query`` against ``reference``.

    Args:
        query: ``(Q, D)`` embeddings; query_labels: ``(Q,)`` integers.
        reference: ``(M, D)`` embeddings; reference_labels: ``(M,)`` integers.
        same_set: queries and references are the same items: skip each query's own match.

    Returns:
        ``{"precision_at_1": …, "r_precision": …, "map_at_r": …}``, each in [0, 1].
    """
    check_images_labels(query, query_labels)
    check_images_labels(reference, reference_labels)
    if query.ndim != 2 or reference.ndim != 2 or query.shape[1] != reference.shape[1]:
        raise ValueError(f"query (Q, D) and reference (M, D) must be 2-D with equal D, got "
                         f"{tuple(query.shape)} and {tuple(reference.shape)}")
    if same_set and len(query) != len(reference):
        raise ValueError(f"same_set=True needs as many queries as references, got {len(query)} and {len(reference)}")
    query, reference = query.float().cpu(), reference.float().cpu()
    query_labels, reference_labels = query_labels.cpu(), reference_labels.cpu()
    classes, counts = reference_labels.unique(return_counts=True)
    count_of = dict(zip(classes.tolist(), counts.tolist()))
    r = torch.tensor([count_of.get(int(c), 0) - int(same_set) for c in query_labels])
    if (r < 1).any():
        bad = sorted({int(c) for c, ri in zip(query_labels, r) if ri < 1})
        raise ValueError(f"query classes {bad} have no reference of their class")
    k = int(r.max())
    p1, rp, mapr = [], [], []
    for start in range(0, len(query), chunk):
        q = query[start:start + chunk]
        dist = torch.cdist(q, reference)
        if same_set:
            rows = torch.arange(len(q))
            dist[rows, start + rows] = float("inf")
        nearest = dist.topk(k, dim=1, largest=False).indices  # (q, k), nearest first
        correct = (reference_labels[nearest] == query_labels[start:start + chunk, None]).float()
        rr = r[start:start + chunk]
        within = (torch.arange(k)[None, :] < rr[:, None]).float()  # the first R of each row
        correct = correct * within
        precision_i = correct.cumsum(1) / torch.arange(1, k + 1)[None, :]
        p1.append(correct[:, 0])
        rp.append(correct.sum(1) / rr)
        mapr.append((precision_i * correct).sum(1) / rr)
    return {"precision_at_1": torch.cat(p1).mean().item(),
            "r_precision": torch.cat(rp).mean().item(),
            "map_at_r": torch.cat(mapr).mean().item()}
