"""The CI fairness gate: rules at both levels, policy validation, baselines, JUnit and Markdown."""

import xml.etree.ElementTree as ET

import pytest
from builders import grouped_log

import fairaudit
from fairaudit.errors import InputError
from fairaudit.gate.judge import run_gate
from fairaudit.gate.policy import load_policy, parse_policy
from fairaudit.render.gate_report import gate_markdown, junit_xml


def report_of(frame, **options):
    defaults = dict(by=["group"], bootstrap=300, permutations=50, seed=0)
    defaults.update(options)
    return fairaudit.audit(frame, **defaults).to_dict()


@pytest.fixture(scope="module")
def report():
    return report_of(grouped_log())


def outcome(report, table, baseline=None):
    gate = run_gate(report, parse_policy(table, "policy.toml"), baseline)
    return gate, {(r.rule, r.method): r.outcome for r in gate.results}


def test_gap_rule_at_warn_and_fail_levels_judged_on_the_lower_bound(report):
    attr = report["methods"]["attribute"]
    low, point = attr["wer_gap_ci"][0], attr["wer_gap_pct"]
    assert low < point
    # limits between the lower bound and the point estimate: passes on "lower", fails on "point"
    between = (low + point) / 2
    assert outcome(report, {"max-wer-gap-pct": {"fail": between}})[1][("max-wer-gap-pct", "attribute")] == "pass"
    assert (
        outcome(report, {"max-wer-gap-pct": {"fail": between}, "on": "point"})[1][("max-wer-gap-pct", "attribute")]
        == "fail"
    )
    assert (
        outcome(report, {"max-wer-gap-pct": {"warn": low - 1, "fail": point + 100}})[1][
            ("max-wer-gap-pct", "attribute")
        ]
        == "warn"
    )
    gate, outcomes = outcome(report, {"max-wer-gap-pct": {"warn": low - 20, "fail": low - 1}})
    assert outcomes[("max-wer-gap-pct", "attribute")] == "fail" and gate.exit_code == 1
    gate, outcomes = outcome(report, {"max-wer-gap-pct": {"warn": low - 1}})
    assert outcomes[("max-wer-gap-pct", "attribute")] == "warn" and gate.exit_code == 0
    # a bare number is the fail level
    assert outcome(report, {"max-wer-gap-pct": low - 1})[1][("max-wer-gap-pct", "attribute")] == "fail"


def test_bottom_wer_rule_at_both_levels(report):
    attr = report["methods"]["attribute"]
    bottom = next(c for c in attr["cohorts"] if c["id"] == attr["bottom"])
    low = bottom["wer_ci"][0]
    assert (
        outcome(report, {"max-bottom-wer": {"warn": low - 0.01, "fail": low + 0.01}})[1][
            ("max-bottom-wer", "attribute")
        ]
        == "warn"
    )
    assert (
        outcome(report, {"max-bottom-wer": {"warn": low - 0.02, "fail": low - 0.01}})[1][
            ("max-bottom-wer", "attribute")
        ]
        == "fail"
    )
    assert outcome(report, {"max-bottom-wer": {"fail": low + 0.01}})[1][("max-bottom-wer", "attribute")] == "pass"


def test_a_united_bottom_cohort_is_judged_on_its_own_interval_with_limits_in_its_units():
    """A bottom cohort of two cells has no single cell's interval; the gate must still judge the
    lower bound (on = "lower"), not fall back to the point estimate, and say limits in percent."""
    report = report_of(grouped_log(effect=0.5, scale={"g1": 1.5}), bottom_share=0.5)
    attr = report["methods"]["attribute"]
    assert sorted(attr["bottom_cohorts"]) == ["g0", "g1"]
    low, point = attr["bottom_wer_ci"][0], attr["bottom_wer"]
    assert low < point
    between = (low + point) / 2
    gate, outcomes = outcome(report, {"max-bottom-wer": {"fail": between}})
    assert outcomes[("max-bottom-wer", "attribute")] == "pass"
    text = next(r.message for r in gate.results if r.rule == "max-bottom-wer")
    assert f"judged on the 95% interval's lower bound {100 * low:.2f}%" in text
    assert f"fail above {100 * between:g}%" in text and " in in " not in text
    assert outcome(report, {"max-bottom-wer": {"fail": between}, "on": "point"})[1][
        ("max-bottom-wer", "attribute")
    ] == ("fail")


def test_small_bottom_share_makes_a_gap_not_actionable(report):
    share = report["methods"]["attribute"]["bottom_share_pct"]  # ~25%
    table = {"max-wer-gap-pct": {"fail": 1}, "min-bottom-share-pct": share + 1}
    gate, outcomes = outcome(report, table)
    assert outcomes[("max-wer-gap-pct", "attribute")] == "pass"
    assert "not actionable" in gate.results[0].message


@pytest.mark.parametrize("setting, expected_exit", [("pass", 0), ("warn", 0), ("fail", 1)])
def test_insufficient_data_setting(setting, expected_exit):
    tiny = report_of(grouped_log(n_speakers=40), min_speakers=30)
    assert tiny["methods"]["attribute"]["verdict"] == "insufficient data"
    gate, outcomes = outcome(tiny, {"insufficient-data": setting, "max-wer-gap-pct": 10})
    assert outcomes[("insufficient-data", "attribute")] == setting
    assert gate.exit_code == expected_exit


def test_insufficient_data_defaults_to_warn():
    tiny = report_of(grouped_log(n_speakers=40), min_speakers=30)
    assert outcome(tiny, {})[1][("insufficient-data", "attribute")] == "warn"


def test_regression_worse_on_one_cohort_fails_uniformly_better_passes(report):
    policy = {"max-cohort-wer-increase-points": {"warn": 0.5, "fail": 1.0}, "max-gap-increase-points": {"fail": 20}}
    worse = report_of(grouped_log(scale={"g2": 1.4}))  # g2's WER grows from ~10% to ~14%
    gate, outcomes = outcome(worse, policy, baseline=report)
    assert outcomes[("max-cohort-wer-increase-points", "attribute")] == "fail"
    assert "g2" in next(r.message for r in gate.results if r.rule == "max-cohort-wer-increase-points")
    better = report_of(grouped_log(scale={f"g{i}": 0.8 for i in range(4)}))
    gate, outcomes = outcome(better, policy, baseline=report)
    assert outcomes[("max-cohort-wer-increase-points", "attribute")] == "pass"
    assert outcomes[("max-gap-increase-points", "attribute")] == "pass"
    assert gate.exit_code == 0


def test_regression_rules_without_baseline_are_not_evaluated_and_fail_by_default(report):
    gate, outcomes = outcome(report, {"max-gap-increase-pct": 10})
    assert outcomes[("max-gap-increase-pct", "attribute")] == "fail"
    assert "not evaluated" in gate.results[0].message and gate.exit_code == 1
    gate, outcomes = outcome(report, {"max-gap-increase-pct": 10, "not-evaluated": "warn"})
    assert outcomes[("max-gap-increase-pct", "attribute")] == "warn" and gate.exit_code == 0


@pytest.mark.parametrize(
    "table, fragment",
    [
        ({"max-gap": 10}, "unknown gate policy key 'max-gap'"),
        ({"max-wer-gap-pct": {"warn": 50, "fail": 10}}, "must not exceed fail"),
        ({"max-wer-gap-pct": {"fial": 10}}, "warn and/or fail"),
        ({"max-wer-gap-pct": "ten"}, "must be a finite number"),
        ({"on": "upper"}, "on must be one of lower, point"),
        ({"insufficient-data": "ignore"}, "insufficient-data must be one of pass, warn, fail"),
        ({"method": {"geo-tree": {"max-bottom-wer": -1}}}, "max-bottom-wer must be a finite number (the fail level)"),
        ({"min-bottom-share-pct": 101}, "min-bottom-share-pct must be a number between 0 and 100"),
        ({"max-wer-gap-pct": True}, "must be a finite number"),
        ({"methods": "geo-tree"}, "methods must be a list of method names"),
        ({"method": {"geo-tree": {"method": {}}}}, "unknown gate policy key 'method' in [gate.method.geo-tree]"),
        ({"method": {"geo-tree": {"bogus": 1}}}, "unknown gate policy key 'bogus' in [gate.method.geo-tree]"),
    ],
)
def test_policy_validation_errors_name_the_file_and_key(table, fragment):
    with pytest.raises(InputError) as error:
        parse_policy(table, "fairaudit.toml")
    assert fragment in str(error.value)
    assert error.value.file == "fairaudit.toml"


def test_per_method_overrides(report):
    table = {"max-wer-gap-pct": {"fail": 1}, "method": {"attribute": {"max-wer-gap-pct": {"fail": 10_000}}}}
    assert outcome(report, table)[1][("max-wer-gap-pct", "attribute")] == "pass"


def test_policy_file_forms(tmp_path, monkeypatch):
    (tmp_path / "policy.toml").write_text('[gate]\non = "point"\n[gate.max-wer-gap-pct]\nwarn = 20\nfail = 40\n')
    policy = load_policy(tmp_path / "policy.toml")
    assert policy.on == "point" and policy.rules["max-wer-gap-pct"].fail == 40
    (tmp_path / "pyproject.toml").write_text("[tool.fairaudit.gate]\nmax-bottom-wer = 0.3\n")
    monkeypatch.chdir(tmp_path)
    assert load_policy().rules["max-bottom-wer"].fail == 0.3


def test_junit_xml_parses_with_one_case_per_rule_and_method(report):
    gate, _ = outcome(
        report, {"max-wer-gap-pct": {"fail": 1}, "max-bottom-wer": {"fail": 0.9}, "max-gap-increase-points": 5}
    )
    root = ET.fromstring(junit_xml(gate, report))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "max-wer-gap-pct [attribute]",
        "max-bottom-wer [attribute]",
        "max-gap-increase-points [attribute]",
    ]
    # The regression rule has no baseline: not evaluated, a failure by default (never a silent pass).
    assert suite.get("failures") == "2" and suite.get("tests") == "3"
    failure = cases[0].find("failure")
    assert failure is not None and "WER gap" in failure.get("message")
    assert cases[1].find("failure") is None and "not evaluated" in cases[2].find("failure").get("message")


def test_markdown_comment_escapes_user_strings(report):
    hostile = grouped_log(n_speakers=400)
    hostile["group"] = hostile["group"].replace({"g0": "<b>|x|*</b>"})
    hostile_report = report_of(hostile, bootstrap=0, permutations=0)
    gate, _ = outcome(hostile_report, {"max-wer-gap-pct": {"fail": 1}, "on": "point"})
    text = gate_markdown(gate, hostile_report)
    assert "<b>" not in text and "&lt;b&gt;" in text
    assert "**FAIL**" in text


def test_a_baseline_report_without_the_bottom_interval_is_still_read(report, tmp_path):
    """Reports written before bottom_wer_ci existed stay valid baselines and gate inputs; the
    max-bottom-wer rule then uses a single bottom cell's own interval."""
    import json

    from fairaudit.gate.judge import read_report

    old = json.loads(json.dumps(report))
    for method in old["methods"].values():
        for figures in (method, method.get("holdout") or {}):
            figures.pop("bottom_wer_ci", None)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    reread = read_report(path)
    attr = reread["methods"]["attribute"]
    bottom = next(c for c in attr["cohorts"] if c["id"] == attr["bottom"])
    low = bottom["wer_ci"][0]
    assert outcome(reread, {"max-bottom-wer": {"fail": low + 0.005}})[1][("max-bottom-wer", "attribute")] == "pass"
    assert outcome(reread, {"max-bottom-wer": {"fail": low - 0.005}})[1][("max-bottom-wer", "attribute")] == "fail"


@pytest.mark.parametrize("name", ["geo-treee", "atribute", "attrib:accent"])
def test_a_per_method_table_for_no_method_is_an_error(name):
    """[gate.method.geo-treee] was accepted and never applied, so its limits silently did nothing."""
    with pytest.raises(InputError) as caught:
        parse_policy({"max-wer-gap-pct": 40, "method": {name: {"max-wer-gap-pct": 1}}}, "fairaudit.toml")
    assert caught.value.value == name and "names no method" in caught.value.message
    assert parse_policy({"method": {"attribute:accent": {"max-wer-gap-pct": 1}, "geo-tree": {}}}, "f.toml")
