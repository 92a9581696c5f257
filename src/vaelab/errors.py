"""The project's error types.

Every error a user can cause (a bad path, a corrupt file, an invalid config value) is raised
as a :class:`VaelabError` subclass whose message says what is wrong and how to fix it.  The CLI
prints such messages as one line and exits with status 2; anything else is a bug in vaelab.
"""

import contextlib
import contextvars
from collections.abc import Iterator


class VaelabError(Exception):
    """Base class of all errors caused by input, files or configuration."""


class ConfigError(VaelabError, ValueError):
    """An invalid configuration: unknown keys, wrong types or out-of-range values."""


class DataError(VaelabError):
    """A dataset cannot be found, downloaded, verified or parsed."""


class CheckpointError(VaelabError):
    """A checkpoint or run directory is missing, corrupt or from an incompatible run."""


class TrainingError(VaelabError):
    """Training cannot go on (for example a non-finite loss)."""


class TrainingInterrupted(TrainingError):
    """Training stopped on SIGINT/SIGTERM after writing a checkpoint; ``--resume`` continues it."""


_CLI_SPELLING = contextvars.ContextVar("vaelab_cli_spelling", default=False)


def option(key: str, value: object = None) -> str:
    """How an error message names an option the user can change.

    A Python caller reads the config key or the function's argument (``training.clip_norm=5``,
    ``split=test``); on the command line, inside :func:`cli_spelling` (which
    :func:`vaelab.cli.main` uses), the same message names the flag (``--clip-norm 5``, ``--split
    test``). Flags are the last part of the key with ``-`` for ``_``, as the CLI builds them.

    Args:
        key: a dotted config key (``training.learning_rate``) or an argument name (``split``).
        value: an example value to show with it, or None for the name alone.
    """
    if _CLI_SPELLING.get():
        flag = "--" + key.rsplit(".", 1)[-1].replace("_", "-")
        return flag if value is None else f"{flag} {value}"
    return key if value is None else f"{key}={value}"


@contextlib.contextmanager
def cli_spelling() -> Iterator[None]:
    """Within this block :func:`option` names command-line flags (the CLI's entry point uses it)."""
    token = _CLI_SPELLING.set(True)
    try:
        yield
    finally:
        _CLI_SPELLING.reset(token)
