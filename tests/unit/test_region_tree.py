"""geo-tree's histogram tree against scikit-learn's DecisionTreeRegressor on the same grid cells."""

import numpy as np
import pytest
from sklearn.tree import DecisionTreeRegressor

from fairaudit.methods.region_tree import (
    GRID_STEP_DEGREES,
    GridPoints,
    grid_cells,
    grow_tree,
    root_split_gain,
    site_sums,
    speaker_terms,
)


def random_case(seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(100, 4000))
    coords = np.c_[rng.uniform(25, 49, n), rng.uniform(-124, -67, n)]
    if seed % 3 == 0:
        coords = np.round(coords, 1)  # many speakers share a cell: ties on both axes
    words = rng.integers(1, 300, n).astype(float)
    rate = np.clip(rng.gamma(2, 0.05, n) * (1 + 0.5 * (coords[:, 0] < 33)), 0, 1)
    errors = rng.binomial(words.astype(int), rate).astype(float)
    min_leaf = int(rng.integers(5, 60))
    leaves = int(rng.integers(2, 20))
    alpha = float(rng.choice([0.0, 1e-6, 1e-5, 1e-4]))
    return coords, errors, words, min_leaf, leaves, alpha


@pytest.mark.parametrize("seed", range(40))
def test_same_tree_as_scikit_learn_on_grid_cells(seed):
    coords, errors, words, min_leaf, leaves, alpha = random_case(seed)
    cells = grid_cells(coords).astype(float)
    reference = DecisionTreeRegressor(max_leaf_nodes=leaves, min_samples_leaf=min_leaf, ccp_alpha=alpha, random_state=0)
    reference.fit(cells, errors / words, sample_weight=words)
    ours = grow_tree(GridPoints(coords), errors, words, max_leaves=leaves, min_samples_leaf=min_leaf, ccp_alpha=alpha)
    tree = reference.tree_
    assert ours.node_count == tree.node_count
    assert np.array_equal(ours.children_left, tree.children_left)
    assert np.array_equal(ours.children_right, tree.children_right)
    assert np.array_equal(ours.feature, np.where(tree.children_left == -1, -2, tree.feature))
    assert np.array_equal(ours.leaf_of_point, reference.apply(cells))


def test_bounds_are_grid_lines_between_the_two_sides():
    coords, errors, words, *_ = random_case(7)
    points = GridPoints(coords)
    ours = grow_tree(points, errors, words, max_leaves=12, min_samples_leaf=20, ccp_alpha=0.0)
    cells = grid_cells(coords)
    for node in np.flatnonzero(ours.children_left != -1):
        bound = ours.threshold[node]
        assert bound / GRID_STEP_DEGREES == pytest.approx(round(bound / GRID_STEP_DEGREES), abs=1e-9)
        axis = ours.feature[node]
        line = round(bound / GRID_STEP_DEGREES)
        under = np.isin(ours.leaf_of_point, leaves_below(ours, ours.children_left[node]))
        over = np.isin(ours.leaf_of_point, leaves_below(ours, ours.children_right[node]))
        assert (cells[under, axis] < line).all() and (cells[over, axis] >= line).all()


def leaves_below(tree, node):
    if tree.children_left[node] == -1:
        return [node]
    return leaves_below(tree, tree.children_left[node]) + leaves_below(tree, tree.children_right[node])


def test_root_gain_is_the_weighted_impurity_decrease():
    coords, errors, words, *_ = random_case(4)
    cells = grid_cells(coords).astype(float)
    stump = (
        DecisionTreeRegressor(max_depth=1, min_samples_leaf=25).fit(cells, errors / words, sample_weight=words).tree_
    )
    weight, impurity = stump.weighted_n_node_samples, stump.impurity
    expected = (weight[0] * impurity[0] - weight[1] * impurity[1] - weight[2] * impurity[2]) / weight[0]
    points = GridPoints(coords)
    gain = root_split_gain(points, site_sums(points, *speaker_terms(errors, words)), 25)
    assert gain == pytest.approx(expected, rel=1e-9)
