"""Writing files and directories so that a reader, a crash or a Ctrl-C never sees half of one.

Every stage writes its outputs through here: a file is written beside its final name and renamed over
it; a directory is built beside its final place and moved in, the previous one removed only after.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mambapoc.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary name beside `path` for a writer that needs a file name (torch.save, savefig); it is
    renamed to `path` when the block ends normally and removed when it raises."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make results unreadable to other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write a whole file (text as UTF-8) so that readers see the old or the new content, never a mix."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    return path


def replace_dir(staging: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Move the finished directory `staging` to `target` (same file system). An existing `target` is moved
    aside first and deleted only once the new one is in place, so a crash leaves one of the two whole."""
    staging, target = Path(staging), Path(target)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


@contextlib.contextmanager
def exclusive(lock_path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (flock, released by the kernel if the process dies) for the
    block; another process asking for it gets a one-line error naming `what` and the holder's pid."""
    import fcntl

    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise UserError(f"{what} is in use by another mambapoc process (pid {holder}); wait for it to "
                            "finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
