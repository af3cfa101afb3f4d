"""geo-tree's split target: each grid site's WER pooled with its nearest neighbours.

A speaker's own WER is mostly noise at the sizes audits see (a few hundred words), so a tree that
splits on it cuts where the noise happens to be largest, and a 5% region needs three or four
cuts before any of them gains more than noise. Pooling each site with the nearest sites that hold
at least ``neighbours`` speakers keeps a region's excess while dividing the noise, so the cuts land
on the region's edges. Only the split target changes: regions are still grid-aligned boxes, and
their WER, the bottom cohort and every reported figure use each speaker's own errors and words.

The neighbourhood's rate is a precision-weighted mean of its speakers' WERs, weight
w / (1 + alpha r w) for a speaker with w words (r the overall WER, alpha the speakers'
negative-binomial overdispersion): the inverse variance of a speaker's WER when speakers differ
beyond sampling noise. Words per speaker are heavy-tailed, so a plain pooled WER (weight w) would
be two or three speakers' WER in most neighbourhoods; the weight saturates at 1 / (alpha r), so
every speaker in the neighbourhood counts. Without overdispersion (alpha = 0) it is the pooled WER.

With ``neighbours=1`` every site keeps its own totals, which is exactly the plain tree (a split's
gain depends only on each side's summed errors and words).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from fairaudit.geodata.distance import unit_vectors
from fairaudit.methods.region_tree import GRID_STEP_DEGREES, GridPoints, SiteSums


class NeighbourPooling:
    """For each site, the nearest sites (itself first) that together hold at least ``neighbours``
    speakers, as a sparse 0/1 matrix; :meth:`pool` replaces each site's WER by its neighbourhood's.

    Distances are between grid-cell centres on the sphere, so the neighbourhood of a site is the
    same whatever the outcomes: a permutation test builds this once and pools every shuffle.
    """

    def __init__(self, points: GridPoints, neighbours: int) -> None:
        self.neighbours = int(neighbours)
        n_sites = points.n_sites
        if self.neighbours <= 1 or n_sites <= 1:
            self.matrix = None
            return
        lat, lon = ((cells + origin + 0.5) * GRID_STEP_DEGREES for cells, origin in zip(points.cells, points.origin))
        centres = unit_vectors(lat, lon).T
        k = min(self.neighbours, n_sites)  # every site holds a speaker, so k sites always suffice
        _, nearest = cKDTree(centres).query(centres, k=k)
        nearest = nearest.reshape(n_sites, k)
        held_before = np.cumsum(points.site_speakers[nearest], axis=1) - points.site_speakers[nearest]
        keep = held_before < self.neighbours  # up to and including the site that reaches the count
        rows = np.repeat(np.arange(n_sites), keep.sum(axis=1))
        self.matrix = sparse.csr_matrix(
            (np.ones(len(rows)), (rows, nearest[keep])), shape=(n_sites, n_sites), dtype=np.float64
        )

    def pool(self, sums: SiteSums, weights: np.ndarray, weighted_wers: np.ndarray) -> SiteSums:
        """Site totals whose WER is the neighbourhood's precision-weighted WER (from the per-site sums
        of :func:`precision_terms`); each site keeps its own words."""
        if self.matrix is None:
            return sums
        pooled = self.matrix @ np.column_stack([weighted_wers, weights])
        rate = np.divide(pooled[:, 0], pooled[:, 1], out=np.zeros(len(pooled)), where=pooled[:, 1] > 0)
        errors = rate * sums.words
        return SiteSums(sums.words, errors, rate * errors)


def precision_terms(errors: np.ndarray, words: np.ndarray, rate: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per speaker: the precision weight c = w / (1 + alpha rate w) of its WER, and c x WER (0
    without words). Both move with the speaker's outcome, so a permutation test shuffles them."""
    words = np.asarray(words, dtype=np.float64)
    weights = words / (1.0 + alpha * rate * words)
    errors = np.asarray(errors, dtype=np.float64)
    weighted = np.divide(weights * errors, words, out=np.zeros_like(words), where=words > 0)
    return weights, weighted
