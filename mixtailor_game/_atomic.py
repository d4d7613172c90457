"""Whole-file writes that a killed process cannot leave half done.

Used by every command that writes a file (run directories, figures, the game's
probabilities, the checkers' JSON): the data goes to a temporary file in the
target's folder, which then replaces the target (``os.replace``, atomic on POSIX).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write_bytes(path, data: bytes, sync: bool = True) -> None:
    """Write ``data`` to ``path``: the old file or the new one, never half of one.

    The file gets the permissions of a plain ``open(path, "w")`` (0o666 less the
    umask): ``tempfile.mkstemp``'s 0o600, used before, made every run file, figure
    and results file unreadable to the rest of a group. ``sync``: flush it to disk
    before the rename (a crash of the machine then keeps the new file too).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path, text: str, sync: bool = True) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"), sync=sync)
