"""The interface every cohort-discovery method shares (scikit-learn style).

``method.fit(speakers)`` learns cohort rules from a speaker table and sets ``partition_``;
``method.assign(speakers)`` applies the learned rules to any speaker table (e.g. held-out
speakers); ``method.null_gaps(...)`` re-runs the outcome-dependent part of the discovery on
shuffled outcomes for the permutation test. Methods never render and never compute intervals.
"""

from __future__ import annotations

import copy
import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from fairaudit.model.partition import Partition
from fairaudit.model.speakers import SpeakerTable
from fairaudit.stats.selection import SelectionRule, fixed_partition_statistic

if TYPE_CHECKING:
    from fairaudit.options import AuditOptions


class NotFittedError(ValueError, AttributeError):
    """``assign`` or ``null_gaps`` on a method that was neither fitted nor rebuilt from a definition."""


class CohortMethod(ABC):
    """A cohort-discovery method: speaker table in, partition out.

    Shaped like a scikit-learn estimator: parameters are constructor arguments stored unchanged
    (``get_params``/``set_params``/``repr``, and ``sklearn.base.clone`` works), ``fit`` returns
    self, fitted attributes end in ``_``, and ``assign`` on an unfitted method raises
    :class:`NotFittedError`. (Not inherited from ``sklearn.base.BaseEstimator``: importing
    scikit-learn costs 0.7 s at every CLI start, and these four methods are all it would give.)
    """

    name: ClassVar[str]
    #: One line for report headings: "<name>: what the cohorts are".
    title: ClassVar[str] = ""
    #: Position in reports (lower first).
    display_order: ClassVar[int] = 100
    #: Run without ``--method`` when the log has the required columns.
    runs_by_default: ClassVar[bool] = True
    #: Speaker-table columns the method needs; "embeddings" means the embedding matrix.
    requires: ClassVar[tuple[str, ...]] = ()
    #: Whether the cells themselves depend on the outcomes (a tree, a scan) or only their ranking
    #: does (clusters, attribute groups): the permutation test then only re-ranks fixed cells.
    cells_depend_on_outcomes: ClassVar[bool] = True
    #: Whether, on stored definitions (``audit --cohorts``), the speakers of a cell withheld for
    #: privacy land in a published cell (the nearest cluster, the area outside the windows) instead
    #: of being unassigned: an audit on such definitions then says so in a note.
    absorbs_withheld_cells: ClassVar[bool] = False
    #: Whether the bottom cohort may be a cell holding more than ``--max-bottom-share`` of the
    #: speakers when even the worst cell does (``--bottom auto``): yes for groups given in advance
    #: (a binary attribute's worse side may be its majority); no for cells a method found, where a
    #: majority "bottom cohort" means no minority of higher WER stood out (SPEC 5).
    bottom_may_be_majority: ClassVar[bool] = False

    partition_: Partition

    @classmethod
    def from_options(cls, opts: AuditOptions) -> Sequence[CohortMethod]:
        """The method instance(s) an audit with these options runs (usually one)."""
        raise NotImplementedError

    def definition(self) -> dict:
        """The fitted cohorts as portable definitions (SPEC 6, 9): a JSON-serialisable dict with a
        ``cells`` list (each with ``id`` and ``description``) and whatever else :meth:`assign`
        needs, so that :meth:`from_definition` can put new speakers in the same cohorts."""
        raise NotImplementedError(f"{type(self).__name__} has no portable cohort definitions")

    @classmethod
    def from_definition(cls, definition: dict, context: dict | None = None) -> CohortMethod:
        """A fitted method that assigns speakers to the stored cohorts (no discovery).

        ``context`` carries what a definition refers to but does not hold (e.g. the census
        table). Raises ValueError when the definition is malformed or cannot apply.
        """
        raise NotImplementedError(f"{cls.__name__} cannot be rebuilt from stored definitions")

    @abstractmethod
    def fit(self, speakers: SpeakerTable) -> CohortMethod:
        """Learn cohort rules from ``speakers`` and set ``partition_`` (a partition of them)."""

    @classmethod
    def _param_names(cls) -> list[str]:
        """The constructor's parameter names (scikit-learn's convention: they are the parameters)."""
        signature = inspect.signature(cls.__init__)
        kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        return sorted(p.name for p in signature.parameters.values() if p.name != "self" and p.kind not in kinds)

    def get_params(self, deep: bool = True) -> dict[str, object]:
        """Parameters by name (``deep`` is accepted for scikit-learn's ``clone``; there are no nested estimators)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: object) -> CohortMethod:
        """Set parameters by name; an unknown name is a ValueError."""
        unknown = set(params) - set(self._param_names())
        if unknown:
            raise ValueError(f"{type(self).__name__} has no parameter(s) {', '.join(sorted(unknown))}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        changed = []
        for name, value in self.get_params().items():
            default = defaults[name].default
            same = default is not inspect.Parameter.empty and type(value) is type(default) and _equal(value, default)
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` unless ``fit`` (or ``from_definition``) has set fitted attributes."""
        if not any(key.endswith("_") and not key.startswith("_") for key in vars(self)):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(speakers) first")

    def assign(self, speakers: SpeakerTable) -> Partition:
        """Apply the learned rules to ``speakers``; cohorts keep the ids learned in ``fit``."""
        self.check_fitted()
        return self._assign(speakers)

    @abstractmethod
    def _assign(self, speakers: SpeakerTable) -> Partition:
        """The method's own assignment of speakers to its fitted (or stored) cells."""

    def null_gaps(self, speakers: SpeakerTable, permutations: np.ndarray, rule: SelectionRule) -> np.ndarray:
        """The discovery's test statistic (:meth:`SelectionRule.statistic`) for each row of
        ``permutations`` (shuffled speaker positions), both stages re-run.

        When the cells do not depend on the outcomes, the fixed cells are re-ranked on every shuffle
        (vectorised). Otherwise a copy of the method is refitted on each shuffled table: exact but
        slow, so such methods override this with their own fast regrowth.
        """
        self.check_fitted()
        errors, words = speakers.errors, speakers.ref_words
        if not self.cells_depend_on_outcomes:
            return fixed_partition_statistic(self.partition_, errors[permutations], words[permutations], rule)
        gaps = np.empty(len(permutations))
        for row, order in enumerate(permutations):
            shuffled = speakers.with_outcomes(errors[order], words[order])
            method = copy.deepcopy(self).fit(shuffled)
            gaps[row] = fixed_partition_statistic(
                method.partition_, errors[order][None, :], words[order][None, :], rule
            )[0]
        return gaps

    def check_requirements(self, speakers: SpeakerTable) -> list[str]:
        """Names of required inputs missing from ``speakers`` (empty when the method can run)."""
        missing = []
        for column in self.requires:
            if column == "embeddings":
                if speakers.embeddings is None or np.isnan(speakers.embeddings).all():
                    missing.append("speaker embeddings (emb_* columns or --embeddings FILE)")
            elif not speakers.has_column(column):
                missing.append(f"column {column!r}")
        return missing


def _equal(a: object, b: object) -> bool:
    """Equality that never raises (arrays and frames compare as "changed")."""
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def definition_cells(definition: dict) -> list[dict]:
    """The ``cells`` of a stored definition, checked: a list of objects with a string ``id``."""
    cells = definition.get("cells") if isinstance(definition, dict) else None
    if not isinstance(cells, list) or not all(isinstance(c, dict) and isinstance(c.get("id"), str) for c in cells):
        raise ValueError("the definition needs 'cells': a list of objects with a string 'id'")
    if len({c["id"] for c in cells}) != len(cells):
        raise ValueError("cell ids in the definition are not unique")
    return cells
