"""Exporting an audit's cohorts for training: groups, weights, target and protect lists (SPEC 11)."""
