"""The fast path for OpenAI-compatible teachers: litellm resolves once, aiohttp sends every request.

    route = resolve(plan)          # a Route, or a str saying why this teacher stays on litellm
    client = FastClient(limit)     # one aiohttp session for the run, made on the running loop
    text, finish, prompt_tokens, completion_tokens, model = await client.send(route, messages, key)
    await client.close()

Why: `litellm.acompletion` spends about 4 ms of CPU on every call (the OpenAI SDK's request
transform, a cost calculation, argument deep copies, logging objects), so one core tops out
near 250 calls/s while a plain aiohttp client does ten times that (BENCHMARKS.md). For a
teacher whose requests litellm would send unchanged in the OpenAI chat-completions format,
everything litellm decides is decided once per teacher here, from litellm itself:

- `litellm.get_llm_provider` gives the provider, the model name it sends and the api base;
- the provider's chat config (`ProviderConfigManager`) must be OpenAI's own, with the request
  and response transforms not overridden, and it must leave plain string messages unchanged
  (tried once on a probe conversation);
- `litellm.utils.get_optional_params` maps the sampling parameters (e.g. `max_tokens` becomes
  `max_completion_tokens` for o-series models, unsupported ones are dropped) into the body.

Anything else (anthropic, bedrock, vertex, `local/...`, a provider with its own transforms, a
teacher whose key litellm would have to find) stays on `litellm.acompletion`, as does every
teacher with `transport: litellm` in its plan.

Failures are raised as exceptions that `teachers._classify` sorts exactly as it sorts
litellm's: `HTTPStatusError` carries `status_code` and `headers` (401/403/404/429/400/5xx),
a dropped or refused connection is a `ConnectionError`, a body that is not an answer is a
`ValueError`; timeouts are the caller's (`asyncio.timeout` around `send`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from orcac.runtime.teachers.jobs import request_params
from orcac.specs.plan import TeacherPlan

try:  # about 3x faster than json on these small bodies; optional
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

    _loads = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    _loads = json.loads

# A conversation that litellm must pass through unchanged for a provider to take the fast path.
_PROBE = [
    {"role": "system", "content": "s"},
    {"role": "user", "content": "u"},
    {"role": "assistant", "content": "a"},
    {"role": "user", "content": "u2"},
]


@dataclass(frozen=True)
class Route:
    """Everything per teacher that a fast request needs, resolved once."""

    provider: str
    url: str  # <api base>/chat/completions
    body: dict[str, Any]  # the request body without "messages"
    fallback_key: str | None  # what litellm would use when the plan names no key variable
    proxy: str | None = None  # from HTTP(S)_PROXY / NO_PROXY, as the OpenAI SDK's httpx honours them


class HTTPStatusError(Exception):
    """A non-2xx answer; `teachers._classify` reads `status_code` and `headers` like litellm's errors."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str]):
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.headers = headers


def _openai_api_base(litellm) -> str:
    # Mirrors litellm.main for provider "openai" without an explicit api_base.
    return (
        litellm.api_base
        or os.environ.get("OPENAI_BASE_URL")
        or os.environ.get("OPENAI_API_BASE")
        or "https://api.openai.com/v1"
    )


def resolve(plan: TeacherPlan, litellm) -> Route | str:
    """The fast Route for this teacher, or why it stays on litellm (a short phrase)."""
    if getattr(plan, "transport", "auto") == "litellm":
        return "transport: litellm in the plan"
    if plan.model.startswith("local/"):
        return "in-process local teacher"
    try:
        model, provider, dynamic_key, dynamic_base = litellm.get_llm_provider(plan.model, api_base=plan.api_base)
    except Exception:  # noqa: BLE001 - the litellm path reports unknown providers in its own words
        return "provider not resolved"
    if provider != "openai" and provider not in litellm.openai_compatible_providers:
        return f"provider {provider} has its own wire format"
    try:
        from litellm.llms.openai.chat.gpt_transformation import OpenAIGPTConfig
        from litellm.utils import ProviderConfigManager, get_optional_params

        config = ProviderConfigManager.get_provider_chat_config(model, litellm.LlmProviders(provider))
    except Exception:  # noqa: BLE001 - a litellm without these internals: stay on its public path
        return "litellm internals not found"
    kind = type(config)
    if not isinstance(config, OpenAIGPTConfig) or any(
        getattr(kind, name) is not getattr(OpenAIGPTConfig, name)
        for name in ("transform_request", "transform_response")
    ):
        return f"provider {provider} transforms requests or responses"
    try:
        probe = [dict(m) for m in _PROBE]
        if config._transform_messages(probe, model) != _PROBE:
            return f"provider {provider} rewrites messages"
    except Exception:  # noqa: BLE001
        return f"provider {provider} rewrites messages"
    api_base = plan.api_base or dynamic_base
    if api_base is None and provider == "openai":
        api_base = _openai_api_base(litellm)
    if not api_base:
        return "no api base"
    fallback_key = dynamic_key or (os.environ.get("OPENAI_API_KEY") if provider == "openai" else None)
    if not plan.api_key_env and not fallback_key:
        return "no key to send"
    try:
        params = get_optional_params(
            model=model, custom_llm_provider=provider, drop_params=True, **request_params(plan)
        )
    except Exception:  # noqa: BLE001 - e.g. a parameter litellm rejects: let its path say so per job
        return "parameters not mapped"
    body: dict[str, Any] = {"model": model}
    extra = params.pop("extra_body", None) or {}
    params.pop("stream", None)  # never streamed; the SDK would send stream=false, the default
    body.update(params)
    body.update(extra)  # the SDK merges extra_body into the JSON body
    url = api_base.rstrip("/") + "/chat/completions"
    return Route(provider=provider, url=url, body=body, fallback_key=fallback_key, proxy=_proxy_for(url))


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for this URL, looked up once: aiohttp's `trust_env`
    would look it up on every request in a thread pool (measured: +140 us CPU per request)."""
    from urllib.parse import urlsplit
    from urllib.request import getproxies, proxy_bypass

    parts = urlsplit(url)
    proxy = getproxies().get(parts.scheme)
    if not proxy or proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def _error_message(raw: bytes) -> str:
    try:
        data = _loads(raw)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if isinstance(data, dict) and data.get("object") == "error" and data.get("message"):
            return str(data["message"])  # vLLM before 0.9 and SGLang: the error at the top level
    except ValueError:
        pass
    return raw[:300].decode("utf-8", "replace") or "no body"


class FastClient:
    """One aiohttp session for a run (pool sized to the fast teachers' concurrency)."""

    def __init__(self, limit: int):
        import aiohttp

        from orcac.runtime.teachers.litellm_setup import get_litellm

        self._aiohttp = aiohttp
        self._connection_errors = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(1, limit), ttl_dns_cache=300),
            # The caller's asyncio.timeout bounds each attempt; aiohttp's own would be a second clock.
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent",),
        )
        from litellm.litellm_core_utils.core_helpers import map_finish_reason

        get_litellm()
        self._finish = map_finish_reason  # litellm normalises provider finish reasons the same way
        self._headers: tuple[str | None, dict[str, str]] = (None, {})

    def _headers_for(self, key: str | None) -> dict[str, str]:
        cached_key, headers = self._headers
        if cached_key != key or not headers:
            headers = {"Content-Type": "application/json"}
            if key:
                headers["Authorization"] = f"Bearer {key}"
            self._headers = (key, headers)
        return headers

    async def send(
        self,
        route: Route,
        messages: tuple[dict, ...] | list[dict],
        key: str | None,
        options: tuple = (),
        ratelimit: dict[str, str] | None = None,
    ) -> tuple[str, str | None, int, int, str | None]:
        """(text, finish_reason, prompt_tokens, completion_tokens, model), or raises (see module doc).

        `options`: (name, value) pairs of this request that override the route's (a job's
        temperature or seed; standard OpenAI parameters, so no mapping is needed).
        `ratelimit`, when given, receives the answer's x-ratelimit-* headers (lower-cased)."""
        body = dict(route.body)
        body.update(options)
        body["messages"] = messages  # a tuple serialises as a JSON array, no copy needed
        data = _dumps(body)
        try:
            async with self.session.post(
                route.url, data=data, headers=self._headers_for(key), proxy=route.proxy
            ) as response:
                raw = await response.read()
                status = response.status
                if status >= 400:
                    raise HTTPStatusError(status, _error_message(raw), dict(response.headers))
                if ratelimit is not None:
                    ratelimit.update(
                        (k.lower(), v) for k, v in response.headers.items() if k.lower().startswith("x-ratelimit-")
                    )
        except self._connection_errors as error:
            raise ConnectionError(f"Connection error: {type(error).__name__}: {error}") from None
        answer = _loads(raw)  # a JSONDecodeError (a ValueError) is a bad_response
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not choices:
            raise ValueError("the response has no choices")
        choice = choices[0]
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if text is None:
            raise ValueError("the response's first choice has no message content")
        usage = answer.get("usage") or {}
        finish = choice.get("finish_reason")
        return (
            str(text),
            self._finish(finish) if finish is not None else None,
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            answer.get("model"),
        )

    async def close(self) -> None:
        await self.session.close()
