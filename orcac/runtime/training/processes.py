"""Which process of a launch this is, the device it trains on, and the log only one of them prints.

`orcac train` runs unchanged under `torchrun --nproc-per-node N` or `accelerate launch`: the
launcher sets RANK and WORLD_SIZE, and only the main process (rank 0) writes files, database
rows and log lines.
"""

from __future__ import annotations

import os
import sys

from orcac.errors import printable


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def wait_for_everyone() -> None:
    if world_size() > 1:
        from accelerate import PartialState

        # cpu=True where there is no GPU: without it accelerate sees no device to spread over
        # and leaves a torchrun launch undistributed (each rank would train on all the data).
        PartialState(cpu=not cuda_available()).wait_for_everyone()


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def log(message: str) -> None:
    """One line on stderr, from the main process only."""
    if is_main_process():
        print(printable(message), file=sys.stderr, flush=True)
