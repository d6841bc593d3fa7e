"""Several servers behind one teacher: each request goes to the least-loaded `api_base`.

    teacher t { model = "hosted_vllm/Qwen/Qwen2.5-7B-Instruct"
                api_base = ["http://gpu0:8000/v1", "http://gpu1:8000/v1"] }

A user with eight GPUs runs eight vLLM (or SGLang) servers and one build: the servers are
replicas of one model, so a job's id does not depend on which of them answers it
(`jobs.job_id` hashes no api base for a list), and adding a ninth server later reuses
every stored answer. Each request goes to the server with the fewest requests in flight from
this build, ties broken round-robin: with equal servers that is round-robin, and a slow or
stalled server gets fewer new requests instead of an equal share.

Each server is resolved once, like a single-server teacher: litellm's call options and, on
the fast path, a `transport.Route` of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orcac.specs.plan import TeacherPlan


def api_bases(plan: TeacherPlan) -> tuple[str | None, ...]:
    """The teacher's servers: its api_base list, or the one api_base (None: the provider's own).

    >>> api_bases(TeacherPlan(name="t", model="m", api_base=("http://a/v1", "http://b/v1")))
    ('http://a/v1', 'http://b/v1')
    >>> api_bases(TeacherPlan(name="t", model="m"))
    (None,)
    """
    if isinstance(plan.api_base, tuple):
        return plan.api_base
    return (plan.api_base,)


def for_server(plan: TeacherPlan, api_base: str | None) -> TeacherPlan:
    """The teacher as if it had only this server (what litellm and the fast path resolve)."""
    return plan.model_copy(update={"api_base": api_base})


@dataclass
class Endpoint:
    api_base: str | None
    kwargs: dict[str, Any]  # litellm.acompletion's options for this server
    route: Any = None  # transport.Route when this teacher takes the fast path
    in_flight: int = 0
    sent: int = 0


class EndpointPool:
    """Least requests in flight first, then the one chosen longest ago (round-robin on ties).

    >>> pool = EndpointPool([Endpoint("a", {}), Endpoint("b", {})])
    >>> [pool.take().api_base for _ in range(3)]
    ['a', 'b', 'a']
    >>> pool.give(pool.endpoints[0]); pool.give(pool.endpoints[0]); pool.take().api_base
    'a'
    """

    def __init__(self, endpoints: list[Endpoint]):
        self.endpoints = endpoints
        self._turn = 0

    @classmethod
    def resolve(
        cls, plan: TeacherPlan, kwargs: dict[str, Any], route_for: Callable[[TeacherPlan], Any] | None
    ) -> EndpointPool:
        """One Endpoint per api base; `route_for(plan)` gives a fast-path Route, or None for litellm."""
        endpoints = []
        for base in api_bases(plan):
            options = dict(kwargs)
            if base is not None:
                options["api_base"] = base
            endpoints.append(Endpoint(base, options, route_for(for_server(plan, base)) if route_for else None))
        return cls(endpoints)

    def take(self) -> Endpoint:
        if len(self.endpoints) == 1:
            chosen = self.endpoints[0]
        else:
            n = len(self.endpoints)
            order = [self.endpoints[(self._turn + k) % n] for k in range(n)]
            chosen = min(order, key=lambda e: e.in_flight)  # min keeps the first of equals
            self._turn = (self.endpoints.index(chosen) + 1) % n
        chosen.in_flight += 1
        chosen.sent += 1
        return chosen

    def give(self, endpoint: Endpoint) -> None:
        endpoint.in_flight -= 1
