"""Where a dataset is built before it replaces the old one: a hidden folder beside it, and what is done
so that an interrupted or killed ingest leaves nothing behind.

An error, Ctrl-C or SIGTERM removes the folder at once. SIGKILL (or a power cut) cannot be caught, so the
folder is held locked (`flock`) by its owner while it lives, its pid in its name (`.NAME.PID.xxxxxxxx.tmp`),
and the kernel drops the lock when the owner dies: the next ingest into the same data directory removes
the folders nobody holds. The same goes for the previous dataset moved aside while the new one takes its
place (`.NAME.xxxxxxxx.old`): it is removed once the new one is no longer held, or put back if its owner
died before the new one was in place.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from mambapoc.ingest.dataset import MANIFEST

_LEFTOVER = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.(?P<kind>tmp|old)")
# A folder found unlocked may belong to an ingest that has just made it and not yet locked it: only an
# empty one this young is left alone.
_GRACE_S = 60


def _lock(path: Path, wait: bool = False) -> int | None:
    """An fd holding an exclusive lock on the folder `path`, or None if another process holds it."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        return None
    return fd


def _abandoned(folder: Path) -> bool:
    with contextlib.suppress(OSError):
        if any(folder.iterdir()) or time.time() - folder.stat().st_mtime > _GRACE_S:
            return True
    return False


def sweep(root: Path) -> list[str]:
    """Removes from the data directory `root` the staging folders and moved-aside datasets of ingests
    that died; returns their names."""
    swept = []
    for entry in sorted(root.iterdir()):
        m = _LEFTOVER.fullmatch(entry.name)
        if m is None or entry.is_symlink() or not entry.is_dir():
            continue
        target = root / m["name"]
        # A staging folder is held by its owner; a moved-aside dataset by the owner of what replaced it.
        held = entry if m["kind"] == "tmp" or not target.is_dir() else target
        fd = _lock(held)
        if fd is None:
            continue
        try:
            if m["kind"] == "tmp" and not _abandoned(entry):
                continue
            if m["kind"] == "old" and not target.exists() and (entry / m["name"] / MANIFEST).is_file():
                os.replace(entry / m["name"], target)  # killed between moving the old one out and the new in
            shutil.rmtree(entry, ignore_errors=True)
            swept.append(entry.name)
        finally:
            os.close(fd)
    return swept


@contextlib.contextmanager
def staging_dir(root: Path, name: str) -> Iterator[Path]:
    """A new hidden folder in `root` to build dataset `name` in, locked until the block ends (also after
    it was moved in place, which keeps the moved-aside previous dataset marked as in use); removed if the
    block raises."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=root))
    fd = _lock(tmp, wait=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if fd is not None:
            os.close(fd)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt in the block, as Ctrl-C does, so that the same cleanup
    runs and the command ends with `interrupted`. Only the main thread can handle signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {s: signal.getsignal(s) for s in wanted}
    for s in wanted:
        signal.signal(s, _interrupt)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
