"""A brute-force generative circuit for tests: one free logit per triple, every quantity by summing the full
``(E, R, E)`` table. It implements ``kgem.circuits.Circuit`` exactly, so code built on that interface (objectives,
evaluation) can be tested against it independently of any model's closed forms."""

from __future__ import annotations

import torch
from torch import nn

from kgem.circuits import Circuit


class TableCircuit(Circuit):
    def __init__(self, num_entities: int, num_relations: int, seed: int = 0, scale: float = 1.0) -> None:
        super().__init__()
        self.num_entities, self.num_relations = num_entities, num_relations
        generator = torch.Generator().manual_seed(seed)
        shape = (num_entities, num_relations, num_entities)
        self.logits = nn.Parameter(scale * torch.randn(shape, generator=generator, dtype=torch.float64))

    def log_score(self, hrt: torch.Tensor) -> torch.Tensor:
        return self.logits[hrt[:, 0], hrt[:, 1], hrt[:, 2]]

    def log_partition(self) -> torch.Tensor:
        return torch.logsumexp(self.logits.flatten(), 0)

    def log_tails(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.logits[h, r], -1)

    def log_heads(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.logits[:, r, t].T, -1)

    def log_tail(self, hrt: torch.Tensor) -> torch.Tensor:
        return self.log_tails(hrt[:, 0], hrt[:, 1]).gather(1, hrt[:, 2:3]).squeeze(1)

    def log_head(self, hrt: torch.Tensor) -> torch.Tensor:
        return self.log_heads(hrt[:, 1], hrt[:, 2]).gather(1, hrt[:, 0:1]).squeeze(1)

    def log_relation(self, hrt: torch.Tensor) -> torch.Tensor:
        table = torch.log_softmax(self.logits[hrt[:, 0], :, hrt[:, 2]], -1)
        return table.gather(1, hrt[:, 1:2]).squeeze(1)

    def log_marginal_head(self) -> torch.Tensor:
        return torch.logsumexp(self.logits.flatten(1), 1) - self.log_partition()

    def log_relation_given_head(self, h: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(torch.logsumexp(self.logits[h], -1), -1)


def randomised(circuit: Circuit, seed: int = 0, scale: float = 1.0) -> Circuit:
    """The circuit in float64 with every parameter redrawn from N(0, scale^2), in registration order: far from its
    near-uniform initialisation, and signed tables for the squared circuits, so no sign pattern hides a bug."""
    gen = torch.Generator().manual_seed(seed)
    circuit = circuit.double()
    with torch.no_grad():
        for p in circuit.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return circuit
