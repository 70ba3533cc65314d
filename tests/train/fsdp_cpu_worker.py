"""Run the ``moalign`` CLI under accelerate's FSDP2 on CPU processes (for tests; start it with torchrun).

accelerate turns FSDP on only for accelerator devices, so this declares the CPU process group a GPU one
before the first ``Accelerator`` is made; from then on accelerate prepares the model exactly as it would
for ``accelerate launch --use_fsdp --fsdp_version 2`` (``fully_shard`` per decoder layer, gloo collectives).
"""

import sys

from accelerate.state import PartialState
from accelerate.utils import DistributedType

from moalign.cli.main import main

if __name__ == "__main__":
    PartialState(cpu=True)
    PartialState._shared_state["distributed_type"] = DistributedType.MULTI_GPU
    raise SystemExit(main(sys.argv[1:]))
