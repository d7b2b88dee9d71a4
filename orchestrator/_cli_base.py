"""What every command of ``orchestrator.cli`` shares: exit codes, error handling, the global options."""

from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from config.errors import ConfigError, DefinitionChanged, IntegrityError, OrchestratorError, ResourceLocked
from orchestrator import _format

if TYPE_CHECKING:
    from orchestrator.api import ObserverFactory, SessionSettings

__all__ = [
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_BAD_INPUT",
    "EXIT_WAITING",
    "EXIT_INTEGRITY",
    "Options",
    "handle_errors",
    "fail",
    "GLOBAL_OPTIONS",
    "add_global_options",
    "output_option",
]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_WAITING, EXIT_INTEGRITY = 0, 1, 2, 3, 4


def fail(code: int, message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map the error tree onto the exit codes, with the message on stderr."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            fail(EXIT_BAD_INPUT, "bad input:\n  " + str(exc).replace("\n", "\n  "))
        except DefinitionChanged as exc:
            fail(EXIT_BAD_INPUT, str(exc))
        except IntegrityError as exc:
            fail(EXIT_INTEGRITY, str(exc))
        except ResourceLocked as exc:
            fail(EXIT_FAILED, str(exc))
        except OrchestratorError as exc:
            fail(EXIT_FAILED, str(exc))

    return wrapper


class Options:
    """The global options, turned into the library's settings by each command."""

    def __init__(
        self, config: str | None, journal: str | None, log_level: str, quiet: bool = False, verbose: int = 0
    ) -> None:
        self.config = config
        self.journal = journal
        self.log_level = log_level
        self.quiet = quiet
        self.verbose = verbose

    def session(self, *, actor: str = "orchestrator", allow_version_change: bool = False) -> SessionSettings:
        from orchestrator._settings import SessionSettings

        return SessionSettings(
            config=Path(self.config) if self.config else None,
            journal=Path(self.journal) if self.journal else None,
            actor=actor,
            allow_version_change=allow_version_change,
        )

    def live(self, as_json: bool) -> bool:
        """Whether the live display runs; configures the logs to match (quieter under the display)."""
        from orchestrator.logs import configure_logging

        live = sys.stdout.isatty() and not as_json and not self.quiet
        default = "ERROR" if self.quiet else ("WARNING" if live else "INFO")
        if self.verbose:
            default = "DEBUG" if self.verbose > 1 else "INFO"
        configure_logging(self.log_level or default)
        return live

    def display(self, as_json: bool, live: bool) -> ObserverFactory | None:
        """The progress display of a run (none with ``--json`` or ``-q``)."""
        return None if as_json or self.quiet else functools.partial(_format.progress, live=live)


def output_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-o/--output FILE`` of a command that writes a file (atomically) instead of printing it."""
    return click.option(
        "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE", help=help
    )


GLOBAL_OPTIONS = ("config", "journal", "log_level", "quiet", "verbose")


class _GlobalOption(click.Option):
    """A copy of a global option on a subcommand: given there, it wins over the one before it."""

    def handle_parse_result(self, ctx: click.Context, opts: Any, args: list[str]) -> tuple[Any, list[str]]:
        value, args = super().handle_parse_result(ctx, opts, args)
        if self.name and ctx.get_parameter_source(self.name) is ParameterSource.COMMANDLINE:
            setattr(ctx.ensure_object(Options), self.name, value)
        return value, args


def add_global_options(group: click.Group, options: list[click.Parameter]) -> None:
    """Give every command under ``group`` a copy of the group's global options (same definitions)."""
    for cmd in group.commands.values():
        if isinstance(cmd, click.Group):
            add_global_options(cmd, options)
            continue
        for option in options:
            clone = copy.copy(option)
            clone.__class__ = _GlobalOption
            clone.expose_value = False
            cmd.params.append(clone)
