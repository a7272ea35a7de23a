"""How the calls that missed the cache are carried out: threads for hosted providers, device batches
for a model on this machine. Both yield (index, Completion | CallFailed) as each call settles."""
from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed


def run_threads(calls: list[tuple[int, object]], call_one, workers: int):
    """calls: (index, request). Each goes through call_one(request) on one of `workers` threads."""
    if not calls:
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(calls)), thread_name_prefix="llm") as pool:
        futures = {pool.submit(call_one, request): i for i, request in calls}
        try:
            for f in as_completed(futures):
                yield futures[f], f.result()
        finally:  # the consumer stopped early (an error, a kill): drop what has not started
            for f in futures:
                f.cancel()


def run_device(calls: list[tuple[int, object]], send_batch, call_one, batch_size: int):
    """calls: (index, request). Requests with the same batch options go to the device together, in
    batches of batch_size; send_batch(requests) returns a Completion per request, or None for a batch
    that failed as a whole, whose rows then go through call_one(request, tried=1) one by one, so one
    bad prompt costs only itself."""
    groups: dict[tuple, list[tuple[int, object]]] = defaultdict(list)
    for i, request in calls:
        groups[request.batch_options()].append((i, request))
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            part = group[start:start + batch_size]
            replies = send_batch([r for _, r in part])
            for (i, request), reply in zip(part, replies or [None] * len(part)):
                yield i, reply if reply is not None else call_one(request, tried=1)
