"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) of a query's positives, as SFRS mines difficult positives.

From generation 1 on, SFRS (and the WAKD script) rank each training query's ``pos_pool`` nearest
positives by the re-ranked distance ``(1 - lambda) * Jaccard + lambda * d / max_row d`` (k1 =
20, k2 = 1, lambda = 0.1; OpenIBL ``update_sampler`` / ``utils/rerank.py``) over all training
queries and database images, and prefer the positives that re-ranking promotes. The "original
distance" of two items is the *fourth* power of the Euclidean distance of their descriptors: OpenIBL
passes squared distances to a re-ranking function that squares its input again; we keep that. Ours
computes the same quantities, but only for the pairs that are asked for: each item's k-reciprocal
neighbourhood comes from its top-(k1 + 1) lists (faiss), not from a full distance matrix, so memory
grows with the number of items, not its square. Neighbours tied in distance may be ordered
differently from ``np.argsort``.
"""

from __future__ import annotations

import numpy as np

from wakd.search import knn


def _reciprocal(top: np.ndarray, i: int, k: int) -> np.ndarray:
    """The k-reciprocal neighbours of ``i``: its top-(k+1) items that have ``i`` in their own top-(k+1)."""
    fwd = top[i, :k + 1]
    return fwd[[i in top[f, :k + 1] for f in fwd]]


class Reranker:
    """Re-ranked distances between items of ``desc`` (``[M, D]`` unit rows: queries and database)."""

    def __init__(self, desc: np.ndarray, k1: int = 20, lambda_value: float = 0.1) -> None:
        self.desc = np.ascontiguousarray(desc, dtype=np.float32)
        self.k1, self.lam = k1, lambda_value
        _, self.top = knn(self.desc, self.desc, k1 + 1)
        self._v: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._rowmax: dict[int, float] = {}

    def _sq(self, i: int, js: np.ndarray) -> np.ndarray:
        """The original distance: (squared Euclidean distance)^2, as OpenIBL computes it."""
        return np.maximum(2.0 - 2.0 * (self.desc[js] @ self.desc[i]), 0.0) ** 2

    def rowmax(self, i: int) -> float:
        """The largest original distance from ``i`` to any item (the row's normaliser)."""
        if i not in self._rowmax:
            self._rowmax[i] = float(max(np.max(self._sq(i, np.arange(len(self.desc)))), 1e-12))
        return self._rowmax[i]

    def v(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The sparse row ``V_i``: items of ``i``'s expanded k-reciprocal set and their weights."""
        if i not in self._v:
            recip = _reciprocal(self.top, i, self.k1)
            half = int(np.around(self.k1 / 2.0))
            expanded = [recip]
            for c in recip:
                cand = _reciprocal(self.top, int(c), half)
                if len(np.intersect1d(cand, recip)) > 2.0 / 3.0 * len(cand):
                    expanded.append(cand)
            items = np.unique(np.concatenate(expanded))
            w = np.exp(-self._sq(i, items) / self.rowmax(i))
            self._v[i] = (items, w / w.sum())
        return self._v[i]

    def distances(self, i: int, js: np.ndarray) -> np.ndarray:
        """Re-ranked distances from item ``i`` to items ``js``."""
        items_i, w_i = self.v(i)
        jac = np.empty(len(js))
        for n, j in enumerate(js):
            items_j, w_j = self.v(int(j))
            common, a, b = np.intersect1d(items_i, items_j, return_indices=True)
            shared = float(np.minimum(w_i[a], w_j[b]).sum()) if len(common) else 0.0
            jac[n] = 1.0 - shared / (2.0 - shared)
        return jac * (1.0 - self.lam) + self._sq(i, np.asarray(js)) / self.rowmax(i) * self.lam
