"""Every registered discovery method passes the same estimator-style contract.

A new method module is covered here without writing a test: the registry lists it, and this file
fits it on one synthetic speaker table that has every column any method needs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone

from fairaudit.api import load_log
from fairaudit.engines.speaker_table import build_speaker_table
from fairaudit.methods.base import CohortMethod, NotFittedError
from fairaudit.methods.registry import method_classes
from fairaudit.model.partition import UNASSIGNED, Partition
from fairaudit.stats.selection import SelectionRule, fixed_partition_statistic
from fairaudit.synth.generator import synthesize

#: Constructor arguments for methods that cannot run on defaults alone (attribute needs columns).
ARGUMENTS = {"attribute": {"by": "accent"}}
NAMES = list(method_classes())


@pytest.fixture(scope="module")
def speakers():
    synthetic = synthesize(900, effect=0.5, seed=11, embeddings="inline", embedding_dim=8)
    return build_speaker_table(load_log(synthetic.log))


def make(name: str) -> CohortMethod:
    return method_classes()[name](**ARGUMENTS.get(name, {}), min_speakers=20)


def test_the_registry_lists_every_method_module():
    assert set(NAMES) >= {"geo-tree", "geo-scan", "zip-demographic", "embedding-kmeans", "attribute"}


@pytest.mark.parametrize("name", NAMES)
def test_parameters_round_trip_through_clone_and_repr(name):
    method = make(name)
    params = method.get_params()
    twin = clone(method)
    assert type(twin) is type(method) and twin is not method
    assert twin.get_params().keys() == params.keys()
    assert repr(method).startswith(type(method).__name__ + "(") and "min_speakers=20" in repr(method)
    assert not any(key.endswith("_") for key in vars(method)), "the constructor must not set fitted attributes"


@pytest.mark.parametrize("name", NAMES)
def test_assign_before_fit_raises_not_fitted(name, speakers):
    with pytest.raises(NotFittedError):
        make(name).assign(speakers)


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_with_a_partition_of_every_speaker(name, speakers):
    method = make(name)
    assert not method.check_requirements(speakers), "the contract table must satisfy every method"
    assert method.fit(speakers) is method
    partition = method.partition_
    assert isinstance(partition, Partition)
    assert len(partition.labels) == len(speakers)
    labels = partition.labels
    assert ((labels == UNASSIGNED) | ((labels >= 0) & (labels < partition.n_cohorts))).all()
    assert len(set(partition.cohort_ids)) == partition.n_cohorts == len(partition.descriptions)
    assert partition.assigned.sum() >= len(speakers) // 2, "most speakers belong to some cohort"


@pytest.mark.parametrize("name", NAMES)
def test_assign_reproduces_the_fitted_partition(name, speakers):
    method = make(name).fit(speakers)
    again = method.assign(speakers)
    assert again.cohort_ids == method.partition_.cohort_ids
    np.testing.assert_array_equal(again.labels, method.partition_.labels)


@pytest.mark.parametrize("name", NAMES)
def test_stored_definition_assigns_speakers_to_the_same_cohorts(name, speakers):
    method = make(name).fit(speakers)
    definition = json.loads(json.dumps(method.definition()))  # what a report stores: plain JSON
    rebuilt = type(method).from_definition(definition, {"demographics": None, "source": None})
    stored = rebuilt.assign(speakers)
    fitted = method.assign(speakers)
    ids = np.asarray(fitted.cohort_ids + [""], dtype=object)
    stored_ids = np.asarray(stored.cohort_ids + [""], dtype=object)
    np.testing.assert_array_equal(stored_ids[stored.labels], ids[fitted.labels])


@pytest.mark.parametrize("name", NAMES)
def test_null_statistics_one_per_permutation_and_unchanged_by_identity(name, speakers):
    method = make(name).fit(speakers)
    rule = SelectionRule(min_speakers=20)
    rng = np.random.default_rng(0)
    n = len(speakers)
    permutations = np.stack([np.arange(n), rng.permutation(n), rng.permutation(n)])
    null = method.null_gaps(speakers, permutations, rule)
    assert null.shape == (3,)
    # The identity "shuffle" re-runs discovery on the real outcomes: it must find the real statistic.
    observed = fixed_partition_statistic(method.partition_, speakers.errors[None, :], speakers.ref_words[None, :], rule)
    assert null[0] == pytest.approx(observed[0], rel=1e-9, abs=1e-12)
