"""Planted-cohort recovery (SPEC 8): every shape `fairaudit synth` plants is found by the methods
it targets, with default options and no hint of the planted share.

One log per (shape, method) at 5,000 speakers and a +50% relative WER effect (the size of the
SPEC 8 bar whose per-shape floor is F1 >= 0.7). The seed of each log is the shape's position in
``SHAPES``, not a chosen seed, so each shape is tested on one arbitrary instance; the full
recovery table over 10 seeds and both sizes is ``benchmarks/recovery.py`` (results in
benchmarks/README.md). Intervals and p-values are skipped (``bootstrap=0, permutations=0``):
they do not change which speakers are in the bottom cohort.

Every (shape, method) pair the generator targets is checked against the per-shape floor: since
geo-tree splits on the neighbourhood-pooled WER (``--tree-neighbours``), it meets the floor on
compact shapes too (it did not on boxes, states and circles before).
"""

from __future__ import annotations

import pytest

import fairaudit
from fairaudit.synth.generator import SHAPES, synthesize, write_synth

N_SPEAKERS = 5000
EFFECT = 0.5
FLOOR = 0.7


def f1(predicted: set[str], planted: set[str]) -> float:
    if not predicted and not planted:
        return 1.0
    return 2 * len(predicted & planted) / (len(predicted) + len(planted))


def bottom_speakers(result, method: str) -> set[str]:
    assignments = result.assignments()
    chosen = assignments[(assignments["method"] == method) & assignments["bottom"].astype(bool)]
    return set(chosen["speaker_id"].astype(str))


CASES = [(shape, method) for shape in SHAPES for method in SHAPES[shape].targets]


@pytest.mark.parametrize(("shape", "method"), CASES, ids=[f"{s}-{m}" for s, m in CASES])
def test_default_options_recover_each_planted_shape(shape: str, method: str) -> None:
    seed = list(SHAPES).index(shape)
    synth = synthesize(N_SPEAKERS, effect=EFFECT, plant=[shape], seed=seed)
    result = fairaudit.audit(
        synth.log,
        methods=[method],
        embeddings=synth.embeddings if method == "embedding-kmeans" else None,
        bootstrap=0,
        permutations=0,
        seed=seed,
    )
    planted = set(synth.truth["planted"][shape]["speaker_ids"])
    score = f1(bottom_speakers(result, method), planted)
    assert score >= FLOOR, (
        f"{method} on {shape} (seed {seed}): F1 {score:.3f} < {FLOOR}; "
        f"bottom {result.methods[method].discovery.bottom}; "
        f"planted {synth.truth['planted'][shape]['description']}"
    )


def test_split_population_is_rejoined_where_the_single_worst_cluster_is_not() -> None:
    """emb-split: k-means cuts the planted population into several clusters; the union selection
    re-joins them, while the old single-worst-cluster rule recovers only a fragment."""
    synth = synthesize(N_SPEAKERS, effect=EFFECT, plant=["emb-split"], seed=3)
    planted = set(synth.truth["planted"]["emb-split"]["speaker_ids"])
    union = fairaudit.audit(
        synth.log, methods=["embedding-kmeans"], embeddings=synth.embeddings, bootstrap=0, permutations=0
    )
    worst = fairaudit.audit(
        synth.log,
        methods=["embedding-kmeans"],
        embeddings=synth.embeddings,
        bootstrap=0,
        permutations=0,
        bottom="worst",
    )
    assert len(union.methods["embedding-kmeans"].discovery.bottom) >= 2
    assert f1(bottom_speakers(union, "embedding-kmeans"), planted) >= 0.9
    assert f1(bottom_speakers(worst, "embedding-kmeans"), planted) < 0.8


def test_recovery_from_written_files(tmp_path) -> None:
    """Through the files `fairaudit synth` writes: gzip'd CSV (ZIPs with leading zeros must survive
    ingestion) and the embeddings Parquet file beside it."""
    synth = synthesize(3000, effect=EFFECT, plant=["zip-majority", "emb-cluster"], seed=0)
    paths = write_synth(tmp_path / "synth.csv.gz", synth)
    result = fairaudit.audit(
        str(paths["log"]),
        methods=["zip-demographic", "embedding-kmeans"],
        embeddings=str(paths["embeddings"]),
        bootstrap=0,
        permutations=0,
    )
    for shape, method in (("zip-majority", "zip-demographic"), ("emb-cluster", "embedding-kmeans")):
        planted = set(synth.truth["planted"][shape]["speaker_ids"])
        assert f1(bottom_speakers(result, method), planted) >= 0.8, (shape, method)


def test_null_log_has_no_planted_truth_to_recover() -> None:
    synth = synthesize(2000, plant=(), seed=0)
    assert synth.truth["planted"] == {}
    result = fairaudit.audit(
        synth.log, methods=["embedding-kmeans"], embeddings=synth.embeddings, bootstrap=0, permutations=0
    )
    assignments = result.assignments()
    assert set(assignments["speaker_id"].astype(str)) == set(synth.log["speaker_id"])
