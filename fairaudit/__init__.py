"""fairaudit: find the speaker cohorts on which a speech recogniser does worst.

``fairaudit.audit(log, methods=[...], **options)`` returns an :class:`AuditResult` with each
cohort's pooled WER, the WER gap between bottom and top cohorts, the bottom-cohort share, speaker-
level bootstrap intervals, search-aware permutation p-values and a verdict per method.
"""

__version__ = "0.1.0"

from fairaudit.audit import AuditOptions, audit  # noqa: E402
from fairaudit.result import AuditResult, MethodResult  # noqa: E402

__all__ = ["AuditOptions", "AuditResult", "MethodResult", "audit", "__version__"]
