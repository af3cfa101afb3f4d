"""Cohort-discovery methods; each is a :class:`CohortMethod` with ``fit`` / ``assign``."""

from fairaudit.methods.attribute import AttributeGroups
from fairaudit.methods.base import CohortMethod, SelectionRule
from fairaudit.methods.embedding_kmeans import EmbeddingKMeans
from fairaudit.methods.geo_tree import GeoTree
from fairaudit.methods.zip_demographic import ZipDemographic

METHOD_NAMES = ("geo-tree", "zip-demographic", "embedding-kmeans", "attribute")

__all__ = ["AttributeGroups", "CohortMethod", "EmbeddingKMeans", "GeoTree", "METHOD_NAMES", "SelectionRule", "ZipDemographic"]
