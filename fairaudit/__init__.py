"""fairaudit: find the speaker cohorts on which a speech recogniser does worst.

``fairaudit.audit(log, methods=[...], **options)`` returns an :class:`AuditResult` with each
cohort's pooled WER, the WER gap between bottom and top cohorts, the bottom-cohort share, speaker-
level bootstrap intervals, search-aware permutation p-values and a verdict per method.
``fairaudit.compare(baseline, new)`` measures two systems on the same cohorts (paired when the
logs transcribe the same utterances).
"""

from fairaudit.api import audit, compare
from fairaudit.options import AuditOptions
from fairaudit.report.result import AuditResult, MethodResult
from fairaudit.version import __version__

__all__ = ["AuditOptions", "AuditResult", "MethodResult", "audit", "compare", "__version__"]
