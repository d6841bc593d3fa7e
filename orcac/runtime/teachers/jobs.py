"""A teacher job and what became of it: the request, its content address, its outcome.

A job is content-addressed (`job_id`): the same request, wherever it comes from (the build,
a probe, eval's prompted arm), has the same id, so an answer stored under it is never paid
for twice. Its `family` is the same hash without `max_tokens`: the jobs of one request under
different limits, whose answers that stopped short of a limit are each other's
(orcac/runtime/commands/build_records/reuse.py). A failure carries its `FailReason` (`Outcome.reason`) beside the one-line `error` it begins.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from orcac.specs import settings
from orcac.specs.plan import TeacherPlan

FailReason = Literal[
    "rate_limited",
    "server_error",
    "timeout",
    "connection_error",
    "bad_response",
    "bad_request",
    # a batch teacher's (orcac/runtime/teachers/batch.py): a job its output files do not hold,
    # or the whole batch ended without answering
    "missing",
    "batch_failed",
    "batch_expired",
    "batch_cancelled",
]


@dataclass(frozen=True)
class Job:
    """One teacher request. `id` is `job_id(teacher_plan, messages, options)`."""

    id: str
    teacher: str  # TeacherPlan.name (the key in the plan's `teachers`)
    messages: tuple[dict, ...]
    # Request parameters of this job that override the teacher's, as sorted (name, value)
    # pairs: a task's own temperature, a sample's seed (see sampling_options).
    options: tuple[tuple[str, Any], ...] = ()
    family: str = ""  # `family_id`: this request under any max_tokens ("" for a job made by hand)


@dataclass(frozen=True)
class Outcome:
    """What became of one job: an answer (`ok`) or a final failure with a one-line reason."""

    job_id: str
    status: Literal["ok", "failed"]
    text: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: float
    latency_s: float  # of the successful (or last) attempt, not counting backoff
    model: str | None
    attempts: int
    error: str | None  # "<reason>: <detail>", scrubbed of keys: what the user is shown and the jobs table keeps
    reason: FailReason | None = None  # a failed job's reason (None when ok): what tallies count by

    # Made by name, never by position: twelve fields in a row are easy to shift by one.

    @classmethod
    def answered(
        cls,
        job_id: str,
        text: str,
        *,
        finish_reason: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float,
        model: str | None,
        attempts: int,
        latency_s: float = 0.0,
    ) -> Outcome:
        """A teacher's answer (a batch's answer has no latency of its own: 0)."""
        return cls(
            job_id=job_id,
            status="ok",
            text=text,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=cost,
            latency_s=latency_s,
            model=model,
            attempts=attempts,
            error=None,
        )

    @classmethod
    def failed(cls, job_id: str, reason: FailReason, detail: str, *, attempts: int, latency_s: float = 0.0) -> Outcome:
        """A final failure: `error` is "<reason>: <detail>" (just the reason without a detail).

        >>> Outcome.failed("j", "timeout", "no answer in 60 s", attempts=3).error
        'timeout: no answer in 60 s'
        """
        return cls(
            job_id=job_id,
            status="failed",
            text=None,
            finish_reason=None,
            prompt_tokens=0,
            completion_tokens=0,
            cost=0.0,
            latency_s=latency_s,
            model=None,
            attempts=attempts,
            error=f"{reason}: {detail}" if detail else reason,
            reason=reason,
        )

    @classmethod
    def reused(
        cls,
        job_id: str,
        text: str,
        *,
        finish_reason: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        model: str | None,
    ) -> Outcome:
        """An answer already paid for (the answer cache, another max_tokens): no attempt, no cost."""
        return cls.answered(
            job_id,
            text,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=0.0,
            model=model,
            attempts=0,
        )


def job_id(teacher: TeacherPlan, messages: Iterable[dict], options: Iterable[tuple[str, Any]] = ()) -> str:
    """sha256 over what determines the answer; not keys, limits, timeouts or retries.

    >>> t = TeacherPlan(name="t", model="openai/gpt-4o-mini")
    >>> a = job_id(t, [{"role": "user", "content": "hi"}])
    >>> a == job_id(t.model_copy(update={"concurrency": 3, "api_key_env": "K"}), [{"role": "user", "content": "hi"}])
    True
    >>> a == job_id(t.model_copy(update={"temperature": 0.5}), [{"role": "user", "content": "hi"}])
    False
    """
    return _sha256(_payload(teacher, messages, options))


# The one key that limits an answer without changing it: an answer that stopped before it
# would have been the same under any larger limit.
LIMIT_KEY = "max_tokens"


def family_id(teacher: TeacherPlan, messages: Iterable[dict], options: Iterable[tuple[str, Any]] = ()) -> str:
    """`job_id` without max_tokens: the same request under any limit.

    >>> t = TeacherPlan(name="t", model="openai/gpt-4o-mini", max_tokens=64)
    >>> m = [{"role": "user", "content": "hi"}]
    >>> family_id(t, m) == family_id(t.model_copy(update={"max_tokens": 128}), m), job_id(t, m) == family_id(t, m)
    (True, False)
    >>> family_id(t, m) == family_id(t.model_copy(update={"temperature": 0.5}), m)
    False
    """
    payload = _payload(teacher, messages, options)
    del payload[LIMIT_KEY]
    payload.get("options", {}).pop(LIMIT_KEY, None)  # eval's prompted arm sets its own
    return _sha256({"family": payload})


def request_params(teacher: TeacherPlan) -> dict[str, Any]:
    """The parameters every request of this teacher carries besides its model and messages:
    temperature, max_tokens, top_p and seed where set, then the plan's `params` (which win).
    The one builder for the three ways a request is sent: litellm's keyword arguments
    (teachers/calls.py), the fast path's body, mapped by litellm once (fast_path.py), and a
    batch file's lines (batch.py). A job's own options override them per request.

    >>> request_params(TeacherPlan(name="t", model="m", max_tokens=64, seed=7, params={"stop": "##"}))
    {'temperature': 0.0, 'max_tokens': 64, 'seed': 7, 'stop': '##'}
    """
    params: dict[str, Any] = {"temperature": teacher.temperature, LIMIT_KEY: teacher.max_tokens}
    if teacher.top_p is not None:
        params["top_p"] = teacher.top_p
    if teacher.seed is not None:
        params["seed"] = teacher.seed
    params.update(teacher.params)
    return params


def job_limit(teacher: TeacherPlan, job: Job) -> int:
    """The max_tokens `job` is asked under: its own (eval's prompted arm sets one), else its teacher's."""
    return int(dict(job.options).get(LIMIT_KEY, teacher.max_tokens))


def _sha256(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _payload(teacher: TeacherPlan, messages: Iterable[dict], options: Iterable[tuple[str, Any]]) -> dict:
    payload = {
        **{key.plan_name: getattr(teacher, key.plan_name) for key in settings.answer_keys()},
        "api_base": settings.answer_api_base(teacher.api_base),
        "messages": [dict(m) for m in messages],
        "params": dict(teacher.params),
    }
    options = dict(options)
    if options:  # only then, so that the ids of jobs without options never move
        payload["options"] = options
    return payload


def make_job(teacher: TeacherPlan, messages: Iterable[dict], options: dict[str, Any] | None = None) -> Job:
    messages = tuple(dict(m) for m in messages)
    pairs = tuple(sorted((options or {}).items()))
    return Job(job_id(teacher, messages, pairs), teacher.name, messages, pairs, family_id(teacher, messages, pairs))
