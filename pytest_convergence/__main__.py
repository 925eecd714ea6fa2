"""`python -m pytest_convergence ...`: the same as the `pytest-convergence` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
