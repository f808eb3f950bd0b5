"""One process at a time in a folder (a run folder, an embedding cache): a second process is
refused at once with one line naming the holder's pid, never left to interleave its writes.

The lock is an advisory `flock` on `<folder>/.lock`, released by the system when the holder
exits, however it exits. A process may take a folder's lock again while it holds it. A folder
made for the lock and left holding nothing else is removed again, so work refused after
taking the lock leaves nothing behind."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from gpo.errors import GPOError

_held: dict[Path, int] = {}  # folders this process holds, with how many times it took each


@contextlib.contextmanager
def exclusive(folder: Path, what: str):
    folder = Path(folder).resolve()
    if folder in _held:
        _held[folder] += 1
        try:
            yield
        finally:
            _held[folder] -= 1
        return
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise GPOError(f"{folder}: {what} is in use by another process (pid {holder}); wait for it to finish, "
                       "or use another folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[folder] = 1
    try:
        yield
    finally:
        del _held[folder]
        if made and [p.name for p in folder.iterdir()] == [lock.name]:
            lock.unlink()
            folder.rmdir()
        os.close(fd)  # closing the descriptor releases the lock
