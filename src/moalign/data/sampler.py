"""Which pairs (or prompts) each process trains on at each optimizer step: seeded, resumable, rank-aware.

An optimizer step consumes ``micro_batch_size x accumulation x num_processes`` items. Each epoch is a
seeded permutation of the dataset cut into steps of that size; micro-batch ``m`` of process ``r`` is
the ``(m * num_processes + r)``-th slice of its step. The position is a pure function of the step
number, so a resumed run draws exactly what an uninterrupted one would, mid-epoch included.

An epoch rarely divides into whole steps. ``leftover`` says what happens to the last partial step:

* ``wrap`` (default): the step is completed with items from the start of the same epoch's order (as
  ``DistributedSampler`` pads), so every item is seen each epoch and a few twice;
* ``drop``: the partial step is skipped, so no item is seen twice in an epoch and a few are not seen.

Either way every micro-batch is full: no process ever receives an empty batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from moalign.config import ConfigError

LEFTOVER_RULES = ("wrap", "drop")


@dataclass(frozen=True)
class StepSampler:
    """Item indices per ``(step, micro-batch, process)``.

    Args:
        num_items: size of the dataset.
        micro_batch_size: items per micro-batch per process.
        accumulation: micro-batches per optimizer step.
        num_processes: data-parallel processes.
        seed: the permutation of epoch ``e`` is drawn from ``seed + e``.
        leftover: ``wrap`` or ``drop`` (see the module docstring).
    """

    num_items: int
    micro_batch_size: int
    accumulation: int = 1
    num_processes: int = 1
    seed: int = 0
    leftover: str = "wrap"

    def __post_init__(self) -> None:
        if self.leftover not in LEFTOVER_RULES:
            raise ConfigError(f"unknown leftover rule {self.leftover!r}; choose one of {LEFTOVER_RULES}")
        for name in ("micro_batch_size", "accumulation", "num_processes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.num_items < 1:
            raise ConfigError("cannot sample from an empty dataset")
        if self.leftover == "drop" and self.num_items < self.items_per_step:
            raise ConfigError(
                f"the dataset has {self.num_items} items, fewer than one optimizer step's {self.items_per_step} "
                f"({self.micro_batch_size} per micro-batch x {self.accumulation} x {self.num_processes} processes); "
                "use leftover: wrap or smaller batches"
            )

    @property
    def items_per_step(self) -> int:
        return self.micro_batch_size * self.accumulation * self.num_processes

    @property
    def steps_per_epoch(self) -> int:
        full, rest = divmod(self.num_items, self.items_per_step)
        return full + (1 if rest and self.leftover == "wrap" else 0)

    def epoch_order(self, epoch: int) -> list[int]:
        """The permutation of all items for ``epoch``."""
        import torch  # here, so that `import moalign.data` stays free of torch

        return torch.randperm(self.num_items, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()

    def step_indices(self, step: int) -> list[int]:
        """All items of optimizer step ``step`` (every process, every micro-batch), in slice order."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        order = self.epoch_order(epoch)
        start = offset * self.items_per_step
        return [order[i % self.num_items] for i in range(start, start + self.items_per_step)]

    def indices(self, step: int, micro: int = 0, rank: int = 0) -> list[int]:
        """The items of micro-batch ``micro`` of process ``rank`` at optimizer step ``step``."""
        if not 0 <= micro < self.accumulation or not 0 <= rank < self.num_processes:
            raise IndexError(f"micro-batch {micro} of process {rank} is outside {self.accumulation} x {self.num_processes}")
        start = (micro * self.num_processes + rank) * self.micro_batch_size
        return self.step_indices(step)[start:start + self.micro_batch_size]

    def state_dict(self) -> dict[str, int | str]:
        """What a checkpoint records, so a resume can check it draws from the same data the same way."""
        return {"num_items": self.num_items, "items_per_step": self.items_per_step, "seed": self.seed, "leftover": self.leftover}
