"""Generative circuits by name, so a saved circuit (``store``) and the command line can rebuild one from plain data.

Every circuit class is built as ``cls(num_entities, num_relations, dim, **args)``; ``args`` are its remaining
keyword parameters (``init_scale`` for the non-negative circuits, also ``relation_dim`` for TuckER+, ``init_sigma``
for the squared ones). ``build_circuit`` refuses an argument the class does not take in one line, naming those it
does take, rather than letting Python's ``TypeError`` through.
"""

from __future__ import annotations

import inspect
from typing import Any

from kgem.circuits.base import Circuit
from kgem.circuits.nonneg import ComplExPlus, CPPlus, RESCALPlus, TuckERPlus
from kgem.circuits.squared import CP2, ComplEx2
from kgem.errors import ConfigError
from kgem.registry import Registry

CIRCUITS: Registry[type[Circuit]] = Registry("circuit")
CIRCUITS.register("cp+")(CPPlus)
CIRCUITS.register("complex+")(ComplExPlus)
CIRCUITS.register("rescal+")(RESCALPlus)
CIRCUITS.register("tucker+")(TuckERPlus)
CIRCUITS.register("cp2")(CP2)
CIRCUITS.register("complex2")(ComplEx2)

SIZES = ("self", "num_entities", "num_relations", "dim")  # the positional arguments every circuit takes


def circuit_arguments(name: str) -> dict[str, Any]:
    """The keyword arguments circuit ``name`` takes besides the sizes, with their defaults."""
    parameters = inspect.signature(CIRCUITS.get(name).__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.name not in SIZES}


def build_circuit(name: str, num_entities: int, num_relations: int, dim: int, **args: Any) -> Circuit:
    """A new circuit ``name`` (see ``CIRCUITS.names()``) of the given sizes; ``args`` are its own arguments.

    An unknown name is the registry's ``ConfigError`` (listing the known names), an argument the circuit does not
    take a ``ConfigError`` listing those it takes; bad values are the circuit's own one-line ``ValueError``.
    """
    cls = CIRCUITS.get(name)
    accepted = circuit_arguments(name)
    extra = [key for key in args if key not in accepted]
    if extra:
        raise ConfigError(f"circuit {name!r} takes no argument {extra[0]!r}; it takes "
                          f"{', '.join(accepted) or 'none'}")
    return cls(num_entities, num_relations, dim, **args)
