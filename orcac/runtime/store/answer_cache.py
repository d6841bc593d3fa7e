"""The machine's answer cache: every teacher answer by its job id, paid for once across specs.

    cache = AnswerCache.open()            # None when off (ORCAC_ANSWER_CACHE=off, --no-cache)
    cache.get(job_ids)                    # {job_id: Answer}, each checked against its own id
    cache.put([Answer.of(outcome, job, max_tokens)])

A job id is the sha256 of everything that determines an answer (orcac/runtime/teachers/jobs.py),
so an answer stored under it is the answer to that request whichever spec, database or
directory asked it. A build copies the answers it finds here into its own database
(`responses.origin = 'cache'`), so each spec's database still holds everything its build used,
and every answer it is given by a teacher goes in here too. Only answers: never a failure,
never a key (a job id hashes no key, and the answer is the teacher's text).

Where: `answers.sqlite3` in orcac's cache folder (`model_cache()` in
orcac/runtime/models/loading.py, beside the dequantised GGUF models), or in the folder
ORCAC_ANSWER_CACHE names; `ORCAC_ANSWER_CACHE=off` (or `orcac build --no-cache`) turns it off.

Why SQLite (the standard library's), not DuckDB or a file per answer: DuckDB lets one process
at a time write a file, and a build holds its own database for the whole run, so two builds
on one machine could not share a DuckDB cache. SQLite takes a lock per transaction: each
build writes its answers in short transactions (one per flush) and waits for the other's
(`BUSY_TIMEOUT_S`) instead of failing. In WAL mode readers never wait for a writer. A commit
is atomic, so a build killed with -9 leaves every committed answer and none half-written
(the same promise as the build's database). A file per answer would need no locks, but
pruning by model or age would open every file, and 100,000 answers are 100,000 inodes.

WAL needs every process on one host (its index lives in shared memory), so on a network
filesystem (NFS, SMB, sshfs...: `network_filesystem`) the cache uses SQLite's rollback
journal instead, which is as safe as the filesystem's locks are (README, "One answer cache").

Every answer carries a digest of its job id, family, limit, text and finish reason; one that
does not match (a row edited by hand, a damaged page) is ignored and asked again, never
handed to another job. A cache that cannot be opened (unreadable, a newer format, a
read-only folder) is a one-line note and a build without it, never a failed build.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from orcac.errors import OrcacError, printable
from orcac.runtime.models.loading import model_cache
from orcac.runtime.store.schema import ANSWER_CACHE as _SCHEMA
from orcac.runtime.store.schema import ANSWER_CACHE_FORMAT as FORMAT

ENV = "ORCAC_ANSWER_CACHE"  # off, or the folder that holds the cache (default: model_cache())
FILE = "answers.sqlite3"
BUSY_TIMEOUT_S = 60.0  # how long a write waits for another process's transaction
OFF = {"off", "0", "false", "no", "none"}
_CHUNK = 900  # ids per query: under SQLite's host-parameter limit on every version

# Filesystems on which processes of several hosts may share the file: no WAL there.
NETWORK_FILESYSTEMS = {
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "fuse.sshfs",
    "9p",
    "afs",
    "ceph",
    "glusterfs",
    "fuse.glusterfs",
    "lustre",
    "gpfs",
    "beegfs",
    "fuse.s3fs",
    "fuse.gcsfuse",
}

_COLUMNS = (
    "job_id",
    "family",
    "model",
    "max_tokens",
    "text",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "answer_model",
)


def location(*, enabled: bool = True) -> Path | None:
    """The cache file, or None when it is off (`enabled` False: --no-cache; or ORCAC_ANSWER_CACHE=off)."""
    value = os.environ.get(ENV, "").strip()
    if not enabled or value.lower() in OFF:
        return None
    return (Path(value).expanduser() if value else model_cache()) / FILE


def network_filesystem(path: Path, mounts: str | None = None) -> bool:
    """Whether `path` is on a filesystem that other hosts may share (from /proc/mounts).

    >>> mounts = "/dev/sda1 / ext4 rw 0 0\\nserver:/team /mnt/team nfs4 rw 0 0\\n"
    >>> network_filesystem(Path("/mnt/team/orcac/answers.sqlite3"), mounts), network_filesystem(Path("/home/a"), mounts)
    (True, False)
    """
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:  # not Linux: assume a local disk
            return False
    best, kind = "", ""
    target = str(path)
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind in NETWORK_FILESYSTEMS


def _digest(
    job_id: str,
    family: str | None,
    max_tokens: int | None,
    text: str,
    finish: str | None,
    completion_tokens: int | None,
) -> str:
    payload = [job_id, family, max_tokens, text, finish, completion_tokens]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Answer:
    """One stored answer: the job it answers (id, family), the limit it was asked under."""

    job_id: str
    family: str | None
    model: str  # the teacher's model string, what `orcac cache prune --model` matches
    max_tokens: int | None
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: float
    answer_model: str | None  # the model the provider says answered

    @classmethod
    def of(cls, outcome, job, model: str, max_tokens: int) -> Answer:
        """A successful Outcome of `job`, asked of `model` under `max_tokens`."""
        return cls(
            outcome.job_id,
            job.family or None,
            model,
            max_tokens,
            outcome.text,
            outcome.finish_reason,
            int(outcome.prompt_tokens or 0),
            int(outcome.completion_tokens or 0),
            float(outcome.cost or 0.0),
            outcome.model,
        )

    def digest(self) -> str:
        return _digest(self.job_id, self.family, self.max_tokens, self.text, self.finish_reason, self.completion_tokens)


def _note(message: str) -> None:
    print(f"note: {printable(message)}", file=sys.stderr)


class AnswerCache:
    """One connection to the cache file, safe to use from the build's writer thread too."""

    def __init__(self, con: sqlite3.Connection, path: Path):
        self.con = con
        self.path = path
        self._lock = threading.Lock()
        self._warned = False

    @classmethod
    def open(
        cls, *, enabled: bool = True, path: Path | None = None, quiet: bool = False, create: bool = True
    ) -> AnswerCache | None:
        """The cache, created if missing (unless not `create`: a dry run writes nothing); None
        when it is off, absent or cannot be used (with a note)."""
        path = path or location(enabled=enabled)
        if path is None or (not create and not path.is_file()):
            return None
        try:
            return cls(_connect(path), path)
        except (OSError, sqlite3.Error, _NewerFormat) as error:
            if not quiet:
                _note(
                    f"the answer cache at {path} is not used: {error} "
                    "(`orcac cache clear` starts a new one; ORCAC_ANSWER_CACHE=off silences this)"
                )
            return None

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> AnswerCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- reading ---------------------------------------------------------------------------

    def get(self, job_ids: Iterable[str]) -> dict[str, Answer]:
        """The stored answer of each id that has one whose digest matches it."""
        return {a.job_id: a for a in self._select("job_id", job_ids)}

    def families(self, families: Iterable[str]) -> list[Answer]:
        """Every answer that stopped by itself (finish_reason 'stop') in these families."""
        return [a for a in self._select("family", families) if a.finish_reason == "stop"]

    def missing(self, job_ids: Iterable[str]) -> set[str]:
        """The ids the cache holds no answer for (an entry is not checked here, only counted)."""
        ids = list(dict.fromkeys(job_ids))
        held: set[str] = set()
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            held |= {
                r[0]
                for r in self._rows(f"SELECT job_id FROM answers WHERE job_id IN ({','.join('?' * len(chunk))})", chunk)
            }
        return set(ids) - held

    def _select(self, column: str, keys: Iterable[str]) -> list[Answer]:
        keys = [k for k in dict.fromkeys(keys) if k]
        found: list[Answer] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            rows = self._rows(
                f"SELECT {', '.join(_COLUMNS)}, digest FROM answers WHERE {column} IN ({','.join('?' * len(chunk))}) "
                "ORDER BY job_id",
                chunk,
            )
            for row in rows:
                answer = Answer(*row[:-1])
                if answer.text is not None and answer.digest() == row[-1]:
                    found.append(answer)  # a row that fails its digest is someone else's, or damaged
        return found

    def _rows(self, sql: str, params: list) -> list[tuple]:
        with self._lock:
            try:
                return self.con.execute(sql, params).fetchall()
            except sqlite3.Error as error:
                self._warn(error)
                return []

    # ---- writing ---------------------------------------------------------------------------

    def put(self, answers: Iterable[Answer]) -> int:
        """Store answers, in one transaction; the first answer of a job id stays (a second one
        of the same request is not better). Returns how many were new."""
        now = time.time()
        rows = [(*(getattr(a, c) for c in _COLUMNS), now, now, a.digest()) for a in answers if a.text is not None]
        return self._write(
            f"INSERT OR IGNORE INTO answers ({', '.join(_COLUMNS)}, stored, used, digest) "
            f"VALUES ({', '.join('?' * (len(_COLUMNS) + 3))})",
            rows,
        )

    def touch(self, job_ids: Iterable[str]) -> None:
        """Mark answers as used now: `orcac cache prune --older-than` keeps what builds still read."""
        now = time.time()
        self._write("UPDATE answers SET used = ? WHERE job_id = ?", [(now, j) for j in dict.fromkeys(job_ids)])

    def _write(self, sql: str, rows: list[tuple]) -> int:
        if not rows:
            return 0
        with self._lock:
            try:
                before = self.con.total_changes
                self.con.execute("BEGIN IMMEDIATE")
                try:
                    self.con.executemany(sql, rows)
                    self.con.execute("COMMIT")
                except BaseException:
                    self.con.execute("ROLLBACK")
                    raise
                return self.con.total_changes - before
            except sqlite3.Error as error:  # a full disk, a lock held past the timeout: the build goes on
                self._warn(error)
                return 0

    def _warn(self, error: Exception) -> None:
        if not self._warned:
            self._warned = True
            _note(f"the answer cache at {self.path} could not be used: {error} (the build goes on without it)")

    # ---- orcac cache ----------------------------------------------------------------------

    def summary(self) -> list[tuple]:
        """(model, answers, text bytes, oldest stored, newest stored) per model."""
        with self._lock:
            return self.con.execute(
                "SELECT model, count(*), coalesce(sum(length(CAST(text AS BLOB))), 0), min(stored), max(stored) "
                "FROM answers GROUP BY model ORDER BY model"
            ).fetchall()

    def prune(self, *, older_than_s: float | None = None, model: str | None = None) -> int:
        """Delete answers not used for `older_than_s` seconds and/or asked of `model`; returns how many."""
        where, params = [], []
        if older_than_s is not None:
            where.append("coalesce(used, stored) < ?")
            params.append(time.time() - older_than_s)
        if model is not None:
            where.append("model = ?")
            params.append(model)
        with self._lock:
            count = self.con.execute(f"DELETE FROM answers WHERE {' AND '.join(where) or '1'}", params).rowcount
            try:
                self.con.execute("VACUUM")  # give the space back
            except sqlite3.OperationalError:  # a build is reading it: the space is reused instead
                pass
        return count


class _NewerFormat(Exception):
    pass


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are ours (BEGIN IMMEDIATE takes the write lock at once,
    # so two writers queue on the busy timeout instead of deadlocking on an upgrade).
    con = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    try:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version > FORMAT:
            raise _NewerFormat(f"written by a newer orcac (cache format {version}; this orcac knows up to {FORMAT})")
        journal = "DELETE" if network_filesystem(path.resolve()) else "WAL"
        con.execute(f"PRAGMA journal_mode = {journal}")
        con.execute("PRAGMA synchronous = NORMAL" if journal == "WAL" else "PRAGMA synchronous = FULL")
        if version < FORMAT:
            con.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {FORMAT}; COMMIT;")
        con.execute("SELECT count(*) FROM answers LIMIT 1").fetchone()  # a file that is not a cache fails here
    except BaseException:
        con.close()
        raise
    return con


# ---- `orcac cache` ---------------------------------------------------------------------------


def parse_age(text: str) -> float:
    """`30d`, `12h`, `90m`, `45s`, `2w` as seconds.

    >>> parse_age("30d"), parse_age("12h"), parse_age("2w")
    (2592000.0, 43200.0, 1209600.0)
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip().lower()
    try:
        if text[-1:] in units and float(text[:-1]) >= 0:
            return float(text[:-1]) * units[text[-1]]
    except ValueError:
        pass
    raise OrcacError(f"--older-than {text!r}: not an age", hint="write a number and a unit: 30d, 12h, 90m, 2w")
