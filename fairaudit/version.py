"""The fairaudit version, declared once (pyproject.toml reads it too)."""

__version__ = "0.1.0"
