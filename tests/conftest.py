"""Shared test set-up: quiet structured logs unless a test asks for them."""

from __future__ import annotations

import sys

from orchestrator.logs import configure_logging

configure_logging("WARNING", json=True, stream=sys.stderr)
