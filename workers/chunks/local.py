"""Run a job's chunks here, without a broker: detection processes feed one classifier.

The processes read and detect (OpenCV, no TensorFlow); this process classifies every
face and writes each chunk. The model loads once, in a background thread that starts
once the processes exist, so it overlaps the first images' detection instead of
delaying every process; on machines without a GPU it classifies on ONNX Runtime and
never imports TensorFlow (`workers.serving.classifier.backend_for`).
"""

from __future__ import annotations

import math
import multiprocessing
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait

import numpy as np

from db.session import engine_for
from db.writes import mark_running
from workers.chunks.annotate import DetectedImages, classify_detected
from workers.chunks.stages import StageSeconds
from workers.chunks.stop_signals import CHECK_SECONDS, StopRequest, deferred_stop
from workers.chunks.work import DetectedChunk, detect_chunk, init_process, one_opencv_thread, write_chunk
from workers.jobs.options import JobOptions
from workers.serving.classifier import EmotionClassifier, backend_for, get_classifier

# Detection work is handed out in pieces of about 1/PIECES_PER_PROCESS of a process's
# share, so the processes finish together even when a few large photos take seconds each.
PIECES_PER_PROCESS = 16


def run_chunks(
    database_url: str,
    job_id: int,
    chunks: Sequence[list[int]],
    options: JobOptions,
    processes: int,
    on_chunk_done: Callable[[int], None] | None = None,
) -> StageSeconds:
    """Process every chunk; `on_chunk_done(images)` after each is written. An error in a chunk (or a crashed
    process) cancels the chunks not started yet and propagates.

    Returns the seconds spent per stage, summed over all processes. This process writes through its
    engine on ``database_url`` (`engine_for`); the detection processes make their own from the URL.
    """
    seconds = StageSeconds()
    if not chunks:
        return seconds
    mark_running(engine_for(database_url), job_id)
    one_opencv_thread()  # this process classifies beside the detection processes: no OpenCV threads of its own
    pieces = split_into_pieces(chunks, processes)
    left = [0] * len(chunks)
    for index, _ in pieces:
        left[index] += 1
    found: dict[int, list[DetectedChunk]] = {}
    # Ctrl-C and SIGTERM are taken between steps (workers.chunks.stop_signals); the detection processes ignore Ctrl-C.
    with deferred_stop() as stop:
        pool = _detection_pool(processes)
        loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fer-model")
        try:
            futures = {pool.submit(detect_chunk, database_url, job_id, ids, options): index for index, ids in pieces}
            stop.check()
            # Only now, with every detection process started (forked), may this process import TensorFlow.
            backend = backend_for()
            model: Future[EmotionClassifier] = loader.submit(get_classifier, options.model, backend)
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=CHECK_SECONDS, return_when=FIRST_COMPLETED)
                stop.check()
                complete: list[tuple[int, DetectedChunk]] = []
                for future in finished:
                    index = futures[future]
                    piece = future.result()
                    if piece is not None:
                        found.setdefault(index, []).append(piece)
                    left[index] -= 1
                    if left[index] == 0:
                        merged = merge_pieces(found.pop(index, []))
                        if merged is None:  # nothing was pending in this chunk
                            _done(on_chunk_done, len(chunks[index]))
                        else:
                            complete.append((index, merged))
                if complete:
                    _classify_and_write(database_url, job_id, [chunk for _, chunk in complete], model, seconds, stop)
                    for index, _ in complete:
                        _done(on_chunk_done, len(chunks[index]))
        except BaseException:
            _stop(pool)
            raise
        finally:
            loader.shutdown(wait=False)
        pool.shutdown(wait=True)
    return seconds


def _loaded(model: Future[EmotionClassifier], stop: StopRequest) -> Future[EmotionClassifier]:
    """``model`` once it has loaded (or failed to), waiting in steps that Ctrl-C can end."""
    while not model.done():
        wait([model], timeout=CHECK_SECONDS)
        stop.check()
    return model


def _done(on_chunk_done: Callable[[int], None] | None, images: int) -> None:
    if on_chunk_done:
        on_chunk_done(images)


def _classify_and_write(database_url: str, job_id: int, chunks: list[DetectedChunk],
                        model: Future[EmotionClassifier], seconds: StageSeconds, stop: StopRequest) -> None:
    """All faces of the chunks in one model call, then one transaction per chunk."""
    classify = StageSeconds()
    if any(len(chunk.detected.faces) for chunk in chunks):
        classify_detected([chunk.detected for chunk in chunks], _loaded(model, stop).result(), classify)
    seconds.add(classify.as_dict())
    for chunk in chunks:
        write_chunk(database_url, job_id, chunk)
        seconds.add(chunk.seconds.as_dict())


def split_into_pieces(chunks: Sequence[list[int]], processes: int) -> list[tuple[int, list[int]]]:
    """(chunk index, image ids) pieces for the detection processes: chunks split evenly, none over the chunk size."""
    total = sum(len(chunk) for chunk in chunks)
    size = max(1, math.ceil(total / (max(processes, 1) * PIECES_PER_PROCESS)))
    pieces = []
    for index, chunk in enumerate(chunks):
        count = max(1, math.ceil(len(chunk) / size))
        step = len(chunk) / count
        pieces += [(index, chunk[round(i * step) : round((i + 1) * step)]) for i in range(count)]
    return pieces


def merge_pieces(pieces: list[DetectedChunk]) -> DetectedChunk | None:
    """One chunk from its detected pieces (in any order), or None when no piece had pending images."""
    if not pieces:
        return None
    results, faces, owners = [], [], []
    seconds = StageSeconds()
    for piece in pieces:
        owners += [(len(results) + result, face) for result, face in piece.detected.owners]
        results += piece.detected.results
        faces.append(piece.detected.faces)
        seconds.add(piece.seconds.as_dict())
    return DetectedChunk(pieces[0].model_id, DetectedImages(results, np.concatenate(faces), owners), seconds)


def _detection_pool(processes: int) -> Executor:
    if processes <= 1:
        # One process: detection in a thread (OpenCV and Pillow release the GIL) beside the model loading.
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="fer-detect")
    # fork is fast and safe while TensorFlow is not loaded here (the model loads after the fork);
    # where it is (an embedding program, the tests), spawn gives fresh interpreters.
    method = "fork" if "tensorflow" not in sys.modules and "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context(method),
                               initializer=init_detection_process)


def init_detection_process() -> None:
    """A detection process ignores Ctrl-C, which a terminal sends to the whole process group: the parent alone
    handles it (it marks the job) and stops its processes itself (`_stop`). SIGTERM ends it as usual (the
    handler the parent had when it forked is not its own)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    init_process()


def _stop(pool: Executor) -> None:
    """Cancel the work not started and end the detection processes now, mid-piece (they ignore SIGINT, so they
    are killed); their pieces are written by nobody and stay pending for `fer retry`."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # a ProcessPoolExecutor's processes
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        if process.is_alive():
            process.kill()
    for process in workers:
        process.join(timeout=5)
