"""Adjusted gaps (SPEC 10, ``--adjust COLUMN``): is the bottom cohort's excess explained by something else?

The model (Liu et al., ICASSP 2022): a speaker's error count given their reference words, with a
speaker random effect. On speaker-aggregated counts with speaker-level covariates that is a
negative-binomial (NB2) regression of errors with log(reference words) as offset. Fitted once
with the bottom-vs-top indicator alone (raw) and once with the covariates too (adjusted); the
indicator's exp(coefficient) is the rate ratio of errors per reference word, with a 95% Wald
interval. statsmodels does the fitting (imported only when --adjust is used: it takes ~0.9 s).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from fairaudit.errors import UsageError
from fairaudit.model.speakers import SpeakerTable

#: A derived speaker-level covariate anyone can name: mean reference words per utterance.
WORDS_PER_UTTERANCE = "words_per_utterance"
#: Adjusted log rate ratio below this share of the raw one: "adjustment removes most of the gap".
MOST = 0.5


def covariate_design(speakers: SpeakerTable, columns: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The covariate columns as model inputs (numeric: standardised; categorical: one indicator per
    level but the most common) and a mask of speakers with every covariate known."""
    frame = speakers.frame
    parts, known = [], np.ones(len(frame), dtype=bool)
    for column in columns:
        if column == WORDS_PER_UTTERANCE:
            values = pd.Series(speakers.ref_words / np.maximum(speakers.utterances, 1), index=frame.index)
        elif column in speakers.metadata_columns and column in frame.columns:
            values = frame[column]
        else:
            available = ", ".join([*speakers.metadata_columns, WORDS_PER_UTTERANCE])
            raise UsageError(
                f"--adjust names {column!r}, which is not a speaker-level column of the log; use one of: {available}"
            )
        known &= values.notna().to_numpy()
        parts.append(_encoded(values, column))
    design = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=frame.index)
    return design, known


def _encoded(values: pd.Series, column: str) -> pd.DataFrame:
    """One covariate as model columns: numeric standardised; categorical one indicator per level
    but the most common (the reference level)."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numeric = values.astype(np.float64)
        spread = numeric.std()
        return ((numeric - numeric.mean()) / (spread if spread > 0 else 1.0)).rename(column).to_frame()
    text = values.astype("string")
    levels = text.value_counts().index.tolist()
    return pd.DataFrame(
        {f"{column}={level}": (text == level).fillna(False).astype(np.float64) for level in levels[1:]},
        index=values.index,
    )


def _fit_rate_ratio(errors: np.ndarray, words: np.ndarray, exog: np.ndarray) -> tuple[float, list[float], float, str]:
    """The rate ratio of exog's second column (the bottom indicator), its 95% interval, the NB2
    dispersion and the model used. Without overdispersion NB2's dispersion sits at its bound 0 and
    its Hessian cannot be inverted: then a Poisson GLM with robust (sandwich) errors, its limit."""
    import statsmodels.api as sm
    from statsmodels.discrete.discrete_model import NegativeBinomial

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and Hessian warnings: the result is checked below
        fit = NegativeBinomial(errors, exog, loglike_method="nb2", offset=np.log(words)).fit(
            disp=0, maxiter=300, method="bfgs"
        )
        low, high = np.asarray(fit.conf_int())[1]
        ratio, dispersion, model = float(np.exp(fit.params[1])), float(fit.params[-1]), "NB2"
        if not np.isfinite([low, high, ratio, dispersion]).all() or dispersion < 1e-6:
            fit = sm.GLM(errors, exog, family=sm.families.Poisson(), offset=np.log(words)).fit(cov_type="HC0")
            low, high = np.asarray(fit.conf_int())[1]
            ratio, dispersion, model = float(np.exp(fit.params[1])), 0.0, "Poisson, robust errors"
    return ratio, [float(np.exp(low)), float(np.exp(high))], dispersion, model


def adjusted_rate_ratios(speakers: SpeakerTable, in_bottom: np.ndarray, in_top: np.ndarray, columns: list[str]) -> dict:
    """Bottom vs top rate ratio of errors per reference word, raw and adjusted for ``columns``."""
    design, known = covariate_design(speakers, columns)
    words = speakers.ref_words.astype(np.float64)
    rows = (in_bottom | in_top) & known & (words > 0)
    result: dict = {
        "covariates": list(columns),
        "speakers": int(rows.sum()),
        "left_out": int(((in_bottom | in_top) & ~rows).sum()),
    }
    if rows.sum() < 10 or not in_bottom[rows].any() or not in_top[rows].any():
        result["error"] = "too few speakers with every covariate known in the bottom and top cohorts"
        return result
    errors = speakers.errors[rows].astype(np.float64)
    indicator = in_bottom[rows].astype(np.float64)
    constant = np.ones(int(rows.sum()))
    covariates = design.to_numpy(dtype=np.float64)[rows]
    covariates = covariates[:, covariates.std(axis=0) > 0] if covariates.size else covariates
    if covariates.ndim < 2 or covariates.shape[1] == 0:
        result["error"] = (
            f"{', '.join(columns)} has one value for every speaker of the bottom and top cohorts, so adjusting "
            "for it cannot change the gap"
        )
        return result
    try:
        raw, raw_ci, _, _ = _fit_rate_ratio(errors, words[rows], np.column_stack([constant, indicator]))
        adjusted, adjusted_ci, dispersion, model = _fit_rate_ratio(
            errors, words[rows], np.column_stack([constant, indicator, covariates])
        )
    except (np.linalg.LinAlgError, ValueError) as failure:
        result["error"] = f"the regression could not be fitted ({failure})"
        return result
    result.update(
        raw={"rate_ratio": raw, "ci": raw_ci},
        adjusted={"rate_ratio": adjusted, "ci": adjusted_ci},
        dispersion=dispersion,
        model=model,
    )
    if not np.isfinite([raw, adjusted, *raw_ci, *adjusted_ci]).all():
        return {key: result[key] for key in ("covariates", "speakers", "left_out")} | {
            "error": "the regression gave no finite rate ratio or interval: a covariate may determine the cohort "
            "(such as a site inside one group), so its effect cannot be told apart from the gap"
        }
    explained = _explained(raw, raw_ci, adjusted)
    result["explained_pct"] = None if explained is None else 100.0 * explained
    result["sentence"] = _sentence(columns, raw, raw_ci, adjusted, adjusted_ci, explained)
    return result


def _explained(raw: float, raw_ci: list[float], adjusted: float) -> float | None:
    """Share of the raw excess (on the log scale) that adjusting removes; only for a clear raw gap."""
    if raw_ci[0] <= 1:
        return None  # no clear excess to explain
    return 1 - math.log(adjusted) / math.log(raw)


def _sentence(
    columns: list[str],
    raw: float,
    raw_ci: list[float],
    adjusted: float,
    adjusted_ci: list[float],
    explained: float | None,
) -> str:
    """One plain sentence on what adjusting did to the gap."""
    named = ", ".join(columns)
    change = f"rate ratio of errors per reference word from {raw:.2f} to {adjusted:.2f}"
    share = f"{100 * min(explained, 1.0):.0f}%" if explained is not None else ""  # over 100%: all of it
    if adjusted_ci[0] > 1:
        if explained is not None and explained >= MOST:
            return (
                f"Adjusting for {named} explains {share} of the bottom cohort's excess error rate, but a gap "
                f"remains ({change})."
            )
        return f"The bottom cohort's excess error rate remains after adjusting for {named} ({change})."
    if raw_ci[0] > 1 and explained is not None and explained >= MOST:
        return (
            f"Adjusting for {named} removes most ({share}) of the bottom cohort's excess error rate ({change}): "
            "the gap is largely explained by these covariates."
        )
    return f"After adjusting for {named} the bottom cohort's excess error rate is not clearly above 1 ({change})."


def utterance_rate_ratios(
    utterances: pd.DataFrame,
    speaker_of: np.ndarray,
    in_bottom: np.ndarray,
    in_top: np.ndarray,
    columns: list[str],
) -> dict:
    """Bottom vs top rate ratio adjusted for covariates that vary within speakers (device, noise):
    a Poisson GLM on the utterances of bottom- and top-cohort speakers, errors with log reference
    words as offset, and standard errors clustered by speaker (their utterances are not independent).
    ``speaker_of`` maps each utterance to its position in ``in_bottom``/``in_top`` (-1: none)."""
    import statsmodels.api as sm

    words = utterances["ref_words"].to_numpy(np.float64)
    valid = speaker_of >= 0
    position = np.where(valid, speaker_of, 0)
    bottom = valid & in_bottom[position]
    rows = (bottom | (valid & in_top[position])) & (words > 0)
    parts = []
    for column in columns:
        values = utterances[column] if column != WORDS_PER_UTTERANCE else utterances["ref_words"].astype(np.float64)
        rows &= values.notna().to_numpy()
        parts.append(_encoded(values, column))
    candidates = (bottom | (valid & in_top[position])) & (words > 0)
    left_out = int(len(np.unique(speaker_of[candidates & ~rows])))  # speakers with an unknown covariate
    result: dict = {
        "covariates": list(columns),
        "speakers": int(len(np.unique(speaker_of[rows]))),
        "left_out": left_out,
    }
    if rows.sum() < 10 or not bottom[rows].any() or not (rows & ~bottom).any():
        result["error"] = "too few utterances with every covariate known in the bottom and top cohorts"
        return result
    covariates = pd.concat(parts, axis=1).to_numpy(dtype=np.float64)[rows]
    covariates = covariates[:, covariates.std(axis=0) > 0]
    errors = utterances["errors"].to_numpy(np.float64)[rows]
    offset = np.log(words[rows])
    groups = speaker_of[rows]
    base = np.column_stack([np.ones(int(rows.sum())), bottom[rows].astype(np.float64)])
    fits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for exog in (base, np.column_stack([base, covariates])):
            try:
                fit = sm.GLM(errors, exog, family=sm.families.Poisson(), offset=offset).fit(
                    cov_type="cluster", cov_kwds={"groups": groups}
                )
            except (np.linalg.LinAlgError, ValueError) as failure:
                result["error"] = f"the regression could not be fitted ({failure})"
                return result
            low, high = np.asarray(fit.conf_int())[1]
            fits.append((float(np.exp(fit.params[1])), [float(np.exp(low)), float(np.exp(high))]))
    (raw, raw_ci), (adjusted, adjusted_ci) = fits
    if not np.isfinite([raw, adjusted, *raw_ci, *adjusted_ci]).all():
        result["error"] = (
            "the regression gave no finite rate ratio or interval: a covariate may determine the cohort "
            "(such as a site inside one group), so its effect cannot be told apart from the gap"
        )
        return result
    explained = _explained(raw, raw_ci, adjusted)
    result.update(
        raw={"rate_ratio": raw, "ci": raw_ci},
        adjusted={"rate_ratio": adjusted, "ci": adjusted_ci},
        dispersion=None,
        model="Poisson GLM on utterances, speaker-clustered errors",
        explained_pct=None if explained is None else 100.0 * explained,
        sentence=_sentence(columns, raw, raw_ci, adjusted, adjusted_ci, explained),
    )
    return result
