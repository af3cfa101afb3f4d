"""Validation of input tables: column rules and value checks shared by both engines (SPEC 2)."""
