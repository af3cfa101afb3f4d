"""embedding-kmeans (Dheram et al. 2022): k-means clusters of L2-normalised speaker embeddings.

Clusters do not depend on outcomes, so the permutation test re-ranks the fixed clusters. Each
cluster is described by its metadata profile (the values most over-represented in it) so a person
can tell who is in it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from fairaudit.methods.base import CohortMethod, SelectionRule, fixed_partition_gaps
from fairaudit.partition import UNASSIGNED, Partition
from fairaudit.speakers import SpeakerTable

PROFILE_COLUMNS = 3  # metadata columns shown in a cluster's description


class EmbeddingKMeans(CohortMethod):
    """Speaker clusters in embedding space, ranked by pooled WER."""

    name = "embedding-kmeans"
    requires = ("embeddings",)

    def __init__(self, clusters: int = 10, min_speakers: int = 30, seed: int = 0) -> None:
        self.clusters = clusters
        self.min_speakers = min_speakers
        self.seed = seed

    def fit(self, speakers: SpeakerTable) -> "EmbeddingKMeans":
        vectors, present = _vectors(speakers)
        self.model_ = None
        if present.sum() >= max(self.clusters, 2):
            self.model_ = KMeans(n_clusters=self.clusters, random_state=self.seed, n_init=4).fit(vectors[present])
            raw = self.model_.labels_
            # Number clusters by size (largest = cluster-1) so ids do not depend on k-means' order.
            sizes = np.bincount(raw, minlength=self.clusters)
            order = np.lexsort((np.arange(self.clusters), -sizes))
            self._renumber = np.empty(self.clusters, dtype=np.int64)
            self._renumber[order] = np.arange(self.clusters)
            labels = np.full(len(speakers), UNASSIGNED, dtype=np.int64)
            labels[present] = self._renumber[raw]
            self.profiles_ = cluster_profiles(speakers, labels, self.clusters)
        else:
            self.profiles_ = []
        self.partition_ = self.assign(speakers)
        return self

    def assign(self, speakers: SpeakerTable) -> Partition:
        vectors, present = _vectors(speakers)
        labels = np.full(len(speakers), UNASSIGNED, dtype=np.int64)
        n_clusters = 0
        if self.model_ is not None:
            n_clusters = self.clusters
            if present.any():
                labels[present] = self._renumber[self.model_.predict(vectors[present])]
        reasons = {}
        if (~present).any():
            reasons["no embedding"] = int((~present).sum())
        if self.model_ is None and present.any():
            reasons["too few speakers with embeddings for k-means"] = int(present.sum())
        return Partition(
            method=self.name,
            labels=labels,
            cohort_ids=[f"cluster-{i + 1}" for i in range(n_clusters)],
            descriptions=[_describe(profile) for profile in self.profiles_],
            unassigned_reasons=reasons,
            details={"profiles": self.profiles_},
        )

    def null_gaps(self, speakers: SpeakerTable, permutations: np.ndarray, rule: SelectionRule) -> np.ndarray:
        """Clusters are fixed; only the ranking depends on outcomes."""
        return fixed_partition_gaps(self.partition_, speakers.errors[permutations], speakers.ref_words[permutations], rule)


def _vectors(speakers: SpeakerTable) -> tuple[np.ndarray, np.ndarray]:
    if speakers.embeddings is None:
        return np.zeros((len(speakers), 1)), np.zeros(len(speakers), dtype=bool)
    vectors = speakers.embeddings
    return np.nan_to_num(vectors), ~np.isnan(vectors).any(axis=1)


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
