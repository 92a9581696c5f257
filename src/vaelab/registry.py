"""The registries of components, by kind: the only lists of their names.

Each kind of component (likelihood, prior, network, activation, initialisation, optimiser,
bound) is registered once, by name, in a dict beside its code (``LIKELIHOODS`` in
:mod:`vaelab.models.likelihoods`, ``OPTIMIZERS`` in :mod:`vaelab.training.optim`, ...). A
:class:`Registry` here names that dict; the config's choices, its YAML validation and the
CLI's options and ``--help`` read the names from it. Adding a likelihood is one class and one
entry in ``LIKELIHOODS``: nothing else lists the names.

A registry imports its module (and so torch) on first use only: ``vaelab --help`` and the
commands that never validate a model config stay quick. Its names are read from the dict each
time, so a network registered at run time (:func:`vaelab.register_network`, a plug-in module
imported by ``vaelab --import``) is a choice like the built-in ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence


class Registry(Sequence):
    """The registered names of one kind of component, in registration order (a read-only
    sequence of strings, as the config's ``choices``)."""

    def __init__(self, kind: str, module: str, attribute: str, check: str | None = None, hint: str = ""):
        self.kind, self.module, self.attribute, self.check = kind, module, attribute, check
        self.hint = hint
        """Appended to the message for a name that is not registered (what to do about it)."""

    def problems(self, config) -> list[str]:
        """The component's own checks of a whole config (its module's ``config_problems``):
        rules that involve more than one field, kept beside the component's code."""
        if self.check is None:
            return []
        return getattr(importlib.import_module(self.module), self.check)(config)

    @property
    def entries(self) -> dict:
        """Name -> the registered component (a class, a builder)."""
        return getattr(importlib.import_module(self.module), self.attribute)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def __getitem__(self, index):
        return self.names[index]

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name) -> bool:
        return name in self.names

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {self.module}.{self.attribute})"


LIKELIHOODS = Registry("likelihood", "vaelab.models.likelihoods", "LIKELIHOODS", "config_problems")
PRIORS = Registry("prior", "vaelab.models.priors", "PRIORS", "config_problems")
NETWORKS = Registry("network", "vaelab.models.networks", "NETWORKS", "config_problems",
                    hint="; a plug-in network is registered when its module is imported: `vaelab --import MODULE "
                         "COMMAND ...` (from Python: import it, or call vaelab.register_network)")
ACTIVATIONS = Registry("activation", "vaelab.models.networks", "ACTIVATIONS")
INITIALISERS = Registry("initialisation", "vaelab.models.networks", "INITIALISERS")
OPTIMIZERS = Registry("optimizer", "vaelab.training.optim", "OPTIMIZERS", "config_problems")
BOUNDS = Registry("bound", "vaelab.objectives.objective", "BOUNDS", "config_problems")

REGISTRIES: dict[str, Registry] = {
    "model.likelihood": LIKELIHOODS, "model.prior": PRIORS, "model.network": NETWORKS,
    "model.activation": ACTIVATIONS, "model.init": INITIALISERS, "training.optimizer": OPTIMIZERS,
    "objective.bound": BOUNDS,
}
"""The config key each registry gives the choices of."""

CHECKED = (PRIORS, LIKELIHOODS, BOUNDS, NETWORKS, OPTIMIZERS)
"""The registries whose components check the config, in the order their problems are listed."""

