"""Plug-in modules: your code that registers networks (:func:`vaelab.register_network`) or
datasets (:func:`vaelab.data.register_dataset`), imported before a command runs.

``vaelab --import mypackage.networks train --network tiny_conv`` imports ``mypackage.networks``
(looked up on ``sys.path`` and in the current directory) before the command's options are built,
so the names it registers are choices of ``--network`` like the built-in ones. Each run records
the modules it needs in ``environment.json`` (``imports``), so that ``vaelab evaluate``,
``plot``, ``train --resume`` and sweeps, asked about a network name nobody registered, say which
module to import. Sweep workers import the same modules before they train.

Imports neither torch nor numpy.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from .errors import VaelabError

_IMPORTED: list[str] = []


def import_plugins(modules: Sequence[str]) -> list[str]:
    """Import each of ``modules`` (dotted names) and remember it for :func:`imported`; return
    every module imported so far in this process.

    Raises:
        VaelabError: a module cannot be found or fails while importing (one line: the module,
            the error, what to check).
    """
    if modules and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `vaelab` is a console script: the current directory is not on sys.path
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise VaelabError(f"--import {name}: no module named {exc.name!r}; give a dotted module name importable "
                              "from the current directory or the Python path (e.g. mypackage.networks)") from None
        except Exception as exc:  # the plug-in's own code failed: one line, not its traceback
            raise VaelabError(f"--import {name} failed while importing: {type(exc).__name__}: {exc}") from None
        if name not in _IMPORTED:
            _IMPORTED.append(name)
    return list(_IMPORTED)


def imported() -> list[str]:
    """The modules :func:`import_plugins` imported in this process, in order."""
    return list(_IMPORTED)


def import_hint(modules: Sequence[str], command: str = "COMMAND") -> str:
    """How to import ``modules`` on the command line: ``vaelab --import A --import B COMMAND``."""
    return "`vaelab " + " ".join(f"--import {m}" for m in modules) + f" {command} ...`"
