"""A teacher with `mode = batch`: its jobs go through the provider's batch API, not online calls.

    await run_batch_jobs(plan.teachers, jobs, on_outcome, store, on_batch=display.batch)
    await cancel_live_batches(plan.teachers, store)          # `orcac build --cancel`

The provider's batch API (OpenAI's, and those litellm reaches through its files and batches
functions with the same JSONL lines: azure, hosted_vllm, litellm_proxy) answers within 24 hours
at about half the online price. The flow, per teacher:

1. Answers downloaded by an earlier build but not yet turned into records (it was killed in
   between) are delivered from the database: no call.
2. Batches recorded as live (validating, in_progress, finalizing, cancelling) hold their jobs:
   those jobs are never sent again while the batch lives. A file uploaded by a build killed
   before it recorded the batch is looked up among the provider's batches by its file id,
   and given a batch only if it has none.
3. The other jobs go into JSONL files within the provider's limits (MAX_LINES requests,
   MAX_BYTES a file), one line per job with `custom_id` = the job id. The file id and the
   jobs in it are written to DuckDB as soon as the upload returns, the batch id as soon as
   the batch is created: before anything waits.
4. Every POLL_SECONDS each live batch is retrieved; its state and counts go to DuckDB and to
   the live display. A batch that ends has its output and error files downloaded and stored
   (`batch_results`, one transaction with the batch marked collected: orcac/runtime/store/batches.py), then each of its jobs
   becomes an `Outcome`, the same as an online call's, through the same `on_outcome`: an
   answer (the same checks and records follow), or a failure with its reason (a per-line
   error, or `missing` for a line in neither file).
5. A batch that failed, expired or was cancelled leaves jobs without an answer: those, and
   only those, are submitted again (once more in this build; after that they fail with the
   batch's state as the reason, and the next build tries again).

A re-run of a finished build has no job to send, so it makes no call at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from orcac.costs import batch_price, tokens
from orcac.errors import OrcacError
from orcac.runtime.store import batches as stored
from orcac.runtime.store.database import Store
from orcac.runtime.teachers.calls import _read_response
from orcac.runtime.teachers.jobs import FailReason, Job, Outcome, request_params
from orcac.runtime.teachers.litellm_setup import get_litellm
from orcac.specs.plan import TeacherPlan

MAX_LINES = 50_000  # OpenAI: requests per batch file
MAX_BYTES = 200 * 1000 * 1000  # OpenAI: 200 MB per file (read as 10**6 bytes: the smaller reading)
# Between retrieves of a live batch. ORCAC_BATCH_POLL_S overrides it (a local vLLM batch ends
# in minutes; tests use a few milliseconds).
POLL_SECONDS = float(os.environ.get("ORCAC_BATCH_POLL_S", "30"))
RESUBMIT_ROUNDS = 1  # how often one build submits a job again after its batch ended without it
ENDPOINT = "/v1/chat/completions"
WINDOW = "24h"

ENDED = ("completed", "failed", "expired", "cancelled")
PROVIDERS = ("openai", "azure", "hosted_vllm", "litellm_proxy")  # OpenAI's JSONL, line for line

OnBatch = Callable[[str, str], None]  # (batch id or file id, a one-line state) for the display


# ---- the dry run ----------------------------------------------------------------------------


def dry_run_notes(teachers: dict[str, TeacherPlan], jobs: Iterable[Job]) -> list[str]:
    """What a dry run says about batch teachers: files, cost and where the price came from."""
    calls: dict[str, list[int]] = {}
    for job in jobs:
        count = calls.setdefault(job.teacher, [0, 0])
        count[0] += 1
        count[1] += tokens(sum(len(str(m.get("content") or "")) for m in job.messages))
    notes = []
    for name, (n, prompt_tokens) in sorted(calls.items()):
        plan = teachers[name]
        if plan.mode != "batch" or n == 0:
            continue
        files = -(-n // MAX_LINES)
        found = batch_price(plan.model)
        if found is None:
            notes.append(f"teacher {name}: {n} jobs in {files} batch file(s); no price known for {plan.model}")
            continue
        cost = prompt_tokens * found[0] + n * plan.max_tokens * found[1]
        notes.append(
            f"teacher {name}: {n} jobs in {files} batch file(s) of at most {MAX_LINES:,}; "
            f"batch cost at most ${cost:,.4f} ({found[2]}; completions counted at max_tokens)"
        )
    return notes


# ---- one teacher's batch endpoint ---------------------------------------------------------------


@dataclass
class _BatchTeacher:
    plan: TeacherPlan
    provider: str = ""
    api_base: str | None = None
    body: dict[str, Any] = field(default_factory=dict)  # a line's body without "messages"
    price: tuple[float, float] | None = None

    def label(self) -> str:
        return f"teacher {self.plan.name} ({self.plan.model})"

    def prepare(self) -> None:
        # litellm's async files functions (afile_content) build a coroutine of their own
        # sync twin in an executor and drop it: Python then warns on stderr, mid-display,
        # about a coroutine never awaited. The answer is unaffected; the warning is noise.
        warnings.filterwarnings("ignore", message="coroutine '.*' was never awaited", category=RuntimeWarning)
        plan = self.plan
        if isinstance(plan.api_base, tuple):
            raise OrcacError(
                f"{self.label()}: mode = batch sends to one batch API, and api_base lists several servers",
                hint="give a batch teacher one api_base (several servers are for online mode)",
            )
        litellm = get_litellm()
        try:
            model, provider, _key, base = litellm.get_llm_provider(plan.model, api_base=plan.api_base)
        except Exception as error:  # noqa: BLE001 - litellm raises several types for this
            raise OrcacError(f"{self.label()}: unknown provider: {' '.join(str(error).split())[:200]}") from None
        if provider not in PROVIDERS:
            raise OrcacError(
                f"{self.label()}: mode = batch is not supported for provider {provider}",
                hint=f"use mode = online, or a provider whose batch API takes OpenAI's JSONL ({', '.join(PROVIDERS)})",
            )
        self.provider = provider
        self.api_base = plan.api_base or base
        from orcac.runtime.teachers import fast_path as transport

        route = transport.resolve(plan, litellm)
        if isinstance(route, transport.Route):
            self.body = dict(route.body)  # litellm's own parameter mapping, as the fast path sends
        else:
            self.body = {"model": model, **request_params(plan)}
        found = batch_price(plan.model)
        self.price = found[:2] if found else None

    def options(self) -> dict[str, Any]:
        """Keyword arguments for litellm's files and batches functions (the key read now, never kept)."""
        options: dict[str, Any] = {"custom_llm_provider": self.provider}
        if self.api_base:
            options["api_base"] = self.api_base
        env = self.plan.api_key_env
        if env:
            key = os.environ.get(env)
            if not key:
                raise OrcacError(
                    f"{self.label()}: the environment variable {env} is not set",
                    hint=f"set {env} to the provider's API key (orcac reads it only at call time)",
                )
            options["api_key"] = key
        return options

    def line(self, job: Job) -> bytes:
        body = dict(self.body)
        body.update(job.options)  # a task's temperature, a sample's seed
        body["messages"] = list(job.messages)
        record = {"custom_id": job.id, "method": "POST", "url": ENDPOINT, "body": body}
        return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def chunks(sizes: list[int], *, max_lines: int | None = None, max_bytes: int | None = None) -> list[range]:
    """Consecutive index ranges whose line count and byte total stay within the limits.

    >>> chunks([10, 10, 10, 10, 10], max_lines=2, max_bytes=100)
    [range(0, 2), range(2, 4), range(4, 5)]
    >>> chunks([60, 60, 10], max_lines=10, max_bytes=100)
    [range(0, 1), range(1, 3)]
    """
    max_lines = max_lines or MAX_LINES
    max_bytes = max_bytes or MAX_BYTES
    out: list[range] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if size > max_bytes:
            raise OrcacError(f"one batch line is {size:,} bytes, more than the provider's {max_bytes:,} a file")
        if i > start and (i - start >= max_lines or total + size > max_bytes):
            out.append(range(start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        out.append(range(start, len(sizes)))
    return out


# ---- results ----------------------------------------------------------------------------------


def _ns(value: Any) -> Any:
    """JSON as attributes, so a line's body reads like litellm's response (teachers._read_response)."""
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _ns(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_ns(v) for v in value]
    return value


def _reason_for(status: int | None) -> FailReason:
    if status == 429:
        return "rate_limited"
    if status is not None and status >= 500:
        return "server_error"
    if status in (400, 404, 413, 422):
        return "bad_request"
    return "bad_response"


def outcome_of(job_id: str, line: dict, price: tuple[float, float] | None, attempts: int) -> Outcome:
    """A line of a batch's output or error file as the Outcome an online call would have had."""
    response = line.get("response") or {}
    status = response.get("status_code")
    body = response.get("body")
    error = line.get("error")
    if error or status != 200 or not isinstance(body, dict):
        detail = error if error else (body or {}).get("error") if isinstance(body, dict) else body
        if isinstance(detail, dict):
            detail = detail.get("message") or detail.get("code") or json.dumps(detail)
        text = " ".join(str(detail or f"status {status}").split())[:300]
        return Outcome.failed(job_id, _reason_for(status), text, attempts=attempts)
    try:
        text, finish, prompt, completion, model = _read_response(_ns(body))
    except ValueError as problem:
        return Outcome.failed(job_id, "bad_response", str(problem), attempts=attempts)
    from litellm.litellm_core_utils.core_helpers import map_finish_reason

    cost = prompt * price[0] + completion * price[1] if price else 0.0
    finish = map_finish_reason(finish) if finish is not None else None
    return Outcome.answered(
        job_id,
        text,
        finish_reason=finish,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=cost,
        model=model,
        attempts=attempts,
    )


def _lines(content: Any) -> Iterable[dict]:
    raw = getattr(content, "content", content)
    if isinstance(raw, str):
        raw = raw.encode()
    for text in bytes(raw or b"").splitlines():
        if text.strip():
            try:
                yield json.loads(text)
            except ValueError:
                continue  # a torn line: its job counts as missing


def printable(value: Any) -> str:
    """A provider's id or state word as it may be shown: no control characters, bounded."""
    return "".join(c for c in str(value) if c.isprintable())[:120]


def _status_line(batch: Any) -> str:
    counts = getattr(batch, "request_counts", None)
    total = getattr(counts, "total", 0) or 0
    done = getattr(counts, "completed", 0) or 0
    failed = getattr(counts, "failed", 0) or 0
    return f"{printable(batch.status)}, {done}/{total} done" + (f", {failed} failed" if failed else "")


# ---- the run ----------------------------------------------------------------------------------


class _Runner:
    """One teacher's batches in one build."""

    def __init__(
        self, teacher: _BatchTeacher, jobs: dict[str, Job], store: Store, on_outcome, on_batch: OnBatch | None
    ):
        self.teacher = teacher
        self.name = teacher.plan.name
        self.pending = jobs  # job id -> job, no answer yet; shrinks as outcomes are delivered
        self.store = store
        self.on_outcome = on_outcome
        self.on_batch = on_batch or (lambda _id, _state: None)
        self.submitted: dict[str, int] = {}  # job id -> times submitted in this build
        self.live: dict[str, str | None] = {}  # input file id -> batch id (None: not yet created)
        self.litellm = get_litellm()

    def deliver(self, outcome: Outcome) -> None:
        if self.pending.pop(outcome.job_id, None) is not None:
            self.on_outcome(outcome)

    # 1. answers stored by a build that did not live to record them
    def deliver_stored(self) -> None:
        if not self.pending:
            return
        for job_id, line, attempts in stored.stored_answers(self.store, self.pending):
            self.deliver(outcome_of(job_id, json.loads(line), self.teacher.price, attempts or 1))

    # 2. live batches hold their jobs
    async def adopt_live(self) -> None:
        for file_id, batch_id in stored.live_files(self.store, self.name):
            if batch_id is None:
                batch_id = await self._find_batch(file_id) or await self._create_batch(file_id)
            self.live[file_id] = batch_id
            self.on_batch(printable(batch_id), f"teacher {self.name}: resumed")

    async def _find_batch(self, file_id: str) -> str | None:
        """The batch a killed build created for this file but did not record, if there is one."""
        try:
            page = await self.litellm.alist_batches(limit=100, **self.teacher.options())
        except Exception:  # noqa: BLE001 - a provider without listing: create the batch
            return None
        for batch in getattr(page, "data", None) or []:
            if getattr(batch, "input_file_id", None) == file_id:
                stored.record_batch(self.store, file_id, batch.id, batch.status)
                return batch.id
        return None

    def held(self) -> set[str]:
        return stored.held_jobs(self.store, self.live)

    # 3. the rest, in files within the limits
    async def submit(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        lines = [self.teacher.line(job) for job in jobs]
        for part in chunks([len(line) for line in lines]):
            batch_jobs = [jobs[i] for i in part]
            data = b"".join(lines[i] for i in part)
            file = await self._call(
                self.litellm.acreate_file, file=(f"orcac-{self.name}.jsonl", data, "application/jsonl"), purpose="batch"
            )
            for job in batch_jobs:
                self.submitted[job.id] = self.submitted.get(job.id, 0) + 1
            stored.record_upload(
                self.store, file.id, self.name, self.teacher.api_base, {j.id: self.submitted[j.id] for j in batch_jobs}
            )
            self.live[file.id] = await self._create_batch(file.id)

    async def _create_batch(self, file_id: str) -> str:
        batch = await self._call(
            self.litellm.acreate_batch,
            completion_window=WINDOW,
            endpoint=ENDPOINT,
            input_file_id=file_id,
            metadata={"orcac_teacher": self.name},
        )
        stored.record_batch(self.store, file_id, batch.id, batch.status)
        self.on_batch(printable(batch.id), f"teacher {self.name}: {_status_line(batch)}")
        return batch.id

    async def _call(self, function, **kwargs):
        try:
            return await function(**kwargs, **self.teacher.options())
        except OrcacError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure here stops the run in one line
            from orcac.runtime.teachers.calls import _detail

            status = getattr(error, "status_code", None)
            raise OrcacError(
                f"{self.teacher.label()}: batch API call {function.__name__} failed"
                + (f" ({status})" if status else "")
                + f": {_detail(error)}",
                hint="batches already submitted are recorded: run the same command to resume polling them",
            ) from None

    # 4. poll until every batch has ended
    async def poll(self) -> None:
        while self.live:
            for file_id, batch_id in list(self.live.items()):
                batch = await self._call(self.litellm.aretrieve_batch, batch_id=batch_id)
                counts = getattr(batch, "request_counts", None)
                stored.record_progress(
                    self.store,
                    file_id,
                    batch.status,
                    getattr(counts, "completed", 0) or 0,
                    getattr(counts, "failed", 0) or 0,
                )
                self.on_batch(printable(batch_id), f"teacher {self.name}: {_status_line(batch)}")
                if batch.status in ENDED:
                    del self.live[file_id]
                    await self.collect(file_id, batch)
            if self.live:
                await asyncio.sleep(POLL_SECONDS)

    async def collect(self, file_id: str, batch: Any) -> None:
        """Store the batch's output and error lines, mark it collected (one transaction), deliver."""
        found: dict[str, tuple[dict, bool]] = {}
        for attr, ok in (("error_file_id", False), ("output_file_id", True)):
            result_file = getattr(batch, attr, None)
            if result_file:
                content = await self._call(self.litellm.afile_content, file_id=result_file)
                for line in _lines(content):
                    if isinstance(line, dict) and line.get("custom_id"):
                        good = ok and not line.get("error") and (line.get("response") or {}).get("status_code") == 200
                        found[str(line["custom_id"])] = (line, good)
        members = stored.members(self.store, file_id)
        found = {k: v for k, v in found.items() if k in members}  # a line for a job not sent here is ignored
        stored.record_collected(  # one transaction: a kill leaves the batch uncollected, or all of it stored
            self.store,
            file_id,
            status=batch.status,
            output_file_id=getattr(batch, "output_file_id", None),
            error_file_id=getattr(batch, "error_file_id", None),
            results={k: (line, good, members[k]) for k, (line, good) in found.items()},
        )
        again: list[Job] = []
        for job_id, attempts in members.items():
            if job_id not in self.pending:
                continue  # answered another way meanwhile (an earlier batch, an online build)
            if job_id in found:
                line, _ = found[job_id]
                self.deliver(outcome_of(job_id, line, self.teacher.price, attempts or 1))
            elif batch.status == "completed":
                self.deliver(
                    Outcome.failed(job_id, "missing", "not in the batch's output or error file", attempts=attempts or 1)
                )
            elif batch.status != "failed" and self.submitted.get(job_id, 0) <= RESUBMIT_ROUNDS:
                again.append(self.pending[job_id])
            else:
                self.deliver(
                    Outcome.failed(job_id, f"batch_{batch.status}", _batch_errors(batch), attempts=attempts or 1)
                )
        await self.submit(again)

    async def run(self) -> None:
        self.deliver_stored()
        await self.adopt_live()
        held = self.held()
        await self.submit([job for job_id, job in self.pending.items() if job_id not in held])
        await self.poll()


def _batch_errors(batch: Any) -> str:
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    messages = [getattr(e, "message", None) or (e.get("message") if isinstance(e, dict) else None) for e in errors]
    text = "; ".join(m for m in messages if m) or f"the batch ended {batch.status} without this job's answer"
    return " ".join(text.split())[:300]


async def run_batch_jobs(
    teachers: dict[str, TeacherPlan],
    jobs: Iterable[Job],
    on_outcome: Callable[[Outcome], None],
    store: Store,
    *,
    on_batch: OnBatch | None = None,
) -> None:
    """Every job of a batch teacher to exactly one Outcome (see the module docstring)."""
    by_teacher: dict[str, dict[str, Job]] = {}
    for job in jobs:
        by_teacher.setdefault(job.teacher, {})[job.id] = job
    runners = []
    for name, pending in sorted(by_teacher.items()):
        teacher = _BatchTeacher(teachers[name])
        teacher.prepare()
        runners.append(_Runner(teacher, pending, store, on_outcome, on_batch))
    await asyncio.gather(*(runner.run() for runner in runners))


async def run_online_and_batch(
    teachers: dict[str, TeacherPlan],
    jobs: Iterable[Job],
    on_outcome: Callable[[Outcome], None],
    store: Store,
    *,
    root=None,
    on_batch: OnBatch | None = None,
) -> None:
    """The build's jobs: online teachers' through `teachers.run_jobs`, batch teachers' here, at once."""
    from orcac.runtime.teachers.calls import run_jobs

    online: list[Job] = []
    batch: list[Job] = []
    for job in jobs:
        plan = teachers.get(job.teacher)  # an unknown teacher: run_jobs says so in its words
        (batch if plan is not None and plan.mode == "batch" else online).append(job)
    work = []
    if online:
        work.append(run_jobs(teachers, online, on_outcome, root=root))
    if batch:
        work.append(run_batch_jobs(teachers, batch, on_outcome, store, on_batch=on_batch))
    await asyncio.gather(*work)


async def cancel_live_batches(teachers: dict[str, TeacherPlan], store: Store) -> list[tuple[str, str, str]]:
    """Ask the provider to cancel every live batch of the plan's teachers: [(teacher, batch, state)]."""
    done = []
    for name, file_id, batch_id in stored.cancellable(store):
        if name not in teachers:
            continue
        teacher = _BatchTeacher(teachers[name])
        teacher.prepare()
        runner = _Runner(teacher, {}, store, lambda _o: None, None)
        batch = await runner._call(runner.litellm.acancel_batch, batch_id=batch_id)
        stored.record_status(store, file_id, batch.status)
        done.append((name, batch_id, batch.status))
    return done
