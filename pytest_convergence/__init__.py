"""pytest-convergence: YAML training scenarios for Keras, run as pytest tests."""

from __future__ import annotations

__version__ = "0.1.0"
