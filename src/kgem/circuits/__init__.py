"""Generative KGE circuits: models whose scores are exact probabilities of triples (Loconte, Di Mauro, Peharz and
Vergari 2023, "How to turn your knowledge graph embeddings into generative models").

A CP, RESCAL, TuckER or ComplEx score is a circuit: sums and products of embedding entries, smooth and decomposable,
so a sum over all triples is the circuit evaluated on column sums (non-negative models, ``nonneg``) or on Gram
matrices (squared models, ``squared``): the partition function costs time linear in the number of entities.
``Circuit`` is their common interface.
"""

from kgem.circuits.base import Circuit
from kgem.circuits.distill import squared_from_model
from kgem.circuits.evaluation import average_log_likelihood, uniform_log_likelihood
from kgem.circuits.fit import fit
from kgem.circuits.ktd import kernel_triple_distance, triple_features, uniform_triples
from kgem.circuits.model import AnyModel, CircuitModel
from kgem.circuits.nonneg import ComplExPlus, CPPlus, RESCALPlus, TuckERPlus
from kgem.circuits.objectives import OBJECTIVES, Objective, mle, objective, pll
from kgem.circuits.registry import CIRCUITS, build_circuit, circuit_arguments
from kgem.circuits.sampling import sample, sample_labels
from kgem.circuits.squared import CP2, ComplEx2, SquaredCircuit, SquaredGrams
from kgem.circuits.store import LoadedCircuit, load_circuit, save_circuit
from kgem.circuits.typed import TypedGrams, TypedSquared, typed_complex2, typed_cp2

__all__ = [
    "CIRCUITS",
    "CP2",
    "OBJECTIVES",
    "AnyModel",
    "CPPlus",
    "Circuit",
    "CircuitModel",
    "ComplEx2",
    "ComplExPlus",
    "LoadedCircuit",
    "Objective",
    "RESCALPlus",
    "SquaredCircuit",
    "SquaredGrams",
    "TuckERPlus",
    "TypedGrams",
    "TypedSquared",
    "average_log_likelihood",
    "build_circuit",
    "circuit_arguments",
    "fit",
    "kernel_triple_distance",
    "load_circuit",
    "mle",
    "objective",
    "pll",
    "sample",
    "sample_labels",
    "save_circuit",
    "squared_from_model",
    "triple_features",
    "typed_complex2",
    "typed_cp2",
    "uniform_log_likelihood",
    "uniform_triples",
]
