"""Calling teachers: every job through litellm (or its fast path), exactly one Outcome per job.

    run_jobs(plan.teachers, jobs, on_outcome)

A job is content-addressed (`job_id`: model, api base, messages and sampling parameters), so
the caller can skip jobs already answered. Per teacher, at most `concurrency` requests are in
flight, its `rpm` / `tpm` limits hold (tokens estimated by orcac.costs.prompt_tokens + max_tokens), and
retryable failures (429, 5xx, timeouts, connection errors, malformed answers, and empty ones:
no choices, or a blank text that was not cut off by max_tokens) are retried with exponential
backoff and full jitter, honouring Retry-After, up to `max_retries`. An answer longer than
`max_tokens` can be (MAX_CHARS_PER_TOKEN characters a token) is not stored: that job fails
with `bad_response`, unretried. A job that still fails becomes `Outcome.failed(job id, reason,
detail)`, never an exception, and the other jobs go on.

Failures no retry can fix (a bad or missing key, an unknown model or provider) stop the run
with a one-line `OrcacError` naming the teacher; outcomes already delivered stay delivered.
A connection that fails is one job's failure, unless the teacher fails everything: it is
unreachable, and the run stops, once UNREACHABLE_AFTER jobs in a row (or all of its jobs, if
fewer) failed for connection errors with no answer in between. API keys are read from the environment at call time, handed
to litellm (or put in the Authorization header), and scrubbed from every message orcac keeps.

A teacher that litellm resolves to an OpenAI-compatible endpoint, with requests it would send
unchanged, is called over one shared aiohttp session instead (orcac/runtime/teachers/fast_path.py):
litellm's per-call CPU cost is what limits throughput, and on this path litellm runs once per
teacher. Outcomes, failure reasons and fatal errors are the same on both paths.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import re
import time
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orcac import costs
from orcac.errors import OrcacError
from orcac.runtime.teachers.concurrency import AdaptiveLimit, ratelimit_pause
from orcac.runtime.teachers.endpoints import Endpoint, EndpointPool, api_bases, for_server
from orcac.runtime.teachers.jobs import Job, Outcome, request_params
from orcac.runtime.teachers.litellm_setup import get_litellm
from orcac.specs.plan import TeacherPlan

if TYPE_CHECKING:  # imported when first needed: a run of local teachers never loads aiohttp's client
    from orcac.runtime.teachers.fast_path import FastClient, Route

# Full-jitter backoff: sleep U(0, min(cap, base * 2**attempt)). Module-level so tests can shrink them.
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
RETRY_AFTER_CAP_S = 600.0  # a provider asking for more than this is treated as asking for this
# Longer than any token of a real vocabulary (4 on average in English): an answer with more
# characters than max_tokens * this did not come from max_tokens tokens, and is not stored.
MAX_CHARS_PER_TOKEN = 32
UNREACHABLE_AFTER = 8  # jobs in a row lost to connection errors: the teacher is down, not one request


def estimate_tokens(teacher: TeacherPlan, messages: Iterable[dict]) -> int:
    """What a request may cost against a tokens-per-minute limit: its estimated prompt tokens
    (orcac.costs.prompt_tokens) + max_tokens."""
    return costs.prompt_tokens(messages) + teacher.max_tokens


# ---- litellm, quietly ---------------------------------------------------------------


# ---- errors ----------------------------------------------------------------------------


class _Retryable(Exception):
    def __init__(self, reason: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


class _Fatal(Exception):
    def __init__(self, what: str, detail: str, hint: str | None):
        super().__init__(detail)
        self.what = what
        self.detail = detail
        self.hint = hint


class _JobFailed(Exception):
    """Not retryable, but only this job's problem (e.g. a prompt longer than the context)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date.

    >>> parse_retry_after("2.5")
    2.5
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    >>> parse_retry_after("soon") is None
    True
    """
    if value is None:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _headers_of(error: BaseException) -> dict[str, str]:
    headers: dict[str, str] = {}
    for source in (
        getattr(getattr(error, "response", None), "headers", None),
        getattr(error, "litellm_response_headers", None),
        getattr(error, "headers", None),
    ):
        if source:
            try:
                headers.update({str(k).lower(): str(v) for k, v in dict(source).items()})
            except (TypeError, ValueError):
                pass
    return headers


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# How providers word a 400 for a prompt longer than the context (litellm's own test, abridged).
_CONTEXT = re.compile(r"context_length_exceeded|maximum context length|context window|too many tokens", re.IGNORECASE)

_PREFIX = re.compile(r"^(litellm\.)?\w*(Error|Exception|Timeout):\s*")


def _detail(error: BaseException) -> str:
    """The provider's message without litellm's stacked class-name prefixes, on one line."""
    text = " ".join(str(error).split()) or type(error).__name__
    while True:
        shorter = _PREFIX.sub("", text, count=1)
        if shorter == text or not shorter:
            break
        text = shorter
    return _one_line(text)


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _classify(error: BaseException, teacher: TeacherPlan) -> BaseException:
    """Map an exception from litellm (or around it) to _Retryable, _Fatal or _JobFailed."""
    if isinstance(error, _Retryable | _JobFailed):  # raised by _vet: already classified
        return error
    litellm = get_litellm()
    detail = _detail(error)
    status = getattr(error, "status_code", None)
    key_hint = (
        f"set {teacher.api_key_env} to a valid key for {teacher.model}"
        if teacher.api_key_env
        else f'give teacher {teacher.name} its key: api_key = env("NAME"), NAME the environment variable that holds it'
    )
    if isinstance(error, asyncio.TimeoutError | litellm.Timeout):
        return _Retryable("timeout", detail)
    if isinstance(error, litellm.AuthenticationError) or status == 401:
        return _Fatal("authentication failed (401)", detail, key_hint)
    if "Missing credentials" in str(error):  # the OpenAI SDK, before sending: no key anywhere
        return _Fatal(
            "no API key",
            detail,
            key_hint + " (a server without authentication accepts any value)",
        )
    if isinstance(error, litellm.PermissionDeniedError) or status == 403:
        return _Fatal("permission denied (403)", detail, key_hint)
    if isinstance(error, litellm.RateLimitError) or status == 429:
        retry_after = parse_retry_after(_headers_of(error).get("retry-after"))
        return _Retryable("rate_limited", detail, retry_after)
    if isinstance(error, litellm.NotFoundError) or status == 404:
        return _Fatal(
            "unknown model or endpoint (404)",
            detail,
            "check the teacher's model string and api_base (see https://docs.litellm.ai/docs/providers)",
        )
    if isinstance(error, litellm.BadRequestError) and (
        isinstance(error, getattr(litellm.exceptions, "LiteLLMUnknownProvider", ()))
        or "LLM Provider NOT provided" in str(error)
    ):
        return _Fatal(
            "unknown provider",
            detail,
            "prefix the model with its litellm provider, e.g. openai/gpt-4o-mini (https://docs.litellm.ai/docs/providers)",
        )
    text = str(error)
    if isinstance(error, litellm.ContextWindowExceededError) or (status == 400 and _CONTEXT.search(text)):
        return _JobFailed("bad_request", "context window exceeded")
    # litellm reports a body that is not JSON as a 500, and a refused or dropped connection
    # as a 500 "Connection error."; tell them apart by message, they are retried differently.
    if any(s in text for s in ("JSONDecodeError", "Expecting value", "Unterminated string", "Expecting ',' delimiter")):
        return _Retryable("bad_response", detail)
    if isinstance(error, litellm.APIConnectionError | ConnectionError) or "Connection error" in text:
        return _Retryable("connection_error", detail)
    if isinstance(error, litellm.BadRequestError | litellm.UnprocessableEntityError) or status in (400, 422):
        return _JobFailed("bad_request", detail)
    if isinstance(error, json.JSONDecodeError | ValueError | KeyError | TypeError | AttributeError):
        return _Retryable("bad_response", detail)
    if isinstance(error, OSError):
        return _Retryable("connection_error", detail)
    return _Retryable("server_error", detail)


# ---- rate limits -------------------------------------------------------------------------


class _Bucket:
    """A token bucket refilled continuously: `capacity` per 60 s, starting full.

    Waiters are served in arrival order (one lock), so a large request is not starved by
    small ones. A request larger than the capacity waits for a full bucket and goes.
    """

    def __init__(self, per_minute: int):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, amount: float) -> None:
        amount = min(float(amount), self.capacity)
        async with self.lock:
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.level >= amount:
                    self.level -= amount
                    return
                await asyncio.sleep((amount - self.level) / self.rate)


# ---- per-teacher state ---------------------------------------------------------------------


@dataclass
class _Teacher:
    plan: TeacherPlan
    root: Path | None
    rpm: _Bucket | None = None
    tpm: _Bucket | None = None
    paused_until: float = 0.0  # monotonic; a 429 with Retry-After pauses the whole teacher
    price: tuple[float, float] | None = None  # USD per prompt token, per completion token
    kwargs: dict[str, Any] = field(default_factory=dict)
    checked: bool = False
    ended: int = 0  # jobs ended so far
    unreachable: int = 0  # of the latest ones, how many in a row failed for connection errors
    route: Route | None = None  # set when this teacher takes the fast path (fast_path.py)
    fast: FastClient | None = None  # the run's one fast client, for a teacher with a route
    limit: AdaptiveLimit | None = None  # requests in flight, within [1, concurrency] (concurrency.py)
    pool: EndpointPool | None = None  # its api bases, least-loaded first (endpoints.py)

    def __post_init__(self):
        self.limit = AdaptiveLimit(self.plan.concurrency, adaptive=self.plan.adaptive and not self.local)
        if self.plan.rpm:
            self.rpm = _Bucket(self.plan.rpm)
        if self.plan.tpm:
            self.tpm = _Bucket(self.plan.tpm)

    @property
    def local(self) -> bool:
        """An in-process model: nothing to hang on, so its requests are not timed out."""
        return self.plan.model.startswith("local/")

    def label(self) -> str:
        return f"teacher {self.plan.name} ({self.plan.model})"

    def api_key(self) -> str | None:
        env = self.plan.api_key_env
        if not env:
            return None
        value = os.environ.get(env)
        if not value:
            raise OrcacError(
                f"{self.label()}: the environment variable {env} is not set",
                hint=f"set {env} to the provider's API key (orcac reads it only at call time)",
            )
        return value

    async def prepare(self, fast_client: Callable[[], FastClient]) -> None:
        """Once per run, on the first job: check key and provider, load a local model, price, route."""
        if self.checked:
            return
        self.checked = True
        self.api_key()
        plan = self.plan
        litellm = get_litellm()
        kwargs: dict[str, Any] = {
            "model": plan.model,
            "timeout": plan.timeout_s,
            # orcac retries itself (with Retry-After and one attempt count); litellm and the
            # OpenAI SDK beneath it must not retry as well.
            "num_retries": 0,
            "max_retries": 0,
            # Skips litellm's per-call logging callbacks (measured: about +15% requests/s).
            "no-log": True,
        }
        first = api_bases(plan)[0]
        if first:
            kwargs["api_base"] = first
        if self.local:
            from orcac.runtime.teachers import local_model as local_provider

            await local_provider.preload(plan, root=self.root)
            kwargs.pop("max_retries")
        else:
            try:
                litellm.get_llm_provider(plan.model, api_base=first)
            except Exception as error:  # noqa: BLE001 - litellm raises several types for this
                raise OrcacError(
                    f"{self.label()}: unknown provider: {_one_line(str(error), 200)}",
                    hint="prefix the model with its litellm provider, e.g. openai/gpt-4o-mini "
                    "(https://docs.litellm.ai/docs/providers)",
                ) from None
        kwargs.update(request_params(plan))
        self.kwargs = kwargs
        self.price = costs.price(plan.model)
        from orcac.runtime.teachers import fast_path as transport

        route = transport.resolve(for_server(plan, first), litellm)
        if isinstance(route, transport.Route):
            self.route = route
            self.fast = fast_client()
        self.pool = EndpointPool.resolve(
            plan, kwargs, (lambda one: transport.resolve(one, litellm)) if self.route is not None else None
        )


def require_keys(teachers: Iterable[TeacherPlan]) -> None:
    """Raise the one-line error a run would stop on for a teacher whose key variable is unset."""
    for plan in teachers:
        _Teacher(plan, None).api_key()


def _backoff(attempt: int) -> float:
    return random.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2 ** (attempt - 1))))


def _read_response(response: Any) -> tuple[str, str | None, int, int, str | None]:
    """(text, finish_reason, prompt_tokens, completion_tokens, model) or ValueError if malformed."""
    choices = getattr(response, "choices", None)
    if not choices:
        raise ValueError("the response has no choices")
    choice = choices[0]
    message = getattr(choice, "message", None)
    text = getattr(message, "content", None) if message is not None else None
    if text is None:
        raise ValueError("the response's first choice has no message content")
    usage = getattr(response, "usage", None)
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0) if usage is not None else 0
    completion = int(getattr(usage, "completion_tokens", 0) or 0) if usage is not None else 0
    return str(text), getattr(choice, "finish_reason", None), prompt, completion, getattr(response, "model", None)


def max_answer_chars(teacher: TeacherPlan) -> int:
    """The longest answer orcac stores for this teacher: max_tokens at MAX_CHARS_PER_TOKEN."""
    return teacher.max_tokens * MAX_CHARS_PER_TOKEN


def _vet(teacher: TeacherPlan, text: str, finish: str | None) -> None:
    """Raise for an answer not to keep: too long to have come from max_tokens (this job
    fails), or blank though not cut off (retried: at temperature > 0 the next one may not be)."""
    limit = max_answer_chars(teacher)
    if len(text) > limit:
        raise _JobFailed(
            "bad_response",
            f"the answer is {len(text):,} characters, more than max_tokens = {teacher.max_tokens} can be "
            f"({limit:,}); not stored",
        )
    if finish != "length" and not text.strip():
        raise _Retryable("bad_response", "the answer is empty")


async def _call(teacher: _Teacher, job: Job) -> Outcome:
    """One job to its final Outcome; raises _Fatal for errors that stop the run.

    A small loop of our own rather than tenacity: the wait depends on the error (Retry-After
    pauses the whole teacher, not just this job), some errors end the job and others the run,
    and the attempt count goes into the Outcome; all of which tenacity would need callbacks for.
    """
    plan = teacher.plan
    tokens = estimate_tokens(plan, job.messages) if teacher.tpm else 0
    attempts = 0
    latency = 0.0
    last_reason, last_detail = "server_error", ""
    key = None
    while attempts <= plan.max_retries:
        wait = teacher.paused_until - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if teacher.rpm:
            await teacher.rpm.take(1)
        if teacher.tpm:
            await teacher.tpm.take(tokens)
        attempts += 1
        key = teacher.api_key()
        if key is None and teacher.route is not None:
            key = teacher.route.fallback_key  # the provider's own variable, as litellm would read it; scrubbed too
        ticket = await teacher.limit.acquire()
        endpoint = teacher.pool.take()
        started = time.perf_counter()
        try:
            text, finish, prompt_tokens, completion_tokens, model = await _send(teacher, endpoint, job, key)
            latency = time.perf_counter() - started
            _vet(plan, text, finish)  # raises for an answer not to keep: released below as "other"
            teacher.limit.release(ticket, "ok")
            teacher.pool.give(endpoint)
        except asyncio.CancelledError:
            teacher.limit.release(ticket, "other")
            teacher.pool.give(endpoint)
            raise
        except Exception as error:  # noqa: BLE001 - classified below, nothing escapes unnamed
            latency = time.perf_counter() - started
            teacher.limit.release(ticket, _signal_of(error))
            teacher.pool.give(endpoint)
            kind = _classify(error, plan)
            if isinstance(kind, _Fatal):
                kind.detail = _scrub(kind.detail, [key or ""])
                raise kind from None
            if isinstance(kind, _JobFailed):
                return Outcome.failed(
                    job.id, kind.reason, _scrub(kind.detail, [key or ""]), attempts=attempts, latency_s=latency
                )
            last_reason, last_detail = kind.reason, _scrub(kind.detail, [key or ""])
            if attempts > plan.max_retries:
                break
            delay = _backoff(attempts)
            if kind.retry_after is None and kind.reason == "rate_limited":
                kind.retry_after = ratelimit_pause(_headers_of(error))  # x-ratelimit-reset-*, when sent
            if kind.retry_after is not None:
                delay = min(kind.retry_after, RETRY_AFTER_CAP_S)
                teacher.paused_until = max(teacher.paused_until, time.monotonic() + delay)
            await asyncio.sleep(delay)
            continue
        cost = 0.0
        if teacher.price:
            cost = prompt_tokens * teacher.price[0] + completion_tokens * teacher.price[1]
        return Outcome.answered(
            job.id,
            text,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=cost,
            latency_s=latency,
            model=model,
            attempts=attempts,
        )
    return Outcome.failed(job.id, last_reason, last_detail, attempts=attempts, latency_s=latency)


def _unreachable(teacher: _Teacher, outcome: Outcome) -> OrcacError:
    detail = (outcome.error or "").partition(": ")[2]
    return OrcacError(
        f"{teacher.label()}: unreachable after {outcome.attempts} attempts"
        + (f" ({teacher.unreachable} jobs in a row)" if teacher.unreachable > 1 else "")
        + (f": {detail}" if detail else ""),
        hint=f"check that {', '.join(b for b in api_bases(teacher.plan) if b) or 'the provider'} is up and reachable from this machine",
    )


async def _send(teacher: _Teacher, endpoint: Endpoint, job: Job, key: str | None):
    """One attempt at one server: (text, finish_reason, prompt_tokens, completion_tokens, model).

    A spent budget in the provider's x-ratelimit-* headers pauses the teacher until it resets.
    """
    plan = teacher.plan
    headers: dict[str, str] = {}
    if endpoint.route is not None:
        async with asyncio.timeout(plan.timeout_s):
            answer = await teacher.fast.send(endpoint.route, job.messages, key, job.options, ratelimit=headers)
    else:
        # Backs up litellm's own timeout: a server that accepts and then hangs must
        # not hold a slot forever whatever its HTTP client does. (asyncio.timeout, not
        # wait_for: no extra task per request.) A local model has no network to hang
        # on, and its request waits for the batches ahead of it, so it is not cut off.
        async with asyncio.timeout(None if teacher.local else plan.timeout_s + 1.0):
            kwargs = {**endpoint.kwargs, **dict(job.options)} if job.options else endpoint.kwargs
            response = await get_litellm().acompletion(messages=list(job.messages), api_key=key, **kwargs)
        answer = _read_response(response)
        hidden = (getattr(response, "_hidden_params", None) or {}).get("additional_headers") or {}
        headers = {str(k).lower().removeprefix("llm_provider-"): str(v) for k, v in hidden.items()}
    pause = ratelimit_pause(headers) if headers else None
    if pause:
        teacher.paused_until = max(teacher.paused_until, time.monotonic() + min(pause, RETRY_AFTER_CAP_S))
    return answer


def _signal_of(error: BaseException) -> str:
    """What a failed attempt tells the adaptive limit: a 429 or 503 is the server saying "fewer"."""
    status = getattr(error, "status_code", None)
    if status in (429, 503) or type(error).__name__ == "RateLimitError":
        return "overloaded"
    return "other"


async def run_jobs(
    teachers: dict[str, TeacherPlan],
    jobs: Iterable[Job] | AsyncIterable[Job],
    on_outcome: Callable[[Outcome], None],
    *,
    root: Path | None = None,
) -> None:
    """Run every job; call `on_outcome` exactly once per job, on the event loop thread.

    Raises OrcacError (one line, naming the teacher) for a failure that no retry can fix;
    outcomes delivered before it stay delivered, jobs in flight are abandoned undelivered
    (a resumed build runs them again). `root` is where relative local-model paths resolve.
    """
    get_litellm()
    await _Run(teachers, on_outcome, root).run(jobs)


class _Run:
    """One `run_jobs`: per teacher a bounded queue that `concurrency` workers drain, filled by
    one feeder, all of them tasks of one TaskGroup. The first error (a fatal failure, an
    unreachable teacher, a bug in `on_outcome`, Ctrl-C) cancels every other task, and is raised
    as itself once they have stopped and the fast path's client is closed."""

    def __init__(self, teachers: dict[str, TeacherPlan], on_outcome: Callable[[Outcome], None], root: Path | None):
        self.teachers = {name: _Teacher(plan, root) for name, plan in teachers.items()}
        self.on_outcome = on_outcome
        self.queues: dict[str, asyncio.Queue] = {}  # per teacher, made on its first job
        self.last: dict[str, Outcome] = {}  # per teacher, the latest outcome
        self.client: FastClient | None = None  # the one fast client, made on first need
        self.group: asyncio.TaskGroup | None = None

    async def run(self, jobs: Iterable[Job] | AsyncIterable[Job]) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self.group = group
                self.start(self.feed(jobs))
        except ExceptionGroup as failed:
            first = failed.exceptions[0]  # the one that stopped the run; the rest followed from it
            raise (first.error if isinstance(first, _Interrupted) else first) from None
        finally:
            if self.client is not None:
                await self.client.close()
        for name, teacher in self.teachers.items():  # fewer jobs than UNREACHABLE_AFTER, and every one lost
            if teacher.ended and teacher.unreachable == teacher.ended:
                raise _unreachable(teacher, self.last[name])

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        self.group.create_task(_interruptible(work))

    async def feed(self, jobs: Iterable[Job] | AsyncIterable[Job]) -> None:
        """Every job into its teacher's queue, then an end marker for each of its workers."""
        if isinstance(jobs, AsyncIterable):
            async for job in jobs:
                await (await self.queue_for(job.teacher)).put(job)
        else:
            for job in jobs:
                await (await self.queue_for(job.teacher)).put(job)
        for name, queue in self.queues.items():
            for _ in range(_slots(self.teachers[name].plan)):
                await queue.put(None)

    async def queue_for(self, name: str) -> asyncio.Queue:
        """The teacher's queue; on its first job the teacher is prepared and its workers started."""
        queue = self.queues.get(name)
        if queue is None:
            teacher = self.teachers.get(name)
            if teacher is None:
                known = ", ".join(sorted(self.teachers)) or "none"
                raise OrcacError(f"a job names teacher {name!r}, which the plan does not declare (known: {known})")
            await teacher.prepare(self.fast_client)
            # Bounded: the feeder stays a few requests per slot ahead of those in flight.
            queue = self.queues[name] = asyncio.Queue(maxsize=4 * _slots(teacher.plan))
            for _ in range(_slots(teacher.plan)):
                self.start(self.work(teacher, queue))
        return queue

    async def work(self, teacher: _Teacher, queue: asyncio.Queue) -> None:
        """One of the teacher's slots: its jobs, one at a time, until the end marker."""
        while (job := await queue.get()) is not None:
            try:
                outcome = await _call(teacher, job)
            except _Fatal as error:
                raise OrcacError(f"{teacher.label()}: {error.what}: {error.detail}", hint=error.hint) from None
            self.on_outcome(outcome)
            self.count(teacher, outcome)

    def count(self, teacher: _Teacher, outcome: Outcome) -> None:
        """Track connection failures in a row: UNREACHABLE_AFTER of them stop the run."""
        teacher.ended += 1
        lost = outcome.reason == "connection_error"
        teacher.unreachable = teacher.unreachable + 1 if lost else 0
        if teacher.unreachable >= UNREACHABLE_AFTER:
            raise _unreachable(teacher, outcome)
        self.last[teacher.plan.name] = outcome

    def fast_client(self) -> FastClient:
        if self.client is None:
            from orcac.runtime.teachers.fast_path import FastClient

            self.client = FastClient(sum(_slots(t.plan) for t in self.teachers.values()))
        return self.client


def _slots(plan: TeacherPlan) -> int:
    """Workers for a teacher: its concurrency, at least one."""
    return max(1, plan.concurrency)


class _Interrupted(Exception):
    """A KeyboardInterrupt or SystemExit raised in a task, carried out as an ordinary error: as
    itself it would escape the event loop past the TaskGroup that cancels the other tasks."""

    def __init__(self, error: BaseException):
        super().__init__(repr(error))
        self.error = error


async def _interruptible(work: Coroutine[Any, Any, None]) -> None:
    try:
        await work
    except (KeyboardInterrupt, SystemExit) as error:
        raise _Interrupted(error) from None
