"""Per-objective gradient geometry of one optimizer step, behind one interface.

Every objective's loss over a step is its count-weighted mean over all micro-batches and processes,
``L_k = sum_m share_km * L_km`` with ``share_km = n_km / N_k`` (the micro-batch's part of the step's
labelled pairs of objective k). A collector is told which objectives are present in the step
(``begin``), is handed each micro-batch's losses with their shares (``add``, inside ``capture`` for
collectors that hook the forward pass), and then gives the K x K Gram of the step's gradients,
reduced over processes (``gram``), and writes ``sum_k w_k grad L_k`` into ``.grad`` (``apply``).

Four ways, one result:

* :class:`AutogradCollector`: K vector-Jacobian products of each micro-batch's graph; across
  data-parallel processes each objective's gradient is reduce-scattered, so the Gram is an all-reduce
  of the slices' Grams (K² numbers) and only the combined direction is gathered.
* :class:`PerPairCollector`: one backward per micro-batch with per-pair gradients (LoRA, one process).
* :class:`ShardedCollector`: FSDP2; one backward per objective through the sharded model.
* :class:`RepresentationCollector`: gradients with respect to the shared representation (the input of
  the output layer) for MGDA-UB; ``apply`` is then one backward of the weighted losses, done by the
  trainer.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist

from moalign.config import ConfigError
from moalign.train.gradients import NonFiniteError, accumulate_direction, gram_from_grads, per_objective_grads
from moalign.train.losses import ObjectiveLosses
from moalign.train.per_pair import PerPairGradients, pair_gram, per_pair_from_sequences
from moalign.train.sharded import all_gather_as, reduce_scatter_flat, sharded_gram


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class StepGeometry(ABC):
    """Accumulates one step's per-objective geometry into a Gram; see the module docstring for the protocol."""

    def __init__(self, objectives: Sequence[str]):
        self.objectives = tuple(objectives)
        self.active: list[int] = []

    def begin(self, present: torch.Tensor) -> None:
        """Start a step; ``present[k]`` says whether objective k has labelled pairs anywhere in it."""
        self.active = present.nonzero()[:, 0].tolist()

    def capture(self) -> contextlib.AbstractContextManager:
        """The context the micro-batch forward runs in (hooks for collectors that need them)."""
        return contextlib.nullcontext()

    @abstractmethod
    def add(self, out: ObjectiveLosses, shares: torch.Tensor) -> None:
        """Add a micro-batch: objective k contributes ``shares[k] * grad out.losses[k]``."""

    @abstractmethod
    def gram(self) -> torch.Tensor:
        """``(K, K)`` float64 Gram of the step's gradients, the same on every process (zero rows when absent)."""

    def _full(self, active_gram: torch.Tensor) -> torch.Tensor:
        k = len(self.objectives)
        gram = torch.zeros(k, k, dtype=torch.float64)
        if self.active:
            index = torch.tensor(self.active)
            gram[index[:, None], index[None, :]] = active_gram
        return gram

    def check_finite(self, gram: torch.Tensor, step: int) -> None:
        """Raise :class:`NonFiniteError` naming the step and the first objective with a non-finite gradient."""
        for k in self.active:
            if not torch.isfinite(gram[k, k]):
                raise NonFiniteError(f"step {step}: the gradient of objective {self.objectives[k]!r} is not finite")


class GradientCollector(StepGeometry):
    """Step geometry of the parameter gradients, which can also write the combined update."""

    def __init__(self, params: Sequence[torch.nn.Parameter], objectives: Sequence[str]):
        super().__init__(objectives)
        self.params = list(params)

    @abstractmethod
    def apply(self, weights: torch.Tensor) -> None:
        """Write ``sum_k weights[k] * grad L_k`` into ``.grad`` of every trained parameter."""


class AutogradCollector(GradientCollector):
    """K vector-Jacobian products of each micro-batch's shared graph (any model, any number of processes)."""

    def begin(self, present: torch.Tensor) -> None:
        super().begin(present)
        self.grads: dict[int, list[torch.Tensor]] = {}
        self.shards: list[torch.Tensor] | None = None

    def add(self, out: ObjectiveLosses, shares: torch.Tensor) -> None:
        local = [k for k in self.active if float(shares[k]) > 0]
        for k, grads in zip(local, per_objective_grads(out.losses, self.params, local)):
            scaled = [float(shares[k]) * g for g in grads]
            self.grads[k] = scaled if k not in self.grads else [a + g for a, g in zip(self.grads[k], scaled)]

    def _summed(self, k: int) -> list[torch.Tensor]:
        return self.grads.get(k) or [torch.zeros_like(p) for p in self.params]

    def gram(self) -> torch.Tensor:
        if not _distributed():
            return self._full(gram_from_grads([self._summed(k) for k in self.active]))
        # every process calls the collective for every globally present objective, in the same order
        self.shards = [reduce_scatter_flat(self._summed(k)) for k in self.active]
        self.grads = {}
        return self._full(sharded_gram([[s] for s in self.shards]))

    def apply(self, weights: torch.Tensor) -> None:
        if self.shards is None:
            accumulate_direction(self.params, [self._summed(k) for k in self.active], weights[self.active])
            return
        direction = sum(float(weights[k]) * s for k, s in zip(self.active, self.shards))
        accumulate_direction(self.params, [all_gather_as(direction, self.params)], torch.ones(1))


class PerPairCollector(GradientCollector):
    """Per-pair gradients from one backward per micro-batch: Gram = U J J^T U^T (LoRA, one process).

    Raises ``ValueError`` for models whose trainable parameters are not all bias-free Linear weights.
    """

    def __init__(self, model: torch.nn.Module, objectives: Sequence[str]):
        self.hooks = PerPairGradients(model)
        super().__init__(self.hooks.params, objectives)

    def begin(self, present: torch.Tensor) -> None:
        super().begin(present)
        self.jacobians: list[list[torch.Tensor]] = []
        self.cotangents: list[torch.Tensor] = []

    def capture(self) -> contextlib.AbstractContextManager:
        return self.hooks.capture()

    def add(self, out: ObjectiveLosses, shares: torch.Tensor) -> None:
        u = torch.zeros(len(self.objectives), out.margins.shape[0], dtype=torch.float64)
        for k in self.active:
            if float(shares[k]) > 0:
                (du,) = torch.autograd.grad(out.losses[k], out.margins, retain_graph=True)
                u[k] = du.double().cpu() * float(shares[k])
        torch.autograd.grad(out.margins.sum(), self.params, allow_unused=True)  # fills the hooks
        self.jacobians.append(per_pair_from_sequences(self.hooks.per_sequence(), out.margins.shape[0]))
        self.cotangents.append(u)

    def gram(self) -> torch.Tensor:
        self.u = torch.cat(self.cotangents, dim=1)
        self.jac = [torch.cat([part[j] for part in self.jacobians]) for j in range(len(self.params))]
        return self.u @ pair_gram(self.jac) @ self.u.T

    def apply(self, weights: torch.Tensor) -> None:
        coefficients = (self.u.T @ weights.to(torch.float64)).to(torch.float32)
        for p, g in zip(self.params, self.jac):
            update = torch.einsum("b,boi->oi", coefficients.to(g.device), g).to(p.dtype)
            p.grad = update if p.grad is None else p.grad + update


class ShardedCollector(GradientCollector):
    """FSDP2: one backward per objective through the sharded model; each process keeps its shards.

    Every process runs all K backward passes in the same order (they hold collectives), also for an
    objective absent from its own pairs, whose loss is then a zero that still spans the graph. FSDP
    averages gradients over processes, so each loss is scaled by the number of processes.
    """

    def __init__(self, params: Sequence[torch.nn.Parameter], objectives: Sequence[str], num_processes: int):
        super().__init__(params, objectives)
        self.num_processes = num_processes

    def begin(self, present: torch.Tensor) -> None:
        super().begin(present)
        self.shards: list[list[torch.Tensor] | None] = [None] * len(self.objectives)

    def add(self, out: ObjectiveLosses, shares: torch.Tensor) -> None:
        k = len(self.objectives)
        anchor = 0.0 * out.margins.sum()
        for i in range(k):
            scale = float(shares[i]) * self.num_processes
            (out.losses[i] * scale + anchor).backward(retain_graph=i < k - 1)
            grads = [p.grad.detach() if p.grad is not None else torch.zeros_like(p) for p in self.params]
            self.shards[i] = grads if self.shards[i] is None else [a + g for a, g in zip(self.shards[i], grads)]
            for p in self.params:
                p.grad = None

    def gram(self) -> torch.Tensor:
        zeros = [torch.zeros_like(p) for p in self.params]
        return sharded_gram([s if s is not None else zeros for s in self.shards])

    def apply(self, weights: torch.Tensor) -> None:
        accumulate_direction(self.params, [self.shards[k] for k in self.active], weights[self.active])


class RepresentationCollector(StepGeometry):
    """MGDA-UB: gradients with respect to the shared representation, the input of the model's output layer.

    The representation of different pairs is disjoint, so the step's Gram is the sum of the micro-batches'
    Grams, all-reduced over processes. It gives weights only: the trainer follows them with one backward
    of the weighted losses.
    """

    def __init__(self, model: torch.nn.Module, objectives: Sequence[str]):
        super().__init__(objectives)
        self.head = model.get_output_embeddings()
        if self.head is None:
            raise ConfigError("mgda_ub needs a model with an output layer (get_output_embeddings) to read the representation")
        self.representation: torch.Tensor | None = None

    def begin(self, present: torch.Tensor) -> None:
        super().begin(present)
        self.total = torch.zeros(len(self.active), len(self.active), dtype=torch.float64)
        self.device = torch.device("cpu")

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        def record(module, args):
            if torch.is_grad_enabled():  # the policy's forward, not the reference's
                self.representation = args[0]

        handle = self.head.register_forward_pre_hook(record)
        try:
            yield
        finally:
            handle.remove()

    def add(self, out: ObjectiveLosses, shares: torch.Tensor) -> None:
        self.device = self.representation.device
        grads = torch.zeros(len(self.active), self.representation.numel(), dtype=torch.float32, device=self.device)
        for j, k in enumerate(self.active):
            if float(shares[k]) > 0:
                (g,) = torch.autograd.grad(out.losses[k] * float(shares[k]), self.representation, retain_graph=True)
                grads[j] = g.reshape(-1).float()
        self.total += (grads @ grads.T).double().cpu()
        self.representation = None

    def gram(self) -> torch.Tensor:
        total = self.total
        if _distributed():
            total = total.to(self.device)
            dist.all_reduce(total)
        return self._full(total.cpu())
