"""Counting the aten operators a piece of code dispatches: on a GPU, where a small model is bound by kernel launches
rather than arithmetic, the count of non-view operators is about the count of kernels it launches, and it can be
read on any machine."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class OpCounter(TorchDispatchMode):
    """Counts the aten operators dispatched while active (this thread): ``ops`` all of them, ``kernels`` those that
    are not views (a view moves no data; ``_unsafe_view`` is one without aliasing records), ``reads`` the host
    reads of tensor values (a scalar read or a copy to the CPU: a device sync on a GPU, unless the tensor lives
    on the CPU)."""

    def __init__(self):
        super().__init__()
        self.ops = 0
        self.kernels = 0
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops += 1
        read = func is torch.ops.aten._local_scalar_dense.default or (
            func is torch.ops.aten._to_copy.default and str(kwargs.get("device")) == "cpu")
        self.reads += read
        self.kernels += not (read or func.is_view or func is torch.ops.aten._unsafe_view.default)
        return func(*args, **kwargs)
