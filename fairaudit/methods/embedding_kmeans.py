"""embedding-kmeans (Dheram et al. 2022): k-means clusters of L2-normalised speaker embeddings.

Clusters do not depend on outcomes, so the permutation test re-ranks the fixed clusters (and
re-runs the union selection of the bottom cohort). ``clusters="auto"`` picks a generous k (see
:func:`auto_cluster_count`): a population split over several clusters is re-joined by the union
selection, while one merged with another could never be separated again. Each
cluster is described by its metadata profile (the values most over-represented in it) so a person
can tell who is in it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairaudit.methods.base import CohortMethod, definition_cells
from fairaudit.methods.registry import register
from fairaudit.model.partition import UNASSIGNED, Partition
from fairaudit.model.speakers import SpeakerTable

PROFILE_COLUMNS = 3  # metadata columns shown in a cluster's description


@register
class EmbeddingKMeans(CohortMethod):
    """Speaker clusters in embedding space, ranked by pooled WER."""

    name = "embedding-kmeans"
    title = "embedding-kmeans: clusters of speaker embeddings"
    display_order = 30
    requires = ("embeddings",)
    cells_depend_on_outcomes = False  # clusters come from the embeddings; only their ranking uses WER
    absorbs_withheld_cells = True  # a speaker joins the nearest published centroid

    def __init__(self, clusters: int | str = "auto", min_speakers: int = 30, seed: int = 0) -> None:
        self.clusters = clusters
        self.min_speakers = min_speakers
        self.seed = seed

    @classmethod
    def from_options(cls, opts) -> list[EmbeddingKMeans]:
        return [cls(clusters=opts.clusters, min_speakers=opts.min_speakers, seed=opts.seed)]

    def fit(self, speakers: SpeakerTable) -> EmbeddingKMeans:
        vectors, present = _vectors(speakers)
        self.n_clusters_ = (
            auto_cluster_count(int(present.sum()), self.min_speakers) if self.clusters == "auto" else int(self.clusters)
        )
        self.centroids_: np.ndarray | None = None
        self.cluster_ids_: list[str] = []
        self.profiles_: list[list[dict]] = []
        self.projection_ = None
        if present.sum() >= max(self.n_clusters_, 2) and self.n_clusters_ >= 2:
            k = self.n_clusters_
            model = fit_kmeans(vectors[present], k, self.seed)
            # Number clusters by size (largest = cluster-1) so ids do not depend on k-means' order.
            sizes = np.bincount(model.labels_, minlength=k)
            order = np.lexsort((np.arange(k), -sizes))
            self.centroids_ = np.asarray(model.cluster_centers_, dtype=np.float64)[order]
            self.cluster_ids_ = [f"cluster-{i + 1}" for i in range(k)]
            labels = np.full(len(speakers), UNASSIGNED, dtype=np.int64)
            labels[present] = nearest_centroid(vectors[present], self.centroids_)
            self.profiles_ = cluster_profiles(speakers, labels, k)
            self.projection_ = project_clusters(vectors[present], labels[present], k)
        self.descriptions_ = [_describe(profile) for profile in self.profiles_]
        self.partition_ = self.assign(speakers)
        return self

    def _assign(self, speakers: SpeakerTable) -> Partition:
        """Put each speaker with an embedding in the cluster of the nearest centroid."""
        vectors, present = _vectors(speakers)
        labels = np.full(len(speakers), UNASSIGNED, dtype=np.int64)
        if self.centroids_ is not None and present.any():
            if vectors.shape[1] != self.centroids_.shape[1]:
                raise ValueError(
                    f"the stored clusters are in a {self.centroids_.shape[1]}-dimensional embedding space; "
                    f"this log's embeddings have {vectors.shape[1]} dimensions (another embedding model?)"
                )
            labels[present] = nearest_centroid(vectors[present], self.centroids_)
        reasons = {}
        if (~present).any():
            reasons["no embedding"] = int((~present).sum())
        if self.centroids_ is None and present.any():
            reasons["too few speakers with embeddings for k-means"] = int(present.sum())
        return Partition(
            method=self.name,
            labels=labels,
            cohort_ids=list(self.cluster_ids_),
            descriptions=list(self.descriptions_),
            unassigned_reasons=reasons,
            details={"profiles": self.profiles_, "projection": getattr(self, "projection_", None)},
        )

    def definition(self) -> dict:
        """Centroids in the normalised embedding space: a new speaker joins the nearest one."""
        centroids = self.centroids_ if self.centroids_ is not None else np.zeros((0, 0))
        return {
            "rule": "a speaker is in the cluster whose centroid is nearest (Euclidean distance) to its embedding",
            "normalisation": "utterance vectors averaged per speaker, the mean L2-normalised (SPEC 2)",
            "dimension": int(centroids.shape[1]) if len(centroids) else None,
            "cells": [
                {"id": cid, "description": text, "centroid": [float(v) for v in row]}
                for cid, text, row in zip(self.cluster_ids_, self.descriptions_, centroids)
            ],
        }

    @classmethod
    def from_definition(cls, definition: dict, context: dict | None = None) -> EmbeddingKMeans:
        cells = definition_cells(definition)
        method = cls()
        centroids: list = [cell.get("centroid") for cell in cells]
        if not all(isinstance(c, list) and c and all(isinstance(v, (int, float)) for v in c) for c in centroids):
            raise ValueError("every embedding-kmeans cell needs a 'centroid': a list of numbers")
        if len({len(c) for c in centroids}) > 1:
            raise ValueError("the stored centroids do not all have the same dimension")
        if cells and not np.isfinite(np.asarray(centroids, dtype=np.float64)).all():
            raise ValueError("a stored centroid holds NaN or an infinite number")
        method.centroids_ = np.asarray(centroids, dtype=np.float64) if cells else None
        method.cluster_ids_ = [cell["id"] for cell in cells]
        method.descriptions_ = [str(cell.get("description", cell["id"])) for cell in cells]
        method.profiles_, method.projection_ = [], None
        method.n_clusters_ = len(cells)
        return method


#: Above this many speakers k-means runs one seeded k-means++ start instead of the best of four
#: (issue 12: at 100,000 speakers x 192 dimensions the starts were most of a 2.9 s fit; one start
#: took 0.7 s with a within-cluster sum of squares 0.2% above the best of four). At or below it,
#: where starts are cheap and a bad one matters more, the best of four is kept.
SINGLE_START_ABOVE = 20_000


#: Above this many speakers, k-means++ picks its starting centres from a seeded random sample of this
#: many speakers, then Lloyd's iterations run on all of them (issue 12: at 100,000 speakers x 192
#: dimensions and k = 24, k-means++ over everyone made the fit 0.85 s, over the sample 0.31 s, and the
#: within-cluster sum of squares was 0.2% lower on average over five seeds (0.3% higher at 30,000
#: speakers); at a million speakers the sampled start saves 4-6 s). At or below it nothing changes.
INIT_SAMPLE = 20_000


def fit_kmeans(vectors: np.ndarray, k: int, seed: int):
    """k-means (scikit-learn, Lloyd, k-means++ starts), seeded, on one OpenMP thread.

    scikit-learn adds up its per-thread sums in an order that depends on the number of threads (on
    30,000 test vectors the centres moved by up to 0.015 between 1 and 2 threads), so one thread makes
    the clusters the same on every machine. It costs nothing measurable here: at a million speakers x 192 dimensions
    one thread took 8.4 s and two 9.5 s (Lloyd's iterations are bound by memory, not arithmetic).
    """
    from sklearn.cluster import KMeans, kmeans_plusplus  # imported here: sklearn slows every CLI start
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):  # this thread's OpenMP setting only
        if len(vectors) > INIT_SAMPLE:
            sample = np.sort(np.random.default_rng([seed, 0x1A17]).choice(len(vectors), INIT_SAMPLE, replace=False))
            centres, _ = kmeans_plusplus(np.asarray(vectors[sample]), k, random_state=seed)
            return KMeans(n_clusters=k, init=centres, n_init=1, random_state=seed).fit(vectors)
        starts = 1 if len(vectors) > SINGLE_START_ABOVE else 4
        return KMeans(n_clusters=k, random_state=seed, n_init=starts).fit(vectors)


#: ``clusters="auto"``: at most this many clusters, and on average at least
#: AUTO_SPEAKERS_PER_MIN x min_speakers speakers per cluster.
AUTO_MAX_CLUSTERS = 24
AUTO_SPEAKERS_PER_MIN = 3


def auto_cluster_count(n_speakers: int, min_speakers: int) -> int:
    """k for ``clusters="auto"``: generous, so a real sub-population is not merged with another.

    Over-splitting is harmless because the bottom cohort is the union of the worst clusters
    (SPEC 5), which re-joins a split population; merging is not, so k errs on the large side,
    bounded so that an average cluster still holds a few times the minimum cell size.
    """
    return int(np.clip(n_speakers // max(AUTO_SPEAKERS_PER_MIN * min_speakers, 1), 2, AUTO_MAX_CLUSTERS))


#: Rows of embeddings turned into float64 at a time by :func:`project_clusters` (bounds its working copy).
PROJECTION_BLOCK = 16_384


def project_clusters(vectors: np.ndarray, labels: np.ndarray, n_clusters: int) -> dict:
    """A 2-D PCA view of the clusters as aggregates only: each cluster's mean and covariance in
    the plane of the first two principal components (drawn as ellipses), never a speaker's point
    or a sparsely filled bin, plus the variance the two components explain.

    Computed in float64, block by block, with per-cluster sums by ``bincount``, and published to 6
    significant digits: the figures do not depend on how many threads the linear algebra used
    (float32 PCA moved them in the 7th digit), so a report is the same on any machine. Each
    component's sign makes its largest loading positive.
    """
    n, dim = vectors.shape
    blocks = [slice(start, start + PROJECTION_BLOCK) for start in range(0, n, PROJECTION_BLOCK)]
    mean = sum(np.asarray(vectors[block], dtype=np.float64).sum(axis=0) for block in blocks) / max(n, 1)
    scatter = np.zeros((dim, dim))
    for block in blocks:
        centred = np.asarray(vectors[block], dtype=np.float64) - mean
        scatter += centred.T @ centred
    variances, axes = np.linalg.eigh(scatter / max(n - 1, 1))  # ascending
    components = axes[:, ::-1][:, :2]
    components *= np.sign(components[np.abs(components).argmax(axis=0), [0, 1]])
    points = np.vstack([(np.asarray(vectors[block], dtype=np.float64) - mean) @ components for block in blocks])
    total = float(variances.sum())
    explained = [_display(float(v) / total * 100) if total > 0 else 0.0 for v in variances[::-1][:2]]

    size = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.stack(
            [np.bincount(labels, weights=points[:, axis], minlength=n_clusters) / size for axis in (0, 1)], axis=1
        )
    deviation = points - centre[labels]  # two passes: no cancellation, variances never negative
    products = {
        (a, b): np.bincount(labels, weights=deviation[:, a] * deviation[:, b], minlength=n_clusters)
        for a, b in ((0, 0), (0, 1), (1, 1))
    }
    centres: list[list[float] | None] = []
    covariances: list[list[list[float]] | None] = []
    for k in range(n_clusters):
        m = size[k]
        centres.append([_display(centre[k, 0]), _display(centre[k, 1])] if m else None)
        if m > 2:
            xx, xy, yy = (_display(products[pair][k] / (m - 1)) for pair in ((0, 0), (0, 1), (1, 1)))
            covariances.append([[xx, xy], [xy, yy]])
        else:
            covariances.append(None)
    return {"explained_variance_pct": explained, "centres": centres, "covariances": covariances}


def _display(value: float) -> float:
    """A figure drawn in the report, to 6 significant digits: the linear algebra's last digits
    depend on how many threads BLAS and LAPACK ran (up to 2e-11 apart), the report must not."""
    return float(f"{value:.6g}")


def nearest_centroid(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (squared Euclidean distance, ties to the lower index).

    A vector's own squared norm is the same for every centroid, so only -2 v.c + |c|^2 is
    compared, in float32 like the embeddings (no float64 copy of a 100,000 x 192 matrix)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    centroids = np.asarray(centroids, dtype=np.float32)
    scores = (centroids**2).sum(axis=1)[None, :] - 2 * (vectors @ centroids.T)
    return np.argmin(scores, axis=1).astype(np.int64)


def _vectors(speakers: SpeakerTable) -> tuple[np.ndarray, np.ndarray]:
    if speakers.embeddings is None:
        return np.zeros((len(speakers), 1)), np.zeros(len(speakers), dtype=bool)
    vectors = speakers.embeddings
    present = ~np.isnan(vectors).any(axis=1)
    # The usual table has a vector for every speaker: no copy (1M x 192 floats is 0.7 GiB).
    return (vectors if present.all() else np.nan_to_num(vectors)), present


def cluster_profiles(speakers: SpeakerTable, labels: np.ndarray, n_clusters: int) -> list[list[dict]]:
    """Per cluster, the metadata values most over-represented in it (share in cluster vs. overall)."""
    rows: list[list[dict]] = [[] for _ in range(n_clusters)]
    assigned = labels >= 0
    for column in speakers.metadata_columns:
        values = speakers.frame[column].to_numpy()[assigned]
        if pd.api.types.is_numeric_dtype(speakers.frame[column].dtype) and pd.Series(values).nunique() > 20:
            continue  # a continuous column has no meaningful "most common value"
        table = pd.crosstab(labels[assigned], pd.Series(values, dtype="string").fillna("(missing)").to_numpy())
        table = table.reindex(range(n_clusters), fill_value=0)
        shares = table.div(table.sum(axis=1).replace(0, 1), axis=0)
        overall = table.sum(axis=0) / max(table.to_numpy().sum(), 1)
        top_value = shares.idxmax(axis=1)
        for cluster in range(n_clusters):
            value = top_value.iloc[cluster]
            share = float(shares.iloc[cluster][value])
            lift = share / float(overall[value]) if overall[value] > 0 else 0.0
            rows[cluster].append({"column": column, "value": str(value), "share_pct": 100 * share, "lift": lift})
    return [sorted(profile, key=lambda item: -item["lift"])[:PROFILE_COLUMNS] for profile in rows]


def _describe(profile: list[dict]) -> str:
    if not profile:
        return "embedding cluster"
    return ", ".join(f"{item['column']}={item['value']} {item['share_pct']:.0f}%" for item in profile)
