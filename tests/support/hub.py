"""A loopback Hugging Face Hub for tests: the part of the Hub's HTTP API that huggingface_hub's
`HfApi.dataset_info` and `hf_hub_download` call, for datasets held in memory.

    from tests.support.hub import LoopbackHub

    with LoopbackHub() as hub:
        first = hub.commit("acme/quiz", {"README.md": b"...", "data/train.jsonl": b"..."})
        hub.commit("acme/quiz", {...})       # a second commit: main moves to it
        hub.tag("acme/quiz", "v1", first)    # a tag (or any branch) at a commit
        hub.gate("acme/quiz", token="hf_x")  # files need `Authorization: Bearer hf_x`
        env = hub.env(tmp_path)              # HF_ENDPOINT, a fresh HF_HOME, HF_HUB_OFFLINE=0
        hub.requests                         # [(method, path), ...]

Served on 127.0.0.1 at a free port in a background thread:
  GET  /api/datasets/{repo}[/revision/{rev}]     the dataset's info: sha (the commit), siblings
  HEAD /datasets/{repo}/resolve/{rev}/{file}     X-Repo-Commit, ETag, Content-Length
  GET  /datasets/{repo}/resolve/{rev}/{file}     the file's bytes
Unknown repos, revisions and files answer 404 with the Hub's X-Error-Code (RepoNotFound,
RevisionNotFound, EntryNotFound); a gated repo's files answer 401 with X-Error-Code GatedRepo
without the right token (its info stays public, as on the Hub).
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class LoopbackHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []

    # ---- content -------------------------------------------------------------------------------

    def commit(self, repo: str, files: dict[str, bytes], *, branch: str = "main") -> str:
        """A new commit holding exactly `files`; `branch` moves to it. Returns its 40-hex id."""
        r = self.repos.setdefault(repo, {"refs": {}, "commits": {}, "token": None})
        sha = hashlib.sha1(
            json.dumps([repo, len(r["commits"]), sorted((k, v.hex()) for k, v in files.items())]).encode()
        ).hexdigest()
        r["commits"][sha] = dict(files)
        r["refs"][branch] = sha
        return sha

    def tag(self, repo: str, name: str, commit: str) -> None:
        self.repos[repo]["refs"][name] = commit

    def gate(self, repo: str, *, token: str) -> None:
        self.repos[repo]["token"] = token

    def env(self, tmp: Path) -> dict[str, str]:
        """Environment variables that point huggingface_hub here, with a cache of its own."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_HOME": str(tmp / "hf-home"),
            "HF_HUB_CACHE": str(tmp / "hf-home" / "hub"),
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_ETAG_TIMEOUT": "5",
            "HF_HUB_DOWNLOAD_TIMEOUT": "5",
        }

    # ---- server --------------------------------------------------------------------------------

    def __enter__(self) -> LoopbackHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                hub._answer(self, head=False)

            def do_HEAD(self):
                hub._answer(self, head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _commit_of(self, r: dict, rev: str) -> str | None:
        return r["refs"].get(rev) or (rev if rev in r["commits"] else None)

    def _answer(self, h: BaseHTTPRequestHandler, *, head: bool) -> None:
        path = urlsplit(h.path).path
        self.requests.append((h.command, path))
        parts = [unquote(p) for p in path.strip("/").split("/")]

        def send(status: int, body: bytes = b"", headers: dict | None = None) -> None:
            h.send_response(status)
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if not head:
                h.wfile.write(body)

        def error(status: int, code: str, message: str) -> None:
            send(
                status,
                json.dumps({"error": message}).encode(),
                {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"},
            )

        if parts[:2] == ["api", "datasets"] and len(parts) >= 4:
            repo = "/".join(parts[2:4])
            rev = parts[5] if len(parts) >= 6 and parts[4] == "revision" else "main"
            r = self.repos.get(repo)
            if r is None:
                return error(404, "RepoNotFound", f"Repository Not Found for url: {path}")
            sha = self._commit_of(r, rev)
            if sha is None:
                return error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            files = r["commits"][sha]
            info = {
                "id": repo,
                "_id": repo,
                "author": repo.split("/")[0],
                "sha": sha,
                "private": False,
                "gated": "manual" if r["token"] else False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": [{"rfilename": n, "size": len(b)} for n, b in sorted(files.items())],
            }
            return send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})
        if parts[:1] == ["datasets"] and len(parts) >= 6 and parts[3] == "resolve":
            repo, rev, name = "/".join(parts[1:3]), parts[4], "/".join(parts[5:])
            r = self.repos.get(repo)
            if r is None:
                return error(404, "RepoNotFound", "Repository Not Found")
            if r["token"] and h.headers.get("Authorization") != f"Bearer {r['token']}":
                return error(
                    401,
                    "GatedRepo",
                    f"Access to dataset {repo} is restricted. You must have access to it and be authenticated to access it.",
                )
            sha = self._commit_of(r, rev)
            if sha is None:
                return error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            body = r["commits"][sha].get(name)
            if body is None:
                return error(404, "EntryNotFound", f"{name} does not exist at {rev}")
            etag = hashlib.sha256(body).hexdigest()
            return send(
                200, body, {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}
            )
        error(404, "RepoNotFound", f"not served here: {path}")


def seed_cache(
    cache: Path, repo: str, files: dict[str, bytes], *, commit: str = "0" * 39 + "1", ref: str = "main"
) -> str:
    """Write `files` into a Hugging Face hub cache folder as huggingface_hub lays it out
    (`datasets--org--name/refs/<ref>`, `snapshots/<commit>/<file>`), for tests that read a
    cached dataset offline without any server."""
    folder = cache / ("datasets--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / ref).write_text(commit)
    for name, body in files.items():
        p = folder / "snapshots" / commit / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body)
    return commit
