"""Remote jobs: work a vendor runs for us (a batch of requests, a hosted fine-tuning job), submitted once,
recorded, polled, collected, and found again after a crash.

The cycle, the same for every kind of remote job:
1. **intent**: before anything is created, the ledger records what is about to be (its tag: the stage and
   a hash of its inputs, the vendor, how many requests, when);
2. **create**, then **submitted**: the vendor's id is recorded. A process killed between the two leaves an
   intent without an id: the next run asks the vendor's list for a job carrying that tag (`find`) and
   adopts it, so a paid job is never orphaned or created twice;
3. **poll** until the vendor says it ended, with a progress line;
4. **collect** (the caller's: results into the cache), then **closed**. A run killed while collecting
   collects again: collecting is idempotent.

The ledger is append-only JSONL, one file per stage, beside the call cache (shared by the repository's
experiment workspaces, like the cache), so `make batches` can list every stage's jobs.
"""
from __future__ import annotations

import json
import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

from distillery.engine.cache import shared_cache_path
from distillery.engine.journal import append_lines, read_lines
from distillery.providers.base import STOP_STATUS, StageStop, classify


def ledger_dir(state_dir: str | Path, cache_path: str | None = None) -> Path:
    return shared_cache_path(state_dir, cache_path).parent / "remote"


class Ledger:
    """The remote jobs of one stage: events appended, merged per tag when read. A torn last line (the
    process died mid-write) is ignored."""

    def __init__(self, path: Path | str, stage: str):
        self.path, self.stage = Path(path), stage
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_stage(cls, state_dir, stage: str, cache_path: str | None = None) -> "Ledger":
        return cls(ledger_dir(state_dir, cache_path) / f"{stage}.jsonl", stage)

    def write(self, event: str, tag: str, **fields) -> None:
        append_lines(self.path, [json.dumps({"event": event, "tag": tag, "at": time.time(), **fields})])

    def entries(self) -> dict[str, dict]:
        """tag -> the job as its events left it: intent fields, `id` once submitted, `closed` once done."""
        jobs: dict[str, dict] = {}
        for e in read_lines(self.path):
            if e["event"] == "intent":  # a new intent for a tag replaces an abandoned one
                jobs[e["tag"]] = dict(e)
            elif e["tag"] in jobs:
                job = jobs[e["tag"]]
                job.update({k: v for k, v in e.items() if k not in ("event", "at")})
                job[e["event"]] = e["at"]
        return jobs

    @contextmanager
    def locked(self):
        """This stage's ledger to this process alone (two experiments of one repository at the same stage:
        the second waits, then finds the first one's results in the cache). Released by the OS on a kill."""
        import fcntl

        with (self.path.parent / f"{self.path.name}.lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def known_ids(self) -> set[str]:
        return {j["id"] for j in self.entries().values() if j.get("id")}

    def open(self) -> list[dict]:
        """Jobs not yet collected: created (or maybe created: an intent without an id) and not closed."""
        return [j for j in self.entries().values() if "closed" not in j and "abandoned" not in j]


def submit_once(ledger: Ledger, tag: str, create, find, **intent) -> str:
    """The vendor's id for the job `tag`: recorded already, found at the vendor (created just before a
    crash), or created now, with the intent written first and the id right after."""
    job = ledger.entries().get(tag)
    if job and "closed" not in job and "abandoned" not in job:
        found = adopt_or_abandon(ledger, job, find)  # abandoned: the new intent below takes its place
        if found:
            return found
    ledger.write("intent", tag, stage=ledger.stage, **intent)
    point = "" if intent.get("kind", "batch") == "batch" else f"{intent['kind']}:"  # file:created, job:created, …
    crash_point(f"{point}intent")
    job_id = create()
    crash_point(f"{point}created")
    ledger.write("submitted", tag, id=job_id)
    crash_point(f"{point}submitted")
    return job_id


def adopt_or_abandon(ledger: Ledger, job: dict, find) -> str | None:
    """An intent left without an id by a crash: the vendor's id if it was created, else None (and the
    intent is marked abandoned: nothing was created, nothing is owed)."""
    if job.get("id"):
        return job["id"]
    found = find(job)
    if found:
        ledger.write("submitted", job["tag"], id=found, adopted=True)
        return found
    ledger.write("abandoned", job["tag"], why="not found at the vendor: never created")
    return None


CRASH_ENV = "DISTILLERY_CRASH_AT"


def crash_armed() -> bool:
    return bool(os.environ.get(CRASH_ENV))


def crash_point(name: str, count: int = 0) -> None:
    """Fault injection for the tests: `DISTILLERY_CRASH_AT=<name>[:<count>]` kills this process with
    SIGKILL at that point of the cycle (intent, created, submitted, collecting:<results stored>, closed; for
    other kinds than batches, prefixed: file:created, job:created; polling for a hosted job),
    so a test proves that a run killed there resumes without losing or paying twice. Unset: nothing."""
    want = os.environ.get(CRASH_ENV)
    if want:
        point, _, n = want.rpartition(":")
        if not n.isdigit():  # no count: the whole value names the point
            point, n = want, "0"
        if point == name and count >= int(n):
            os.kill(os.getpid(), signal.SIGKILL)


POLL_ERRORS = 20  # status checks in a row that may fail (a vendor restarting, a network blip) before giving up


class RemoteUnreachable(StageStop):
    """The vendor stopped answering while jobs ran (or refused the key); they are in the ledger for the next run."""


def wait(jobs: dict[str, str], status, on_ended, *, poll_s: float, describe, total: int, name: str,
         progress: bool = True, on_lost=None) -> None:
    """Poll `jobs` (tag -> vendor id) until each ended; `on_ended(tag, id, status)` as each does.
    `status(id)` -> RemoteStatus; `describe(statuses)` -> the progress bar's tail. A job the vendor no
    longer knows (404) goes to `on_lost(tag, id, why)`; a key refused (401/403) stops at once; other
    errors (a vendor restarting) are ridden out up to POLL_ERRORS checks in a row per job."""
    from tqdm import tqdm

    left, done_counts, last, errors = dict(jobs), 0, {}, dict.fromkeys(jobs, 0)
    with tqdm(total=total, desc=name, unit="req", disable=None if progress else True, mininterval=1) as bar:
        while left:
            for tag, job_id in list(left.items()):
                try:
                    s = status(job_id)
                    errors[tag] = 0
                except Exception as exc:  # noqa: BLE001 - sorted below: lost, refused, or down for a while
                    err = classify(exc, "vendor")
                    if err.status == 404 and on_lost is not None:
                        on_lost(tag, job_id, f"the vendor no longer knows {job_id} (404)")
                        del left[tag]
                        continue
                    if err.status in (401, 403):
                        raise RemoteUnreachable(f"status of {job_id}: {err}. {STOP_STATUS[err.status]}") from exc
                    errors[tag] += 1
                    if errors[tag] > POLL_ERRORS:
                        raise RemoteUnreachable(f"{POLL_ERRORS} status checks of {job_id} in a row failed ({err}); "
                                                "it is recorded: the next run picks it up") from exc
                    continue
                last[tag] = s
                if s.ended:
                    on_ended(tag, job_id, s)
                    del left[tag]
            settled = sum(s.settled for s in last.values())
            bar.update(max(0, settled - done_counts))
            done_counts = max(done_counts, settled)
            bar.set_postfix_str(describe(list(last.values())), refresh=True)
            if left:
                time.sleep(poll_s)
