"""Imported first by pytest: the engine's CPU settings (pipeline/__init__.py) before any test imports torch."""

import pipeline  # noqa: F401
