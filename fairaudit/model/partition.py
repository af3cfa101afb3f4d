"""The partition: the one representation every discovery method returns.

Each speaker of a :class:`~fairaudit.model.speakers.SpeakerTable` is in exactly one cohort, or
unassigned with a reason (SPEC section 4). Metrics, statistics and renderers all read this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

UNASSIGNED = -1


@dataclass
class Partition:
    """Speakers -> cohorts for one method.

    ``labels[i]`` is the cohort index of speaker ``i`` (aligned with the speaker table) or
    ``UNASSIGNED`` (-1). ``cohort_ids`` and ``descriptions`` are indexed by cohort index.
    ``unassigned_reasons`` maps a reason ("no coordinates") to a speaker count.
    ``details`` carries method-specific, JSON-serialisable extras (candidate splits, cluster
    profiles, region bounds) for the renderers.
    """

    method: str
    labels: np.ndarray
    cohort_ids: list[str]
    descriptions: list[str]
    unassigned_reasons: dict[str, int] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.cohort_ids) != len(self.descriptions):
            raise ValueError("cohort_ids and descriptions must have the same length")
        if len(self.labels) and self.labels.max(initial=UNASSIGNED) >= len(self.cohort_ids):
            raise ValueError("a label points past the list of cohorts")

    @property
    def n_cohorts(self) -> int:
        return len(self.cohort_ids)

    @property
    def assigned(self) -> np.ndarray:
        """Boolean mask of speakers that are in some cohort."""
        return self.labels != UNASSIGNED

    def speaker_counts(self) -> np.ndarray:
        """Speakers (rows) per cohort, int64."""
        return np.bincount(self.labels[self.assigned], minlength=self.n_cohorts).astype(np.int64)

    def cohort_sums(self, values: np.ndarray) -> np.ndarray:
        """(R, n_cohorts) per-cohort sums of per-speaker values (R, n_speakers): what
        ``values @ indicator()`` gives, with one ``bincount`` instead of a dense matrix."""
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        rows, k = len(values), self.n_cohorts
        assigned = self.assigned
        if assigned.all():
            cells = (self.labels[None, :] + k * np.arange(rows)[:, None]).ravel()
            weights = values.ravel()
        else:
            cells = (self.labels[assigned][None, :] + k * np.arange(rows)[:, None]).ravel()
            weights = values[:, assigned].ravel()
        return np.bincount(cells, weights=weights, minlength=rows * k).reshape(rows, k)

    def indicator(self) -> np.ndarray:
        """(n_speakers, n_cohorts) 0/1 matrix; unassigned speakers have an all-zero row."""
        matrix = np.zeros((len(self.labels), self.n_cohorts), dtype=np.float64)
        assigned = self.assigned
        matrix[np.flatnonzero(assigned), self.labels[assigned]] = 1.0
        return matrix


def reason_counts(reasons: np.ndarray) -> dict[str, int]:
    """Count the non-empty reasons in an array of per-speaker reason strings."""
    values, counts = np.unique(reasons[reasons != ""], return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}
