"""Atomic file writes: the one way this project writes a file that someone may read later.

Every writer goes through :func:`atomic_write`: the content is written to a temporary file in
the destination's folder (same file system, so the final rename is atomic), flushed to disk,
then renamed over the destination. A crash or a kill at any moment leaves either the previous
file or the new one, never a truncated one. The temporaries are named ``.<name>.<random>.tmp``
so that :func:`remove_stale_temporaries` can find what a killed writer left behind.
:func:`check_writable_folder` lets a command fail at its start, not after its work, when its
output folder cannot be written.

This module imports nothing from the rest of the project (and torch only when saving tensors),
so that every layer — checkpoints, training logs, datasets, benchmarks — can use it.
"""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; a finished file gets the permissions
# an ordinary open() would have given it (0o666 less the umask), read once at import.
_FILE_MODE = 0o666 & ~_current_umask()


def _temporary_pattern(path: Path) -> str:
    return str(path.parent / f".{path.name}.*.tmp")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(temporary_path)`` and, if it returns, rename the result over ``path``.

    ``write`` must create the file at the path it is given (any writer works: ``torch.save``,
    ``fig.savefig``, an encoder). On any exception the temporary file is removed and the
    exception propagates; ``path`` is untouched. Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(temporary)
        with open(temporary, "rb+") as handle:  # the data is on disk before the rename
            os.fsync(handle.fileno())
        os.chmod(temporary, _FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    def write(temporary: str) -> None:
        with open(temporary, "wb") as handle:
            handle.write(data)

    return atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """UTF-8 text, newlines written as given (no platform translation)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    return atomic_write(path, lambda temporary: torch.save(obj, temporary))


def remove_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Delete the temporaries that writers of ``path`` killed mid-write left behind.

    Call it only when no other process is writing ``path`` (e.g. when a run resumes). Returns
    the removed files.
    """
    removed = []
    for temporary in glob.glob(_temporary_pattern(Path(path))):
        try:
            os.unlink(temporary)
            removed.append(temporary)
        except FileNotFoundError:
            pass
    return removed


def check_writable_folder(path: str | os.PathLike, what: str = "output folder") -> None:
    """Create the folder ``path`` if needed and prove that files can be written in it, so
    that a run fails at its start rather than after its work. ``what`` names it in the error
    (e.g. ``"--output"``); raises :class:`OSError` with a one-line message."""
    try:
        os.makedirs(path, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=path)
        os.close(handle)
        os.unlink(probe)
    except OSError as e:
        reason = e.strerror or str(e)
        raise OSError(f"{what} {os.fspath(path)}: cannot write there ({reason})") from None
