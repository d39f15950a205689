"""Scaffolding helpers: what users copy into their repository (CI Action reference, templates)."""
