"""The secure-mode orchestrator for Pexip Infinity: engine, CLI, wiring.

The library API is :mod:`orchestrator.api`; the ``orchestrator`` command is
:mod:`orchestrator.cli`, a thin skin over it.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
