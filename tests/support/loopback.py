"""A loopback OpenAI-compatible server for tests and benchmarks, with latency and fault injection.

    from tests.support.loopback import Loopback

    with Loopback(latency=0.05, script={"q1": ["429:retry_after=1", "ok"]}) as server:
        server.url          # "http://127.0.0.1:<port>/v1": an api_base for litellm ("openai/<any>")
        ...                 # drive it, e.g. through orcac.runtime.teachers.calls.run_jobs
        server.stats()      # {"requests": n, "hits": {key: n}, "log": [[t, key, fault], ...]}

It serves POST /v1/chat/completions and GET /v1/models on 127.0.0.1 at a free port, in a
background thread (default) or, with `process=True`, in a subprocess so it does not compete with
the client for the event loop (benchmarks). Both are started and stopped by the context manager.

The answer is computed from the request by `responder(body) -> str` (default `echo`: the last
user message). `by_system` answers differently per system prompt, for probe-style tests. With
`process=True` the responder must be a module-level function (it is pickled).

Faults are chosen per request, keyed by the request's *key* (`key_of(body)`: the last user
message's content), so concurrent jobs get deterministic behaviour whatever their order:

- `script`: {key: [fault, fault, ...]}: the n-th request with that key gets the n-th fault;
  once the list is used up, "ok".
- `faults`: a fault for every request whose key has no script (default "ok").
- `probabilities`: {fault: p}: after script/faults, a random fault with these probabilities
  (seeded with `seed`; with concurrency the draw order, not the result set, varies).

Fault names (a fault may carry `:name=value` options):
  "ok"                 a normal answer, finish_reason "stop"
  "429"                rate limited; `:retry_after=S` sends Retry-After: S (seconds),
                       `:retry_date=S` sends it as an HTTP-date S seconds ahead
  "500", "502", "503"  server errors (503 also accepts retry_after)
  "401", "403", "404", "400"  client errors with an OpenAI-style error body
  "hang"               accepts the request and sleeps `:s=S` seconds (default 3600) first
  "malformed"          status 200 with a body that is not JSON
  "empty"              status 200, valid JSON, "choices": []
  "length"             the answer cut to `:chars=N` characters (default 3), finish_reason "length"
  "blank"              status 200, a normal answer whose content is "" (finish_reason "stop")
  "huge"               an answer of `:chars=N` characters (default 1,000,000), finish_reason "stop"
  "drop"               closes the connection without an answer
  "vllm_context"       vLLM's 400 for a prompt past the context, in its older top-level body
                       ({"object": "error", "message": ..., "code": 400}); "vllm_400" the same
                       body for another bad request

`latency` (seconds) delays every answer. `capacity` is a number of requests in flight that the
client is not told: a request beyond it gets an immediate 429 (no Retry-After), as an overloaded
provider answers; `stats()["peak"]` is the most that were in flight at once, `["rejected"]` the
429s sent for capacity. `ratelimit` ({header: value}) is added to every answer, e.g.
{"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}; `error_text` is appended to the 401 body's message
(to test that callers neutralise what a provider sends). The authorization header is recorded only as whether
it was present (`stats()["auth"]`); the 401 and 400 bodies quote the key back, as real providers
do, so tests can check that callers scrub it. `clock` (a function returning seconds, default
time.monotonic) stamps the log, so a test that fakes the client's time (tests/support/clock.py)
reads the server's spacing on the same clock; thread mode only.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path

from aiohttp import web

Responder = Callable[[dict], str]


def key_of(body: dict) -> str:
    """The last user message's content: the key that scripts and stats use."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def echo(body: dict) -> str:
    """The last user message, unchanged."""
    return key_of(body)


def by_system(body: dict) -> str:
    """`<system>|<user>`: a different answer for every system prompt."""
    system = next((m.get("content") for m in body.get("messages") or [] if m.get("role") == "system"), "")
    return f"{system}|{key_of(body)}"


def _parse_fault(fault: str) -> tuple[str, dict[str, float]]:
    name, *options = fault.split(":")
    values = {}
    for option in options:
        k, _, v = option.partition("=")
        values[k] = float(v)
    return name, values


def _error(status: int, message: str, kind: str, headers: dict | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
    return web.json_response(body, status=status, headers=headers)


class _Handler:
    def __init__(
        self,
        responder,
        latency,
        script,
        faults,
        probabilities,
        seed,
        capacity=None,
        ratelimit=None,
        error_text="",
        clock=None,
    ):
        self.clock = clock or time.monotonic
        self.capacity = capacity
        self.ratelimit = dict(ratelimit or {})
        self.in_flight = 0
        self.peak = 0
        self.rejected = 0
        self.responder = responder
        self.error_text = error_text
        self.latency = latency
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.faults = faults
        self.probabilities = dict(probabilities or {})
        self.random = random.Random(seed)
        self.hits: Counter[str] = Counter()
        self.log: list[list] = []
        self.auth: Counter[str] = Counter()
        self.requests = 0
        self.started = self.clock()

    def choose(self, key: str) -> str:
        n = self.hits[key]
        self.hits[key] += 1
        steps = self.script.get(key)
        if steps is not None:
            return steps[n] if n < len(steps) else "ok"
        if self.faults != "ok":
            return self.faults
        roll = self.random.random()
        for fault, p in self.probabilities.items():
            if roll < p:
                return fault
            roll -= p
        return "ok"

    async def completions(self, request: web.Request) -> web.StreamResponse:
        if self.capacity is not None and self.in_flight >= self.capacity:
            self.requests += 1
            self.rejected += 1
            return _error(429, "over capacity", "rate_limit_exceeded")
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        raw = await request.read()
        body = json.loads(raw)
        key = key_of(body)
        fault = self.choose(key)
        self.auth["present" if request.headers.get("Authorization") else "absent"] += 1
        self.log.append([round(self.clock() - self.started, 4), key, fault])
        name, options = _parse_fault(fault)
        if self.latency:
            await asyncio.sleep(self.latency)
        if name == "hang":
            await asyncio.sleep(options.get("s", 3600.0))
        if name in ("429", "503"):
            headers = {}
            if "retry_after" in options:
                headers["Retry-After"] = f"{options['retry_after']:g}"
            if "retry_date" in options:
                headers["Retry-After"] = formatdate(time.time() + options["retry_date"], usegmt=True)
            kind = "rate_limit_exceeded" if name == "429" else "server_error"
            return _error(int(name), "injected " + name, kind, headers)
        if name in ("500", "502"):
            return _error(int(name), "injected server error", "server_error")
        # Like real providers, 401 and 400 bodies quote the key they got: callers must scrub it.
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if name == "401":
            return _error(401, f"Incorrect API key provided: {presented}{self.error_text}", "invalid_request_error")
        if name == "403":
            return _error(403, "forbidden", "invalid_request_error")
        if name == "404":
            return _error(404, f"The model {body.get('model')} does not exist", "invalid_request_error")
        if name == "400":
            return _error(400, f"injected bad request (key {presented})", "invalid_request_error")
        if name in ("vllm_context", "vllm_400"):
            message = (
                "This model's maximum context length is 2048 tokens. However, you requested "
                "4100 tokens (3588 in the messages, 512 in the completion)."
                if name == "vllm_context"
                else "temperature must be non-negative"
            )
            body = {"object": "error", "type": "BadRequestError", "param": None, "code": 400, "message": message}
            return web.json_response(body, status=400)
        if name == "malformed":
            return web.Response(status=200, text='{"id": "x", "choices": [', content_type="application/json")
        if name == "drop":
            request.transport.close()
            return web.Response(status=200)
        text = self.responder(body)
        finish = "stop"
        if name == "blank":
            text = ""
        if name == "huge":
            text = "x" * int(options.get("chars", 1_000_000))
        if name == "length":
            text = text[: int(options.get("chars", 3))]
            finish = "length"
        choices = (
            []
            if name == "empty"
            else [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}]
        )
        prompt_chars = sum(len(str(m.get("content") or "")) for m in body.get("messages") or [])
        answer = {
            "id": f"chatcmpl-{self.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "loopback"),
            "choices": choices,
            "usage": {
                "prompt_tokens": max(1, prompt_chars // 4),
                "completion_tokens": max(1, len(text) // 4),
                "total_tokens": max(1, prompt_chars // 4) + max(1, len(text) // 4),
            },
        }
        return web.Response(body=json.dumps(answer).encode(), content_type="application/json", headers=self.ratelimit)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "loopback", "object": "model"}]})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": self.requests,
                "hits": dict(self.hits),
                "log": self.log,
                "auth": dict(self.auth),
                "peak": self.peak,
                "rejected": self.rejected,
            }
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.completions)
        app.router.add_post("/chat/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/_stats", self.stats)
        return app


async def _serve(handler: _Handler, sock: socket.socket, ready, stop: asyncio.Event | None):
    runner = web.AppRunner(handler.app(), access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.SockSite(runner, sock, backlog=4096)
    await site.start()
    ready()
    try:
        if stop is None:
            await asyncio.Event().wait()
        else:
            await stop.wait()
    finally:
        await runner.cleanup()


def _process_main() -> None:
    """Entry of the `process=True` server: options arrive pickled on stdin, the port goes to stdout."""
    try:
        import uvloop  # type: ignore

        uvloop.install()
    except ImportError:
        pass
    options = pickle.loads(sys.stdin.buffer.read())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))

    def ready():
        print(sock.getsockname()[1], flush=True)

    asyncio.run(_serve(_Handler(**options), sock, ready, None))


class Loopback:
    """An OpenAI-compatible server on 127.0.0.1; see the module docstring."""

    def __init__(
        self,
        responder: Responder = echo,
        *,
        latency: float = 0.0,
        script: dict[str, list[str]] | None = None,
        faults: str = "ok",
        probabilities: dict[str, float] | None = None,
        seed: int = 0,
        process: bool = False,
        capacity: int | None = None,
        ratelimit: dict[str, str] | None = None,
        error_text: str = "",
        clock: Callable[[], float] | None = None,
    ):
        self.options = dict(
            responder=responder,
            latency=latency,
            script=script,
            faults=faults,
            probabilities=probabilities,
            seed=seed,
            capacity=capacity,
            ratelimit=ratelimit,
            error_text=error_text,
        )
        if clock is not None:  # the log's times on this clock (tests/support/clock.py); not with process=True
            self.options["clock"] = clock
        self.process = process
        self.handler: _Handler | None = None
        self.port = 0
        self._thread = None
        self._loop = None
        self._stop = None
        self._proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Loopback:
        if self.process:
            # A plain subprocess, not multiprocessing: works from any __main__ (pytest, -c, scripts).
            root = str(Path(__file__).resolve().parents[2])
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
            self._proc = subprocess.Popen(
                [sys.executable, "-c", "from tests.support.loopback import _process_main; _process_main()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                cwd=root,
            )
            self._proc.stdin.write(pickle.dumps(self.options))
            self._proc.stdin.close()
            line = self._proc.stdout.readline()
            if not line.strip():
                self._proc.kill()
                raise RuntimeError("loopback server process did not start")
            self.port = int(line)
            return self
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.handler = _Handler(**self.options)
        started = threading.Event()

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._stop = asyncio.Event()
            loop.run_until_complete(_serve(self.handler, sock, started.set, self._stop))
            leftovers = asyncio.all_tasks(loop)  # handlers still hanging on purpose
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="loopback-server", daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("loopback server thread did not start")
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc.stdout.close()
            self._proc = None
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
            self._thread = None

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_stats", timeout=10) as response:
            return json.loads(response.read())

    def __enter__(self) -> Loopback:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
