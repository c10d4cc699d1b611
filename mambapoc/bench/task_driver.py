"""The driver loop of a sweep run as remote tasks that stream cells back (`ray_executor.py` is its Ray side),
kept apart from Ray so that deduplication and resubmission are tested with a fake backend.

A task yields messages: ("hello", facts) first (its node, device, pid), then per cell ("start", cell_id)
and ("cell", cell_id, worker info, measured fields); or ("missing", [what], facts) when a directory it
needs is not on its node. A lost task (its stream raises) is submitted again with the cells not yet
received, up to `MAX_RESUBMITS` times; then the rest are recorded as `error` cells, so a sweep always ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mambapoc.bench.plan import Planned

log = logging.getLogger(__name__)

MAX_RESUBMITS = 3  # new tasks for one model run after its task was lost, before its cells are errors
WAIT_S = 0.5  # the driver looks at its streams (and at Ctrl-C) this often


class Backend(Protocol):
    """Where tasks run. `take` returns a task's next message, raises StopIteration when its stream ended,
    and any other exception when the task was lost."""

    def submit(self, model: str, impl: str, cells: list[Planned]) -> Any: ...

    def wait(self, handles: list, timeout: float) -> list: ...

    def take(self, handle) -> tuple: ...

    def cancel(self, handle) -> None: ...

    def ship(self, model: str, missing: list[str], facts: dict | None) -> str | None:
        """Make the directories a task found missing travel with the next task: None, or why they cannot."""


@dataclass
class _Task:
    run: tuple[str, str]
    attempt: int  # 0 for the first task of a run, n for its n-th resubmission
    facts: dict | None = None


class Driver:
    """Submits one task per model run, records each cell the first time it arrives, and submits a new task
    for the cells a lost task did not deliver. `record(planned, info, measured, facts)` writes a cell;
    `on_hello(facts)` sees each task's node; `on_start(planned)` a cell begun."""

    def __init__(self, backend: Backend, record: Callable[[Planned, dict | None, dict, dict | None], None],
                 on_hello: Callable[[dict], None] = lambda facts: None,
                 on_start: Callable[[Planned], None] = lambda cell: None,
                 max_resubmits: int = MAX_RESUBMITS, wait_s: float = WAIT_S):
        self.backend, self.record, self.on_hello, self.on_start = backend, record, on_hello, on_start
        self.max_resubmits, self.wait_s = max_resubmits, wait_s
        self.left: dict[tuple[str, str], dict[str, Planned]] = {}  # per run, the cells not yet recorded
        self.recorded: set[str] = set()
        self.losses: list[tuple[tuple[str, str], str]] = []  # (run, why): each task lost with cells left
        self._tasks: dict[Any, _Task] = {}

    def run(self, cells: list[Planned]) -> None:
        for c in cells:
            self.left.setdefault((c.model, c.impl), {})[c.cell_id] = c
        try:
            for run in self.left:
                self._submit(run, 0)
            while self._tasks:
                for handle in self.backend.wait(list(self._tasks), self.wait_s):
                    self._step(handle)
        finally:
            # Interrupted (Ctrl-C) or failed: nothing keeps measuring for a driver that stopped listening.
            for handle in list(self._tasks):
                self.backend.cancel(handle)
            self._tasks.clear()

    def _step(self, handle) -> None:
        task = self._tasks[handle]
        try:
            msg = self.backend.take(handle)
        except StopIteration:
            del self._tasks[handle]
            self._lost(task, "its task ended without them")  # nothing to do when every cell came
            return
        except Exception as e:  # noqa: BLE001 - any failure of a task (node, worker, Ray) is a lost task
            del self._tasks[handle]
            self.backend.cancel(handle)
            self._lost(task, describe(e))
            return
        kind = msg[0]
        left = self.left[task.run]
        if kind == "hello":
            task.facts = msg[1]
            self.on_hello(msg[1])
        elif kind == "start":
            if msg[1] in left:
                self.on_start(left[msg[1]])
        elif kind == "cell":
            _, cid, info, measured = msg
            planned = left.pop(cid, None)
            if planned is None or cid in self.recorded:
                return  # measured twice (a task lost after sending it): the first one stands
            self.recorded.add(cid)
            self.record(planned, info, measured, task.facts)
        elif kind == "missing":
            del self._tasks[handle]  # the task ends here, having measured nothing
            why = self.backend.ship(task.run[0], msg[1], msg[2] if len(msg) > 2 else task.facts)
            if why is None:
                self._submit(task.run, task.attempt)  # not a failure: the same attempt, with the data
            else:
                self._fail(task.run, why, task.facts)
        else:
            raise RuntimeError(f"unknown message from a Ray task: {kind!r}")

    def _submit(self, run: tuple[str, str], attempt: int) -> None:
        handle = self.backend.submit(run[0], run[1], list(self.left[run].values()))
        self._tasks[handle] = _Task(run, attempt)

    def _lost(self, task: _Task, why: str) -> None:
        left = self.left[task.run]
        if not left:
            return
        self.losses.append((task.run, why))
        if task.attempt < self.max_resubmits:
            log.warning("Ray task of %s lost (%s); %d cell(s) submitted again (%d of %d)", task.run[0], why,
                        len(left), task.attempt + 1, self.max_resubmits)
            self._submit(task.run, task.attempt + 1)
        else:
            self._fail(task.run, f"the Ray task measuring this model was lost {task.attempt + 1} times; "
                                 f"the last time: {why}", task.facts)

    def _fail(self, run: tuple[str, str], why: str, facts: dict | None) -> None:
        left = self.left[run]
        for cid, planned in list(left.items()):
            del left[cid]
            if cid not in self.recorded:
                self.recorded.add(cid)
                self.record(planned, None, {"status": "error", "error": why}, facts)


def describe(e: BaseException) -> str:
    """One line for a lost task: the exception's type and first line (the cause of a RayTaskError)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException) and cause is not e:
        e = cause
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__
