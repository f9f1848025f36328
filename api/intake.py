"""Group commit for artifact pushes: those that arrive together share one transaction.

Storing an artifact is one database commit, and SQLite has a single writer: with
every request committing on its own, the API's threads and processes queue for
the write lock and the disk, and a burst of pushes waits in line. Here the
request threads hand their push to one writer thread per API process, which
stores everything that arrived since its last commit in one transaction,
enqueues the new events, and then wakes the requests. A burst of N pushes
costs one commit, and a lone push waits for nobody.

Each push still ends on its own: a batch that fails on one push's
Idempotency-Key is stored again push by push, so only that push gets the
`Conflict`.
"""

from __future__ import annotations

import copy
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from gimletd.errors import Conflict
from gimletd.models import Artifact, Event
from gimletd.store import ArtifactPush, Store

log = logging.getLogger(__name__)

#: Most pushes stored in one transaction.
MAX_BATCH = 64


@dataclass
class _Pending:
    """One request's push, waiting for the writer thread to store it."""

    push: ArtifactPush
    done: threading.Event = field(default_factory=threading.Event)
    stored: tuple[Artifact, Event] | None = None
    error: Exception | None = None


class ArtifactIntake:
    """Stores artifact pushes in batches on a writer thread, and enqueues their events.

    The thread is started by the first push of each process, so gunicorn's
    forked workers each get their own; `close` stops it.
    """

    def __init__(self, store: Store, enqueue: Callable[[list[str]], bool]) -> None:
        self._store = store
        self._enqueue = enqueue
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_pid: int | None = None
        self._starting = threading.Lock()

    def push(self, push: ArtifactPush) -> tuple[Artifact, Event]:
        """Store `push` with the others that arrive meanwhile; its artifact and event.

        Its event has been handed to the queue when this returns (or the failure
        logged, for the sweep to enqueue it).

        :raise Conflict: when an event with the push's `dedupe_key` exists already.
        :raise StoreUnavailable: when the database cannot be reached.
        """
        pending = _Pending(push)
        self._start_writer()
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.stored is not None
        return pending.stored

    def close(self) -> None:
        """Stop the writer thread once it has stored what it was given."""
        writer = self._writer
        if writer is not None and self._writer_pid == os.getpid():
            self._queue.put(None)
            writer.join()
        self._writer = None

    def _start_writer(self) -> None:
        pid = os.getpid()
        if self._writer_pid == pid:
            return
        with self._starting:
            if self._writer_pid == pid:
                return
            # A forked child inherits neither the thread nor anything it was given.
            self._queue = queue.SimpleQueue()
            self._writer = threading.Thread(
                target=self._write_until_closed, name="artifact-intake", daemon=True
            )
            self._writer.start()
            self._writer_pid = pid

    def _write_until_closed(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    following = self._queue.get_nowait()
                except queue.Empty:
                    break
                if following is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(following)
            try:
                self._write(batch)
            except Exception as exc:  # the thread must outlive any failure: each request answers it
                log.exception("enqueueing %d stored artifact pushes failed", len(batch))
                _fail([pending for pending in batch if pending.stored is None], exc)
            finally:
                for pending in batch:
                    pending.done.set()

    def _write(self, batch: list[_Pending]) -> None:
        """Store a batch in one transaction and enqueue its events; errors go to the pushes."""
        try:
            stored = self._store.create_artifacts([pending.push for pending in batch])
        except Conflict as exc:
            if len(batch) == 1:
                _fail(batch, exc)
                return
            # Some push reused an Idempotency-Key: store each alone, so only it fails.
            for pending in batch:
                self._write([pending])
            return
        except Exception as exc:  # the database is away (or a bug): each request answers it
            _fail(batch, exc)
            return
        for pending, artifact_and_event in zip(batch, stored, strict=True):
            pending.stored = artifact_and_event
        # One round trip for the batch; logged when the broker is away, and the sweep enqueues.
        self._enqueue([event.id for _, event in stored])


def _fail(batch: list[_Pending], error: Exception) -> None:
    """Give each push of the batch its own copy of `error` to raise in its request."""
    for pending in batch:
        pending.error = copy.copy(error)
        pending.error.__cause__ = error
