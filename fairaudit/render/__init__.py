"""Renderers: turn an AuditResult into terminal text, JSON, CSV or HTML. They never compute statistics."""
