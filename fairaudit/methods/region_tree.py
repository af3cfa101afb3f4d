"""geo-tree's regression tree: exact CART splits on a public 0.05-degree grid, grown from histograms.

The tree is the one of SPEC 4.1 and Trinh et al.: each split maximises the size-weighted WER
difference W_L W_R / (W_L + W_R) (WER_L - WER_R)^2 (a weighted regression tree on speaker WER with
weight = words), grown best-first to ``max_leaves`` leaves with at least ``min_samples_leaf``
speakers per leaf, then cut back by minimal cost-complexity pruning (Breiman et al.; scikit-learn's
``ccp_alpha``). Splits fall on the lines of a public grid (``GRID_STEP_DEGREES``), so region bounds
are round numbers that reveal no speaker's coordinates; a speaker's grid cell along an axis is
``ceil(coordinate / step) - 1`` (cell k spans (k step, (k+1) step]).

On cell numbers the tree is exactly scikit-learn's ``DecisionTreeRegressor(max_leaf_nodes,
min_samples_leaf, ccp_alpha)`` fitted with ``sample_weight`` (same splits, same node numbering;
``tests/unit/test_region_tree.py`` checks it). It is computed differently: every node keeps per-cell
histograms of speakers, words and errors, so a split search is a cumulative sum over the cells, and
of two children only the smaller one is counted (the other is the parent minus it), and the tree
works on the occupied grid cells ("sites") rather than on speakers. The permutation test regrows
the tree 200 times on shuffled outcomes with the coordinates fixed, which this makes cheap (issue
12: 13.8 s -> about 1.7 s at 100,000 speakers; 22 s -> 10 s at 1,000,000, half of it shuffling).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

#: Region bounds are multiples of this many degrees (0.05 degrees is about 5.5 km of latitude).
GRID_STEP_DEGREES = 0.05
_CELLS_PER_DEGREE = 20  # 1 / GRID_STEP_DEGREES, kept integral for exact cell arithmetic
#: scikit-learn's rule: a node whose impurity is at most EPSILON is a leaf.
EPSILON = float(np.finfo(np.float64).eps)
LEAF = -1


def grid_cells(coords: np.ndarray) -> np.ndarray:
    """The grid cell of every coordinate: cell k spans (k / 20, (k + 1) / 20] degrees."""
    return (np.ceil(np.asarray(coords, dtype=np.float64) * _CELLS_PER_DEGREE) - 1).astype(np.int64)


def grid_line(cell_upper: int) -> float:
    """The coordinate of the grid line above cell ``cell_upper - 1`` (a bound in degrees)."""
    return round(cell_upper / _CELLS_PER_DEGREE, 2)


def cell_bound(bound: float) -> int:
    """A bound in degrees as the number of the grid line (inverse of ``grid_line``)."""
    return int(round(bound * _CELLS_PER_DEGREE))


class GridPoints:
    """Speakers' grid cells per axis, shifted to start at 0, and the distinct occupied cells ("sites").

    The tree works on sites weighted by their speakers: speakers in one grid cell always fall on
    the same side of every split, so summing them once per outcome (one ``bincount``) leaves every
    split, count and total as it was, and a million speakers shrink to the tens of thousands of
    cells they occupy.
    """

    def __init__(self, coords: np.ndarray) -> None:
        cells = grid_cells(coords)
        self.n = len(cells)
        self.origin = cells.min(axis=0) if self.n else np.zeros(cells.shape[1], dtype=np.int64)
        shifted = cells - self.origin
        self.sizes = [int(shifted[:, axis].max()) + 1 if self.n else 1 for axis in range(cells.shape[1])]
        key = np.ravel_multi_index(tuple(shifted.T), self.sizes) if self.n else np.zeros(0, dtype=np.int64)
        sites, site_of = np.unique(key, return_inverse=True)
        self.site_of = site_of.ravel()
        self.n_sites = len(sites)
        self.cells = [np.ascontiguousarray(c) for c in np.unravel_index(sites, self.sizes)]  # per site
        self.site_speakers = np.bincount(self.site_of, minlength=self.n_sites).astype(np.float64)
        self.root_counts = [
            np.bincount(c, weights=self.site_speakers, minlength=s) for c, s in zip(self.cells, self.sizes)
        ]

    def per_site(self, values: np.ndarray) -> np.ndarray:
        """Per-speaker values summed per site."""
        return np.bincount(self.site_of, weights=values, minlength=self.n_sites)

    def line(self, axis: int, line: int) -> float:
        """The bound in degrees of grid line ``line`` (cells below it go left)."""
        return grid_line(int(self.origin[axis]) + line)


@dataclass
class GrownTree:
    """A fitted tree in scikit-learn's layout (node arrays by node id; thresholds in degrees)
    and the leaf of every point."""

    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    leaf_of_point: np.ndarray  # per speaker
    leaf_of_site: np.ndarray

    @property
    def node_count(self) -> int:
        return len(self.children_left)

    def leaf_labels(self) -> np.ndarray:
        """Each point's leaf as 0..L-1, numbered in node order."""
        return self._leaf_rank()[self.leaf_of_point]

    def site_labels(self) -> np.ndarray:
        """Each site's leaf as 0..L-1 (the same numbering as :meth:`leaf_labels`)."""
        return self._leaf_rank()[self.leaf_of_site]

    def _leaf_rank(self) -> np.ndarray:
        return np.cumsum(self.children_left == LEAF) - 1  # node id -> its rank among the leaves


@dataclass(frozen=True)
class SiteSums:
    """One outcome set summed per site: words, errors (of speakers with words) and words x WER^2."""

    words: np.ndarray
    errors: np.ndarray
    squares: np.ndarray


def speaker_terms(errors: np.ndarray, words: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per speaker: words, errors counted only when the speaker has words, and words x WER^2.

    They move with the speaker's outcomes, so a permutation test computes them once and shuffles them.
    """
    words = np.asarray(words, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    has_words = words > 0
    errors = errors if has_words.all() else np.where(has_words, errors, 0.0)
    squares = np.divide(errors * errors, words, out=np.zeros_like(words), where=has_words)
    return words, errors, squares


def site_sums(points: GridPoints, words: np.ndarray, errors: np.ndarray, squares: np.ndarray) -> SiteSums:
    """Per-speaker terms (:func:`speaker_terms`, possibly shuffled) summed per site."""
    return SiteSums(points.per_site(words), points.per_site(errors), points.per_site(squares))


@dataclass
class _Node:
    members: np.ndarray  # site indices
    counts: list[np.ndarray]  # per axis: speakers per cell (float: sums of site weights)
    words: list[np.ndarray]  # per axis: words per cell
    errors: list[np.ndarray]  # per axis: errors per cell
    weight: float
    total: float
    squares: float  # sum of words x WER^2 (for the impurity)
    parent: int
    split: tuple[float, int, int, int] | None = None  # (improvement, axis, last cell on the left, grid line)

    @property
    def speakers(self) -> float:
        return float(self.counts[0].sum())

    @property
    def impurity(self) -> float:
        return self.squares / self.weight - (self.total / self.weight) ** 2 if self.weight > 0 else 0.0


def grow_tree(
    points: GridPoints,
    errors: np.ndarray,
    words: np.ndarray,
    *,
    max_leaves: int,
    min_samples_leaf: int,
    ccp_alpha: float,
) -> GrownTree:
    """Grow best-first to ``max_leaves`` leaves, then prune at cost-complexity ``ccp_alpha``
    (impurity decrease per leaf, as a share of all words, as in scikit-learn)."""
    sums = site_sums(points, *speaker_terms(errors, words))
    return grow_tree_on_sites(
        points, sums, max_leaves=max_leaves, min_samples_leaf=min_samples_leaf, ccp_alpha=ccp_alpha
    )


def grow_tree_on_sites(
    points: GridPoints,
    sums: SiteSums,
    *,
    max_leaves: int,
    min_samples_leaf: int,
    ccp_alpha: float,
    alike: tuple[SiteSums, float] | None = None,
) -> GrownTree:
    """:func:`grow_tree` from outcomes already summed per site (the permutation test's path).

    ``alike`` = (outcomes, gain): afterwards, two sibling leaves whose split gains less than
    ``gain`` on these outcomes become one leaf again (see :func:`_merge_alike_siblings`)."""
    grower = _Grower(points, sums, min_samples_leaf)
    nodes, left, right = grower.grow(max_leaves)
    if ccp_alpha > 0.0:
        nodes, left, right = _prune(nodes, left, right, ccp_alpha)
    if alike is not None:
        nodes, left, right = _merge_alike_siblings(nodes, left, right, *alike)
    return _layout(points, nodes, left, right)


def root_split_gain(points: GridPoints, sums: SiteSums, min_samples_leaf: int) -> float:
    """The impurity decrease (share of all words) of the best first split; 0 when none is allowed."""
    grower = _Grower(points, sums, min_samples_leaf)
    root = grower.root()
    return root.split[0] if root.split else 0.0


class _Grower:
    """scikit-learn's best-first builder over per-cell histograms."""

    def __init__(self, points: GridPoints, sums: SiteSums, min_samples_leaf: int) -> None:
        self.points = points
        self.words, self.errors, self.squares = sums.words, sums.errors, sums.squares
        self.speakers = points.site_speakers
        self.min_leaf = max(1, int(min_samples_leaf))
        self.root_weight = float(sums.words.sum())

    def root(self) -> _Node:
        p = self.points
        words = [np.bincount(c, weights=self.words, minlength=s) for c, s in zip(p.cells, p.sizes)]
        errors = [np.bincount(c, weights=self.errors, minlength=s) for c, s in zip(p.cells, p.sizes)]
        node = _Node(
            np.arange(p.n_sites),
            list(p.root_counts),
            words,
            errors,
            self.root_weight,
            float(self.errors.sum()),
            float(self.squares.sum()),
            LEAF,
        )
        self.consider(node)
        return node

    def counted(self, members: np.ndarray, parent: int) -> _Node:
        """A node whose histograms are counted from its members."""
        p = self.points
        cells = [c[members] for c in p.cells]
        w, e, k = self.words[members], self.errors[members], self.speakers[members]
        return _Node(
            members,
            [np.bincount(c, weights=k, minlength=s) for c, s in zip(cells, p.sizes)],
            [np.bincount(c, weights=w, minlength=s) for c, s in zip(cells, p.sizes)],
            [np.bincount(c, weights=e, minlength=s) for c, s in zip(cells, p.sizes)],
            float(w.sum()),
            float(e.sum()),
            float(self.squares[members].sum()),
            parent,
        )

    @staticmethod
    def remainder(parent: _Node, part: _Node, members: np.ndarray, index: int) -> _Node:
        """The parent's other child: its histograms are the parent's minus ``part``'s."""
        return _Node(
            members,
            [a - b for a, b in zip(parent.counts, part.counts)],
            [a - b for a, b in zip(parent.words, part.words)],
            [a - b for a, b in zip(parent.errors, part.errors)],
            parent.weight - part.weight,
            parent.total - part.total,
            parent.squares - part.squares,
            index,
        )

    def consider(self, node: _Node) -> None:
        """Find the node's best split unless scikit-learn's rules make it a leaf."""
        n = node.speakers
        if n >= 2 * self.min_leaf and n >= 2 and len(node.members) >= 2 and node.impurity > EPSILON:
            node.split = self.best_split(node)

    def best_split(self, node: _Node) -> tuple[float, int, int, int] | None:
        """The split with the largest proxy sum_L^2 / W_L + sum_R^2 / W_R; the first on ties, axis 0
        before axis 1 (scikit-learn visits features in a seeded random order; ties are measure-zero).
        The bound is the grid line halfway across the empty cells between the two sides."""
        n = node.speakers
        best_proxy, best = -np.inf, None
        for axis in range(len(node.counts)):
            cc = np.cumsum(node.counts[axis])
            wl = np.cumsum(node.words[axis])
            sl = np.cumsum(node.errors[axis])
            wr, sr = node.weight - wl, node.total - sl
            valid = (node.counts[axis] > 0) & (cc >= self.min_leaf) & (n - cc >= self.min_leaf) & (wl > 0) & (wr > 0)
            if not valid.any():
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                proxy = np.where(valid, sl * sl / wl + sr * sr / wr, -np.inf)
            at = int(np.argmax(proxy))
            if proxy[at] > best_proxy:
                best_proxy = proxy[at]
                best = (axis, at, float(wl[at]), float(sl[at]))
        if best is None:
            return None
        axis, cell, w_l, s_l = best  # the winner's totals left of the split (floats, not the arrays above)
        w_r, s_r = node.weight - w_l, node.total - s_l
        improvement = (s_l * s_l / w_l + s_r * s_r / w_r - node.total**2 / node.weight) / self.root_weight
        next_cell = cell + 1 + int(np.flatnonzero(node.counts[axis][cell + 1 :])[0])
        return improvement, axis, cell, (cell + 1 + next_cell) // 2

    def children(self, node: _Node, index: int) -> tuple[_Node, _Node]:
        """Split a node; the smaller child is counted, the larger is the parent minus it."""
        assert node.split is not None  # grow() splits only nodes that have a split
        _, axis, cell, _ = node.split
        goes_left = self.points.cells[axis][node.members] <= cell
        left_members, right_members = node.members[goes_left], node.members[~goes_left]
        if len(left_members) <= len(right_members):
            left = self.counted(left_members, index)
            right = self.remainder(node, left, right_members, index)
        else:
            right = self.counted(right_members, index)
            left = self.remainder(node, right, left_members, index)
        self.consider(left)
        self.consider(right)
        return left, right

    def grow(self, max_leaves: int) -> tuple[list[_Node], list[int], list[int]]:
        """Pop the node with the largest improvement and split it while the split budget lasts;
        children are numbered left first, in creation order (scikit-learn's BestFirstTreeBuilder)."""
        nodes = [self.root()]
        left, right = [LEAF], [LEAF]
        frontier = [(-nodes[0].split[0] if nodes[0].split else 0.0, 0)]
        splits_left = max_leaves - 1
        while frontier:
            _, index = heapq.heappop(frontier)
            node = nodes[index]
            if node.split is None or splits_left <= 0:
                node.split = None
                continue
            splits_left -= 1
            for side, child in zip((left, right), self.children(node, index)):
                side[index] = len(nodes)
                nodes.append(child)
                left.append(LEAF)
                right.append(LEAF)
                heapq.heappush(frontier, (-child.split[0] if child.split else 0.0, len(nodes) - 1))
        return nodes, left, right


def _merge_alike_siblings(
    nodes: list[_Node], left: list[int], right: list[int], outcomes: SiteSums, min_gain: float
) -> tuple[list[_Node], list[int], list[int]]:
    """Undo, deepest first, every split into two leaves that gains less than ``min_gain`` on
    ``outcomes`` (W_L W_R / (W_L + W_R) x (WER_L - WER_R)^2): a tree grown on a smoothed target
    cuts the ramp across a real boundary into strips whose own WERs do not differ."""
    count = len(nodes)
    internal = np.array([left[i] != LEAF for i in range(count)])
    words, errors = np.zeros(count), np.zeros(count)
    for leaf in np.flatnonzero(~internal):  # leaves hold every site once
        members = nodes[leaf].members
        words[leaf], errors[leaf] = outcomes.words[members].sum(), outcomes.errors[members].sum()
    for index in range(count - 1, -1, -1):  # children are numbered after their parents
        if not internal[index]:
            continue
        a, b = left[index], right[index]
        words[index], errors[index] = words[a] + words[b], errors[a] + errors[b]
        if internal[a] or internal[b] or words[a] <= 0 or words[b] <= 0:
            continue
        difference = errors[a] / words[a] - errors[b] / words[b]
        if words[a] * words[b] / (words[a] + words[b]) * difference**2 < min_gain:
            internal[index] = False
    return _renumbered(nodes, left, right, internal)


def _prune(
    nodes: list[_Node], left: list[int], right: list[int], alpha: float
) -> tuple[list[_Node], list[int], list[int]]:
    """Minimal cost-complexity pruning (scikit-learn's ``_cost_complexity_prune``), then the
    surviving tree renumbered depth-first, left child first, as scikit-learn rebuilds it."""
    count = len(nodes)
    total = nodes[0].weight
    r_node = np.array([node.weight * node.impurity / total for node in nodes])
    parent = np.array([node.parent for node in nodes])
    is_leaf = np.array([left[i] == LEAF for i in range(count)])
    r_branch = np.where(is_leaf, r_node, 0.0)
    n_leaves = np.zeros(count, dtype=np.int64)
    for leaf in np.flatnonzero(is_leaf):
        node = leaf
        while node != 0:
            node = parent[node]
            r_branch[node] += r_node[leaf]
            n_leaves[node] += 1
    candidate = ~is_leaf
    in_tree = np.ones(count, dtype=bool)
    while candidate[0]:
        indices = np.flatnonzero(candidate)
        alphas = (r_node[indices] - r_branch[indices]) / (n_leaves[indices] - 1)
        if alpha < float(alphas.min()):
            break
        weakest = int(indices[np.argmin(alphas)])
        subtree = [weakest]
        while subtree:
            dropped = subtree.pop()
            if not in_tree[dropped]:
                continue
            candidate[dropped] = in_tree[dropped] = False
            if left[dropped] != LEAF:
                subtree += [left[dropped], right[dropped]]
        in_tree[weakest] = True
        pruned = n_leaves[weakest] - 1
        n_leaves[weakest] = 0
        diff = r_node[weakest] - r_branch[weakest]
        r_branch[weakest] = r_node[weakest]
        node = parent[weakest]
        while node != LEAF:
            n_leaves[node] -= pruned
            r_branch[node] += diff
            node = parent[node]
    return _renumbered(nodes, left, right, candidate)


def _renumbered(
    nodes: list[_Node], left: list[int], right: list[int], internal: np.ndarray
) -> tuple[list[_Node], list[int], list[int]]:
    """The subtree whose internal nodes are those marked ``internal`` (the others become leaves),
    renumbered depth-first, left child first, as scikit-learn rebuilds a pruned tree."""
    new_nodes: list[_Node] = []
    new_left: list[int] = []
    new_right: list[int] = []
    stack = [(0, LEAF, False)]
    while stack:
        old, new_parent, is_left_child = stack.pop()
        index = len(new_nodes)
        kept = nodes[old]
        new_nodes.append(kept)
        new_left.append(LEAF)
        new_right.append(LEAF)
        if new_parent != LEAF:
            (new_left if is_left_child else new_right)[new_parent] = index
        if internal[old]:  # a surviving internal node keeps its split
            stack.append((right[old], index, False))
            stack.append((left[old], index, True))
        else:
            kept.split = None
    return new_nodes, new_left, new_right


def _layout(points: GridPoints, nodes: list[_Node], left: list[int], right: list[int]) -> GrownTree:
    """Node arrays in scikit-learn's layout (thresholds as grid lines in degrees) and each point's leaf."""
    count = len(nodes)
    feature = np.full(count, -2, dtype=np.int64)
    threshold = np.full(count, -2.0)
    leaf_of_site = np.empty(points.n_sites, dtype=np.int64)
    for index, node in enumerate(nodes):
        if left[index] == LEAF:
            leaf_of_site[node.members] = index
        else:
            assert node.split is not None  # an internal node keeps its split (see _prune)
            _, axis, _, line = node.split
            feature[index] = axis
            threshold[index] = points.line(axis, line)
    return GrownTree(
        np.array(left, dtype=np.int64),
        np.array(right, dtype=np.int64),
        feature,
        threshold,
        leaf_of_site[points.site_of],
        leaf_of_site,
    )
