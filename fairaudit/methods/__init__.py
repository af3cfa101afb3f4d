"""Cohort-discovery methods; each is a :class:`CohortMethod` with ``fit`` / ``assign``.

Every module here registers its method (``fairaudit.methods.registry``); use
``method_names()`` / ``method_class(name)`` rather than listing names.
"""

from fairaudit.methods.attribute import AttributeGroups
from fairaudit.methods.base import CohortMethod
from fairaudit.methods.embedding_kmeans import EmbeddingKMeans
from fairaudit.methods.geo_tree import GeoTree
from fairaudit.methods.registry import method_class, method_names
from fairaudit.methods.zip_demographic import ZipDemographic

__all__ = [
    "AttributeGroups",
    "CohortMethod",
    "EmbeddingKMeans",
    "GeoTree",
    "ZipDemographic",
    "method_class",
    "method_names",
]
