"""A loopback OpenAI Files + Batches API for tests and benchmarks: /v1/files and /v1/batches.

    from tests.support.batch_server import BatchServer

    with BatchServer(ends=["completed", "expired"]) as server:
        server.url        # an api_base for litellm ("openai/<any>"): files and batches go here
        server.stats()    # {"files": n, "batches": [{"id", "lines", "status", ...}], "retrieves": n, ...}

Each batch moves one state per retrieve (GET /v1/batches/{id}): validating -> in_progress ->
finalizing -> its end, which is the n-th entry of `ends` for the n-th batch created (then
"completed"): "completed", "failed" (the input is rejected: no output, `errors` set), "expired"
(only the first `expired_share` of its lines are answered) or "cancelled" (after POST
/v1/batches/{id}/cancel, through "cancelling"; lines answered before it stay answered, like
OpenAI's partial results). `steps` is how many retrieves a batch spends before finalizing
(default 1 per state); `hold=True` keeps batches in_progress until `release()`.

The answer to a line is `responder(body)`, as in the chat loopback (default: the last user
message, echoed).
A user message starting with "line-error" gets a per-line error in the error file (status 400),
one starting with "line-5xx" a 500 there, and one starting with "missing" appears in neither file.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
import urllib.request
from collections import Counter

from aiohttp import web

from tests.support.loopback import echo, key_of

FLOW = ("validating", "in_progress", "finalizing")
TERMINAL = ("completed", "failed", "expired", "cancelled")


def _answer(custom_id: str, body: dict, n: int, responder=echo) -> tuple[str, dict]:
    """('ok' | 'error' | 'missing', the output or error line for one request)."""
    key = key_of(body)
    if key.startswith("missing"):
        return "missing", {}
    if key.startswith("line-error") or key.startswith("line-5xx"):
        status = 400 if key.startswith("line-error") else 500
        error = {"error": {"message": f"injected line error {status}", "type": "invalid_request_error", "code": None}}
        return "error", {
            "id": f"batch_req_{n}",
            "custom_id": custom_id,
            "response": {"status_code": status, "request_id": f"req_{n}", "body": error},
            "error": None,
        }
    prompt_chars = sum(len(str(m.get("content") or "")) for m in body.get("messages") or [])
    text = responder(body)
    completion = {
        "id": f"chatcmpl-b{n}",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "loopback"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": max(1, prompt_chars // 4),
            "completion_tokens": max(1, len(text) // 4),
            "total_tokens": max(1, prompt_chars // 4) + max(1, len(text) // 4),
        },
    }
    return "ok", {
        "id": f"batch_req_{n}",
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": f"req_{n}", "body": completion},
        "error": None,
    }


class _Batches:
    def __init__(self, ends, expired_share, steps, hold, responder=echo):
        self.responder = responder
        self.ends = list(ends or [])
        self.expired_share = expired_share
        self.steps = steps
        self.hold = hold
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.counts: Counter[str] = Counter()
        self.lines_seen: Counter[str] = Counter()  # custom_id -> times submitted in any batch

    # ---- files ----------------------------------------------------------------------------

    def _file(self, data: bytes, purpose: str, name: str) -> dict:
        file_id = f"file-{len(self.files) + 1}"
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": name,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[file_id] = {"object": obj, "data": data}
        return obj

    async def create_file(self, request: web.Request) -> web.Response:
        self.counts["file_uploads"] += 1
        reader = await request.multipart()
        purpose, data, name = "batch", b"", "upload.jsonl"
        async for part in reader:
            if part.name == "purpose":
                purpose = (await part.read()).decode()
            elif part.name == "file":
                name = part.filename or name
                data = bytes(await part.read())
        return web.json_response(self._file(data, purpose, name))

    async def file(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["file_id"])
        if found is None:
            return web.json_response(
                {"error": {"message": "no such file", "type": "invalid_request_error"}}, status=404
            )
        return web.json_response(found["object"])

    async def file_content(self, request: web.Request) -> web.Response:
        self.counts["downloads"] += 1
        found = self.files.get(request.match_info["file_id"])
        if found is None:
            return web.json_response(
                {"error": {"message": "no such file", "type": "invalid_request_error"}}, status=404
            )
        return web.Response(body=found["data"], content_type="application/octet-stream")

    # ---- batches -------------------------------------------------------------------------

    def _public(self, batch: dict) -> dict:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    async def create_batch(self, request: web.Request) -> web.Response:
        self.counts["batches_created"] += 1
        body = await request.json()
        source = self.files.get(body.get("input_file_id"))
        if source is None:
            return web.json_response(
                {"error": {"message": "no such input file", "type": "invalid_request_error"}}, status=400
            )
        lines = [json.loads(line) for line in source["data"].splitlines() if line.strip()]
        for line in lines:
            self.lines_seen[line["custom_id"]] += 1
        n = len(self.batches) + 1
        batch_id = f"batch_{n}"
        end = self.ends[n - 1] if n - 1 < len(self.ends) else "completed"
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(time.time()),
            "in_progress_at": None,
            "expires_at": None,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
            "_lines": lines,
            "_end": end,
            "_polls": 0,
        }
        self.batches[batch_id] = batch
        return web.json_response(self._public(batch))

    def _finish(self, batch: dict, end: str) -> None:
        lines = batch["_lines"]
        if end == "failed":
            batch["errors"] = {
                "object": "list",
                "data": [
                    {"code": "invalid_file", "message": "injected: the input was rejected", "param": None, "line": None}
                ],
            }
            batch["request_counts"] = {"total": len(lines), "completed": 0, "failed": 0}
        else:
            answered = lines
            if end == "expired":
                answered = lines[: int(len(lines) * self.expired_share)]
            elif end == "cancelled":
                answered = lines[: batch.get("_answered_before_cancel", len(lines) // 2)]
            out, err = [], []
            for k, line in enumerate(answered):
                kind, record = _answer(line["custom_id"], line.get("body") or {}, k, self.responder)
                if kind == "ok":
                    out.append(record)
                elif kind == "error":
                    err.append(record)
            if out:
                data = "".join(json.dumps(r) + "\n" for r in out).encode()
                batch["output_file_id"] = self._file(data, "batch_output", "output.jsonl")["id"]
            if err:
                data = "".join(json.dumps(r) + "\n" for r in err).encode()
                batch["error_file_id"] = self._file(data, "batch_output", "errors.jsonl")["id"]
            batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
        batch["status"] = end
        batch[f"{end}_at"] = int(time.time())

    async def retrieve(self, request: web.Request) -> web.Response:
        self.counts["retrieves"] += 1
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return web.json_response(
                {"error": {"message": "no such batch", "type": "invalid_request_error"}}, status=404
            )
        status = batch["status"]
        if status == "cancelling":
            self._finish(batch, "cancelled")
        elif status not in TERMINAL:
            batch["_polls"] += 1
            if status == "in_progress" and self.hold:
                pass
            elif batch["_polls"] >= self.steps:
                batch["_polls"] = 0
                position = FLOW.index(status)
                if batch["_end"] == "failed" and status == "validating":
                    self._finish(batch, "failed")
                elif position + 1 < len(FLOW):
                    batch["status"] = FLOW[position + 1]
                    if batch["status"] == "in_progress":
                        batch["in_progress_at"] = int(time.time())
                        done = len(batch["_lines"]) // 2
                        batch["request_counts"] = {"total": len(batch["_lines"]), "completed": done, "failed": 0}
                else:
                    self._finish(batch, batch["_end"])
        return web.json_response(self._public(batch))

    async def cancel(self, request: web.Request) -> web.Response:
        self.counts["cancels"] += 1
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None:
            return web.json_response(
                {"error": {"message": "no such batch", "type": "invalid_request_error"}}, status=404
            )
        if batch["status"] not in TERMINAL:
            batch["_answered_before_cancel"] = len(batch["_lines"]) // 2 if batch["status"] != "validating" else 0
            batch["status"] = "cancelling"
            batch["cancelling_at"] = int(time.time())
        return web.json_response(self._public(batch))

    async def list_batches(self, request: web.Request) -> web.Response:
        data = [self._public(b) for b in reversed(self.batches.values())]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": False,
            }
        )

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                **self.counts,
                "batches": [
                    {
                        "id": b["id"],
                        "status": b["status"],
                        "lines": len(b["_lines"]),
                        "custom_ids": [line["custom_id"] for line in b["_lines"]],
                    }
                    for b in self.batches.values()
                ],
                "lines_seen": dict(self.lines_seen),
            }
        )

    async def release(self, request: web.Request) -> web.Response:
        self.hold = False
        return web.json_response({})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=512 * 1024 * 1024)
        for prefix in ("/v1", ""):
            app.router.add_post(f"{prefix}/files", self.create_file)
            app.router.add_get(f"{prefix}/files/{{file_id}}", self.file)
            app.router.add_get(f"{prefix}/files/{{file_id}}/content", self.file_content)
            app.router.add_post(f"{prefix}/batches", self.create_batch)
            app.router.add_get(f"{prefix}/batches", self.list_batches)
            app.router.add_get(f"{prefix}/batches/{{batch_id}}", self.retrieve)
            app.router.add_post(f"{prefix}/batches/{{batch_id}}/cancel", self.cancel)
        app.router.add_get("/_stats", self.stats)
        app.router.add_post("/_release", self.release)
        return app


class BatchServer:
    """The files and batches API on 127.0.0.1 in a background thread; see the module docstring."""

    def __init__(
        self,
        responder=echo,
        *,
        ends: list[str] | None = None,
        expired_share: float = 0.5,
        steps: int = 1,
        hold: bool = False,
    ):
        self.handler = _Batches(ends, expired_share, steps, hold, responder)
        self.port = 0
        self._thread = None
        self._loop = None
        self._stop = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> BatchServer:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        started = threading.Event()

        async def serve():
            runner = web.AppRunner(self.handler.app(), access_log=None, handle_signals=False, shutdown_timeout=0.5)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            started.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._stop = asyncio.Event()
            loop.run_until_complete(serve())
            loop.close()

        self._thread = threading.Thread(target=run, name="batch-server", daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("batch server thread did not start")
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
            self._thread = None

    def _call(self, method: str, path: str) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        return self._call("GET", "/_stats")

    def release(self) -> None:
        """Let batches held in_progress (hold=True) move on."""
        self._call("POST", "/_release")

    def __enter__(self) -> BatchServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_until_stdin_closes() -> None:
    """Entry of a server in its own process (benchmarks): prints the port, serves until stdin closes."""
    server = BatchServer().start()
    print(server.port, flush=True)
    sys.stdin.read()
    server.stop()
