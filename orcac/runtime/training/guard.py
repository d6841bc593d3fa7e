"""Out of memory while training: one line and exit 1, never a bare `Killed`.

    return guard.supervised(lambda: guard.out_of_memory_is_an_error(train, spec=spec), spec=spec, on_killed=...)

train/memory.py refuses a stage whose step will not fit before it starts; this module is for
when the estimate is wrong anyway (another program took the memory, a model the formula does
not know). A training process meets the end of memory in one of two ways:

  an allocation fails   CUDA's OutOfMemoryError, or on the CPU torch's "can't allocate memory"
                        (a `ulimit -v`, a machine without overcommit): `out_of_memory_is_an_error`
                        turns it into an OrcacError, after `run` has marked the run failed.
  the kernel kills it   Linux overcommits, so on the CPU allocations succeed and the OOM killer
                        ends the process with SIGKILL, which no process can catch. So `orcac
                        train` on the command line trains in a child process (`supervised`) and
                        waits for it; a child killed by a signal is reported in one line with its
                        peak resident memory, its run marked failed in train_runs, exit 1.

Either way the stages that finished are on disk (stages/NN-name/final) and `--resume` starts
after them. Under torchrun or accelerate (WORLD_SIZE set) the launcher owns the processes, and
a program that calls `orcac.cli.main` itself keeps its own process: both train in-process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from orcac.errors import OrcacError

CHILD = "ORCAC_TRAIN_CHILD"  # set in the supervised child: it trains in-process
LOWER = (
    "lower train.max_length or train.batch_size (raise grad_accum to keep the batch), or train a LoRA "
    "adapter (train {{ lora {{ ... }} }}); then `orcac train {spec} --resume` starts after the finished stages"
)


def supervised(train, *, spec: str, on_killed) -> int:
    """Run `train()` in a child `orcac train` process when this process is the command line's;
    `on_killed()` marks the child's run failed when a signal ends it."""
    if not _should_supervise():
        return train()
    child = subprocess.Popen([sys.executable, "-m", "orcac.cli", *sys.argv[1:]], env={**os.environ, CHILD: "1"})
    _killed_first(child.pid)
    try:
        status, peak_kb = _wait(child)
    except KeyboardInterrupt as stop:
        # Ctrl-C reached the child from the terminal too; SIGTERM (cli.Terminated) came to us only
        if type(stop).__name__ == "Terminated":
            child.send_signal(signal.SIGTERM)
        status, peak_kb = _wait(child)
    if status >= 0:
        return status  # the child said what happened (an error line, "interrupted", or nothing)
    killed = signal.Signals(-status).name
    on_killed()
    raise OrcacError(
        f"the training process was killed by {killed} at {peak_kb / 2**20:.1f} GB resident"
        + (", most likely by the kernel's out-of-memory killer" if killed == "SIGKILL" else "")
        + "; the run is marked failed and the stages that finished are kept",
        hint=LOWER.format(spec=spec),
    )


def out_of_memory_is_an_error(train, *, spec: str):
    """`train()`, with a failed allocation raised as one OrcacError line instead of a traceback."""
    try:
        return train()
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        raise OrcacError(
            f"training ran out of memory ({_what_failed(error)}); the run is marked failed and the stages "
            "that finished are kept",
            hint=LOWER.format(spec=spec),
        ) from None


def is_out_of_memory(error: BaseException) -> bool:
    """A failed allocation: MemoryError, torch.OutOfMemoryError (CUDA), or torch's CPU allocator."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error)
    return "can't allocate memory" in text or "out of memory" in text.lower()


def _what_failed(error: BaseException) -> str:
    wanted = re.search(r"allocate (\d+) bytes", str(error))
    asked = f"an allocation of {int(wanted.group(1)) / 2**30:.2f} GB failed" if wanted else "an allocation failed"
    return f"{asked} at {_resident_gb():.1f} GB resident" if _resident_gb() else asked


def _resident_gb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _should_supervise() -> bool:
    import threading

    return (
        not os.environ.get(CHILD)
        and not os.environ.get("WORLD_SIZE")
        and sys.argv[1:2] == ["train"]  # this process is `orcac train`, not a program calling main()
        and hasattr(os, "wait4")
        and threading.current_thread() is threading.main_thread()
    )


def _killed_first(pid: int) -> None:
    """When memory runs out, let the kernel end the training rather than a neighbour's program
    (or this supervisor): raising one's own oom_score_adj needs no privilege."""
    try:
        Path(f"/proc/{pid}/oom_score_adj").write_text("500")
    except OSError:
        pass


def _wait(child: subprocess.Popen) -> tuple[int, int]:
    """(exit status, or -signal; the child's peak resident KB), from wait4's rusage."""
    while True:
        try:
            _, status, usage = os.wait4(child.pid, 0)
            break
        except InterruptedError:
            continue
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_maxrss
