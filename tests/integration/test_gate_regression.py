"""The gate's regression rules judge the interval of the change on the baseline's cohorts (SPEC 9);
each test is a defect of the previous gate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_runner import run_main

import fairaudit
from fairaudit.gate.judge import run_gate
from fairaudit.gate.policy import parse_policy
from fairaudit.synth.generator import synthesize

OPTIONS = dict(methods=["geo-scan"], bootstrap=300, permutations=20)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Baseline, a model worse inside the planted metro (better elsewhere) and a model better
    everywhere, on the same utterances; the baseline's audit report with its cohort definitions."""
    root = tmp_path_factory.mktemp("regression")
    synth = synthesize(3000, effect=0.5, plant=["circle"], seed=4, embeddings="none")
    base = synth.log
    planted = base["speaker_id"].isin(set(synth.truth["planted"]["circle"]["speaker_ids"])).to_numpy()
    rng = np.random.default_rng(1)
    errors, words = base["errors"].to_numpy(), base["ref_words"].to_numpy()
    worse = base.assign(errors=np.where(planted, errors + rng.binomial(words, 0.06), rng.binomial(errors, 0.8)))
    better = base.assign(errors=rng.binomial(errors, 0.75))
    for name, frame in (("base", base), ("worse", worse), ("better", better)):
        frame.to_csv(root / f"{name}.csv", index=False)
    report = json.loads(fairaudit.audit(base, **OPTIONS).to_json())
    (root / "base.json").write_text(json.dumps(report))
    return root, report


def gate(root, *args):
    return run_main("gate", *args, "--method", "geo-scan")


def write_policy(root, text):
    (root / "policy.toml").write_text("bootstrap = 300\npermutations = 20\n[gate]\n" + text)
    return root / "policy.toml"


@pytest.mark.parametrize("baseline", ["base.json", "base.csv"])
def test_a_model_worse_in_one_region_fails_naming_it_with_the_interval_of_the_change(models, baseline):
    root, _ = models
    policy = write_policy(
        root, "max-cohort-wer-increase-points = { fail = 0.5 }\nmax-gap-increase-points = { warn = 5 }\n"
    )
    run = gate(root, root / "worse.csv", "--policy", policy, "--baseline", root / baseline, "--junit", root / "w.xml")
    assert run.code == 1, run.stdout + run.stderr
    import xml.etree.ElementTree as ET

    messages = [f.get("message") for f in ET.parse(root / "w.xml").getroot().iter("failure")]
    message = next(m for m in messages if "max-cohort-wer-increase-points" in m or "window-1" in m)
    assert "window-1" in message and "change +" in message
    assert ("(paired)" if baseline.endswith(".csv") else "(unpaired)") in message
    good = gate(root, root / "better.csv", "--policy", policy, "--baseline", root / baseline)
    assert good.code == 0, good.stdout


def test_an_increase_is_never_reported_with_the_wrong_sign(models):
    """Before: the new interval's lower bound minus the baseline point was called the increase
    (a gap that rose 9 points printed 'increase -8.3 points' and passed)."""
    root, report = models
    worse = json.loads(
        fairaudit.audit(
            str(root / "worse.csv"), cohorts=report, **{k: v for k, v in OPTIONS.items() if k != "methods"}
        ).to_json()
    )
    result = run_gate(worse, parse_policy({"max-gap-increase-points": {"fail": 1000}, "on": "point"}, "p"), report)
    rule = next(r for r in result.results if r.rule == "max-gap-increase-points")
    rose = worse["methods"]["geo-scan"]["wer_gap_pct"] - report["methods"]["geo-scan"]["wer_gap_pct"]
    assert rose > 0 and rule.value == pytest.approx(rose) and f"{rose:+.1f}" in rule.message


def test_a_relative_rule_on_a_gap_near_zero_is_refused_not_flipped(models):
    root, report = models
    tiny = json.loads(json.dumps(report))
    tiny["methods"]["geo-scan"]["wer_gap_pct"] = -10.0
    tiny["methods"]["geo-scan"]["wer_gap_ci"] = [-20.0, 0.0]
    result = run_gate(report, parse_policy({"max-gap-increase-pct": 10}, "p"), tiny)
    rule = next(r for r in result.results if r.rule == "max-gap-increase-pct")
    assert rule.outcome == "fail" and "refused" in rule.message and rule.value is None


def test_cohorts_found_anew_on_another_log_are_not_compared_by_name(models):
    """Before: regions re-discovered on the new log were compared with the baseline's by id, or
    every rule was skipped and the gate passed."""
    root, report = models
    rediscovered = json.loads(fairaudit.audit(str(root / "worse.csv"), **OPTIONS).to_json())
    rediscovered["methods"]["geo-scan"]["definition"]["cells"][0]["radius_km"] += 1  # not the baseline's windows
    result = run_gate(rediscovered, parse_policy({"max-cohort-wer-increase-points": 1}, "p"), report)
    rule = next(r for r in result.results if r.rule == "max-cohort-wer-increase-points")
    assert rule.outcome == "fail" and "not evaluated" in rule.message and result.exit_code == 1


def test_a_baseline_with_other_parameters_is_named_in_a_warning(models):
    root, report = models
    other = json.loads(json.dumps(report))
    other["parameters"]["min_speakers"] = 50
    other["fairaudit_version"] = "0.0.9"
    result = run_gate(report, parse_policy({"max-wer-gap-pct": 1000}, "p"), other)
    warning = next(r for r in result.results if r.rule == "baseline-compatibility")
    assert warning.outcome == "warn" and "min_speakers 50 -> 30" in warning.message and "0.0.9" in warning.message
