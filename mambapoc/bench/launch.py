"""Starting a worker process that cannot outlive the process that started it.

The worker is a freshly spawned interpreter (models never share memory, allocator state or thread pools,
and the parent can kill it). Its entry point here runs before the worker's own module, and so before
torch is imported: on Linux it asks the kernel to kill it when its parent dies (PR_SET_PDEATHSIG), then
checks that the parent it was started by is still there, since the parent may have died before the
request. Elsewhere a thread watches the parent instead.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import threading
import time

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the running program, libc included
        armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        armed = False
    if os.getppid() != parent:
        os._exit(3)  # the parent died before the request: nobody is listening
    if armed:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def entry(parent: int, target: str, *args) -> None:
    """Run `target` ("module:function") with `args` in this child once it is tied to `parent`."""
    _die_with_parent(parent)
    module, function = target.split(":")
    getattr(importlib.import_module(module), function)(*args)


def spawn(ctx, target: str, *args):
    """Start `target(*args)` in a new spawned process tied to this one; returns the started Process."""
    proc = ctx.Process(target=entry, args=(os.getpid(), target, *args), daemon=True)
    proc.start()
    return proc
