"""Run the ``moalign`` CLI under accelerate's FSDP2 on CPU processes (for tests; start it with torchrun).

accelerate turns FSDP on only for accelerator devices, so this declares the CPU process group a GPU one
before the first ``Accelerator`` is made; from then on accelerate prepares the model exactly as it would
for ``accelerate launch --use_fsdp --fsdp_version 2`` (``fully_shard`` per decoder layer, gloo collectives).

The worker leaves with ``os._exit`` once the command has returned: in about one run in a hundred, FSDP2 on gloo
(a pairing accelerate itself never sets up) aborts in C++ static teardown ("terminate called without an active
exception") after the run has finished, written its outputs and destroyed its process group.
"""

import os
import sys

from accelerate.state import PartialState
from accelerate.utils import DistributedType

from moalign.cli.main import main

if __name__ == "__main__":
    PartialState(cpu=True)
    PartialState._shared_state["distributed_type"] = DistributedType.MULTI_GPU
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
