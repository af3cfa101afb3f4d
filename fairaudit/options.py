"""Every audit option, declared once (issue 13): type, default, bounds, CLI flag, metavar and help.

:class:`AuditOptions` is a pydantic model. The Python API (``fairaudit.audit(**options)``), the
configuration file (``fairaudit.toml``), the command line (``fairaudit audit --help``) and the JSON
report's ``parameters`` all read their names, bounds and words from here. A value out of bounds is
a :class:`~fairaudit.errors.UsageError` that names the command-line flag ("--holdout must be ...").
"""

from __future__ import annotations

import importlib.util
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fairaudit.errors import UsageError
from fairaudit.stats.metrics import BOTTOM_MODES, TOP_MODES


def option(default: Any, *, flag: str, metavar: str | None, help: str, rule: str, kind: str, **bounds: Any) -> Any:
    """A model field with what the CLI and the configuration reader need to present it.

    ``rule`` completes "<flag> must be ..." in error messages; ``kind`` names the value type a
    configuration file must give (see ``fairaudit.io.config_file``).
    """
    extra: dict[str, Any] = {"flag": flag, "metavar": metavar, "rule": rule, "kind": kind}
    return Field(default, description=help, json_schema_extra=extra, **bounds)


class AuditOptions(BaseModel):
    """Every audit parameter (recorded verbatim, in this order, in the JSON report's ``parameters``)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=False)

    methods: list[str] | None = option(
        None,
        flag="--method",
        metavar="NAME",
        kind="names",
        rule="a list of method names",
        help="Discovery method: {methods} (repeatable). Default: every method the log has the columns for "
        "(attribute with --by).",
    )
    by: list[str] = option(
        [],
        flag="--by",
        metavar="COLUMN",
        kind="names",
        rule="a list of column names",
        help="Metadata column(s) for the attribute method; 'a,b' for the intersection of a and b (repeatable).",
    )
    by_level: str = option(
        "auto",
        flag="--by-level",
        metavar="auto|speaker|utterance",
        kind="str",
        rule="one of auto, speaker, utterance",
        help="How --by cohorts are formed: 'utterance' (a cohort is the utterances with that value, so a speaker "
        "whose device varies counts in each device's cohort), 'speaker' (each speaker in the cohort of their most "
        "frequent value) or 'auto' (default): utterance for a column that varies within some speaker, else speaker.",
    )
    min_speakers: int = option(
        30,
        ge=1,
        flag="--min-speakers",
        metavar="N",
        kind="int",
        rule="at least 1",
        help="Minimum speakers per cohort for it to be chosen as bottom or top, and minimum region size for "
        "geo-tree. Default 30.",
    )
    max_regions: int = option(
        16,
        ge=2,
        flag="--max-regions",
        metavar="N",
        kind="int",
        rule="at least 2",
        help="geo-tree: maximum number of regions (tree leaves). Default 16.",
    )
    min_gain: float | str = option(
        "auto",
        flag="--min-gain",
        metavar="auto|GAIN",
        kind="gain",
        rule="'auto' or a non-negative number",
        help="geo-tree: cost-complexity pruning level, the weighted squared-error reduction per extra region a "
        "subtree must achieve to be kept (units: squared WER per word, normalised by all words). 'auto' "
        "(default): the median gain of the best first split on shuffled speaker outcomes, so regions are not "
        "cut from noise; 0 keeps every split.",
    )
    tree_neighbours: int = option(
        30,
        ge=1,
        flag="--tree-neighbours",
        metavar="N",
        kind="int",
        rule="at least 1",
        help="geo-tree: the tree splits on each speaker's WER pooled with its nearest speakers, at least this many "
        "in all (whole 0.05-degree grid cells, nearest first, until they hold N; never more than --min-speakers; "
        "a mean weighted by each speaker's precision, so a few speakers with many words do not outweigh the rest), "
        "which steadies the splits without changing what a region's WER is; 1 = the plain tree on each speaker's "
        "own WER. Default 30.",
    )
    clusters: int | str = option(
        "auto",
        flag="--clusters",
        metavar="auto|N",
        kind="clusters",
        rule="'auto' or a whole number of at least 2",
        help="embedding-kmeans: number of clusters k, or 'auto' (default): a generous k (about one cluster per "
        "3 x --min-speakers speakers, at most 24), since the bottom cohort re-joins a population split over "
        "several clusters.",
    )
    max_window_share: float = option(
        0.5,
        gt=0,
        le=1,
        flag="--max-window-share",
        metavar="X",
        kind="number",
        rule="a fraction above 0 and at most 1 (e.g. 0.5)",
        help="geo-scan: largest window, as a fraction of located speakers. Default 0.5.",
    )
    bottom: str = option(
        "auto",
        flag="--bottom",
        metavar="|".join(BOTTOM_MODES),
        kind="str",
        rule=f"one of {', '.join(BOTTOM_MODES)}",
        help="How the bottom cohort is chosen from the cells (regions, windows, clusters, groups) ranked by WER: "
        "'auto' (default) the union of the worst cells that best separates high-WER speakers from the rest "
        "(largest size-weighted gain W_B x W_R / (W_B + W_R) x (WER_B - WER_R)^2, W = reference words); "
        "'worst' the single worst cell.",
    )
    bottom_share: float | None = option(
        None,
        gt=0,
        lt=1,
        flag="--bottom-share",
        metavar="X",
        kind="number",
        rule="a fraction between 0 and 1 (e.g. 0.1)",
        help="Bottom cohort = the union of the worst cells whose share of speakers is closest to this fraction "
        "(e.g. 0.1); overrides --bottom.",
    )
    max_bottom_share: float = option(
        0.5,
        gt=0,
        lt=1,
        flag="--max-bottom-share",
        metavar="X",
        kind="number",
        rule="a fraction between 0 and 1 (e.g. 0.5)",
        help="--bottom auto: the bottom cohort holds at most this fraction of the assigned speakers; when even the "
        "worst cell a method found holds more, there is no bottom cohort (a --by attribute's worse group is kept "
        "whatever its size). Default 0.5.",
    )
    top: str = option(
        "rest",
        flag="--top",
        metavar="|".join(TOP_MODES),
        kind="str",
        rule=f"one of {', '.join(TOP_MODES)}",
        help="Top cohort: 'rest' (every assigned speaker not in the bottom cohort, default) or 'best' (the single "
        "lowest-WER cell of at least --min-speakers speakers).",
    )
    demographics: str | None = option(
        None,
        flag="--demographics",
        metavar="FILE",
        kind="str",
        rule="a file name",
        help="zip-demographic: census table per ZIP code replacing the built-in ACS 2022 table (schema: fairaudit "
        "schema demographics).",
    )
    holdout: float | None = option(
        None,
        gt=0,
        lt=1,
        flag="--holdout",
        metavar="X",
        kind="number",
        rule="a fraction between 0 and 1 (e.g. 0.5)",
        help="Fraction of speakers held out: discovery runs on the rest and every figure is re-measured on the "
        "held-out speakers (chosen by a hash of each speaker id and --seed, so logs of the same speakers hold out "
        "the same ones). With --cohorts: measure only the speakers this split holds out.",
    )
    bootstrap: int = option(
        1000,
        ge=0,
        le=100_000,
        flag="--bootstrap",
        metavar="N",
        kind="int",
        rule="0 to 100,000 replicates",
        help="Speaker-level bootstrap replicates for 95% intervals. Default 1000; 0 turns intervals off.",
    )
    permutations: int = option(
        200,
        ge=0,
        le=1_000_000,
        flag="--permutations",
        metavar="N",
        kind="int",
        rule="0 to 1,000,000",
        help="Permutations for the search-aware significance test. Default 200; 0 turns it off.",
    )
    alpha: float = option(
        0.05,
        gt=0,
        lt=1,
        flag="--alpha",
        metavar="X",
        kind="number",
        rule="between 0 and 1",
        help="Significance level for the 'disparity' verdict. Default 0.05.",
    )
    min_report_speakers: int = option(
        10,
        ge=0,
        flag="--min-report-speakers",
        metavar="N",
        kind="int",
        rule="0 or more",
        help="Cohorts with fewer speakers are suppressed in reports (privacy). Default 10.",
    )
    adjust: list[str] = option(
        [],
        flag="--adjust",
        metavar="COLUMN",
        kind="names",
        rule="a list of speaker-level column names",
        help="Covariate(s) to adjust the bottom-vs-top gap for (repeatable): metadata columns such as device, "
        "site or gender, or words_per_utterance. The rate ratio of errors per reference word is reported raw and "
        "adjusted with 95% intervals: a negative-binomial regression on speakers, or, when a column varies within "
        "speakers, a Poisson regression on the utterances with speaker-clustered errors. Needs statsmodels.",
    )
    target_gap: float | None = option(
        None,
        gt=0,
        flag="--target-gap",
        metavar="PCT",
        kind="number",
        rule="a positive relative gap in percent (e.g. 20)",
        help="A WER gap (%, relative to the rest) you want to be able to detect: each cohort's report says "
        "how many more speakers like its own it needs for that at --alpha with 80% power.",
    )
    seed: int = option(
        0,
        ge=0,
        flag="--seed",
        metavar="N",
        kind="int",
        rule="a non-negative whole number",
        help="Random seed for k-means, bootstrap, permutations and the hold-out split. Default 0.",
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise UsageError(_message(error)) from None

    @field_validator("min_gain")
    @classmethod
    def _gain(cls, value: float | str) -> float | str:
        if value == "auto" or (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0):
            return value
        raise ValueError("out of range")

    @field_validator("clusters")
    @classmethod
    def _clusters(cls, value: int | str) -> int | str:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 2):
            return value
        raise ValueError("out of range")

    @field_validator("by_level")
    @classmethod
    def _by_level(cls, value: str) -> str:
        if value not in ("auto", "speaker", "utterance"):
            raise ValueError("unknown level")
        return value

    @field_validator("bottom")
    @classmethod
    def _bottom(cls, value: str) -> str:
        if value not in BOTTOM_MODES:
            raise ValueError("unknown mode")
        return value

    @field_validator("top")
    @classmethod
    def _top(cls, value: str) -> str:
        if value not in TOP_MODES:
            raise ValueError("unknown mode")
        return value

    @model_validator(mode="after")
    def _methods_known(self) -> AuditOptions:
        from fairaudit.methods.registry import method_names

        names = method_names()
        for name in self.methods or []:
            if name not in names:
                raise UsageError(f"unknown method {name!r}: choose from {', '.join(names)}")
        if self.methods and "attribute" in self.methods and not self.by:
            raise UsageError("the attribute method needs --by COLUMN")
        if self.adjust and importlib.util.find_spec("statsmodels") is None:
            raise UsageError(
                "--adjust needs the statsmodels package, which is not installed; "
                "pip install statsmodels (or, in the fairaudit checkout, pip install '.[adjust]')"
            )
        return self

    @classmethod
    def field_info(cls, name: str) -> dict[str, Any]:
        """The option's flag, metavar, rule, kind and help text (for the CLI and the config reader)."""
        from fairaudit.methods.registry import method_names

        field = cls.model_fields[name]
        text = (field.description or "").replace("{methods}", ", ".join(method_names()))
        return {**(field.json_schema_extra or {}), "help": text}  # type: ignore[dict-item]

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every option name (the keys of ``fairaudit.audit(**options)`` and of the report's parameters)."""
        return tuple(cls.model_fields)

    def as_parameters(self) -> dict[str, Any]:
        """The options as recorded in a report (a plain, JSON-ready dict in declaration order)."""
        return self.model_dump()


def _message(error: ValidationError) -> str:
    """ "<flag> must be <rule>" for the first invalid option (unknown options named as such)."""
    first = error.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    if first["type"] == "extra_forbidden":
        return f"unknown audit option(s): {name}"
    if name not in AuditOptions.model_fields:  # pragma: no cover - a model validator's own message
        return str(first["msg"])
    info = AuditOptions.field_info(name)
    return f"{info['flag']} must be {info['rule']}"
