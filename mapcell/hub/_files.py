"""File helpers of the sharing layer: checksums, atomic writes, ordinary permissions."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

#: Bytes read at a time when hashing or copying a file.
CHUNK_BYTES = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_readable(path: Path) -> None:
    """Give a folder written by ``mkdtemp`` (mode 0700) and its files the user's usual modes.

    Temporary files and folders are private by design; a bundle or a cache entry is not, so
    others on a shared machine can read it as they could any file the user writes.
    """
    mask = _umask()
    for entry in [path, *path.rglob("*")]:
        entry.chmod((0o777 if entry.is_dir() else 0o666) & ~mask)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        Path(staging).chmod(0o666 & ~_umask())
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
