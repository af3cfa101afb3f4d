"""fairaudit: find the speaker cohorts on which a speech recogniser does worst.

``fairaudit.audit(log, methods=[...], **options)`` returns an :class:`AuditResult` with each
cohort's pooled WER, the WER gap between bottom and top cohorts, the bottom-cohort share, speaker-
level bootstrap intervals, search-aware permutation p-values and a verdict per method.
``fairaudit.compare(baseline, new)`` measures two systems on the same cohorts (paired when the
logs transcribe the same utterances).
"""

__version__ = "0.1.0"

from fairaudit.api import audit, compare  # noqa: E402
from fairaudit.options import AuditOptions  # noqa: E402
from fairaudit.report.result import AuditResult, MethodResult  # noqa: E402

__all__ = ["AuditOptions", "AuditResult", "MethodResult", "audit", "compare", "__version__"]
