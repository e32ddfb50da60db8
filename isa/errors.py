"""Error types shared by the packages. Each message names the place of the problem."""

from __future__ import annotations


class SieveError(Exception):
    """Base of every error Sieve reports to a user (the CLI prints these without a traceback)."""


class ConfigError(SieveError):
    """A chip or energy config is invalid; the message lists every problem with its key path."""


class CompileError(SieveError):
    """A compiler pass cannot lower, place or route a kernel; the message names the pass."""


class SimulationError(SieveError):
    """A simulation failed (deadlock, watchdog, malformed stream); names the unit and cycle."""


class IsaError(SieveError):
    """A program, stream or encoding violates the ISA (verifier, parser, bitstream decoder)."""
