"""Run a job's chunks in local processes: the same task code, no broker."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from workers.annotate import StageSeconds
from workers.tasks import process_chunk


def run_locally(
    database_url: str,
    job_id: int,
    chunks: Sequence[list[int]],
    options: dict[str, Any],
    processes: int,
    on_chunk_done: Callable[[int], None] | None = None,
) -> StageSeconds:
    """Process every chunk; `on_chunk_done(images)` after each. An error in a chunk (or a crashed process)
    cancels the chunks not started yet and propagates.

    Returns the seconds spent per stage, summed over all processes.
    """
    seconds = StageSeconds()
    if processes <= 1:
        for chunk in chunks:
            seconds.add(process_chunk(database_url, job_id, chunk, options)["seconds"])
            if on_chunk_done:
                on_chunk_done(len(chunk))
        return seconds
    # spawn: a fresh interpreter per worker, so TensorFlow never sees a forked state.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=processes, mp_context=context)
    try:
        futures = {pool.submit(process_chunk, database_url, job_id, chunk, options): len(chunk) for chunk in chunks}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                seconds.add(future.result()["seconds"])
                if on_chunk_done:
                    on_chunk_done(futures[future])
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return seconds
