"""A bundle as one file: a ``.tar.gz`` written reproducibly, and read back without trust.

Writing: the bundle's files under one folder, sorted, with fixed times, owners and modes, so the
same bundle always gives the same bytes and the same sha256. Reading: every member is checked
before anything is written (no absolute path, no ``..``, no link or device, no name twice, a
bounded count and size), and files are written by mapcell itself, never by ``tarfile.extract``.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from mapcell._constants import BUNDLE_CONFIG_FILE
from mapcell.hub._bundle import BundleError
from mapcell.hub._files import CHUNK_BYTES, make_readable

#: An archive of a bundle holds a handful of files; more than this is not one.
MAX_MEMBERS = 64
#: Refuse archives that would unpack to more than this (a bundle is megabytes, an atlas's a few
#: gigabytes); it protects the disk from archives built to fill it.
MAX_UNPACKED_BYTES = 32 * 2**30
ARCHIVE_SUFFIX = ".tar.gz"


def pack_bundle(bundle: Path, archive: Path, *, folder: str) -> Path:
    """Write the files of ``bundle`` into the ``.tar.gz`` ``archive``, under ``folder/``.

    The archive is written to a temporary name and renamed into place.
    """
    files = sorted(entry for entry in bundle.iterdir() if entry.is_file())
    archive.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{archive.name}.", dir=archive.parent)
    try:
        with (
            os.fdopen(handle, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            tar.addfile(_member(folder, tarfile.DIRTYPE, 0o755))
            for entry in files:
                info = _member(f"{folder}/{entry.name}", tarfile.REGTYPE, 0o644)
                info.size = entry.stat().st_size
                with entry.open("rb") as content:
                    tar.addfile(info, content)
        Path(staging).chmod(0o644)
        os.replace(staging, archive)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return archive


def _member(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _unsafe(name: str) -> str | None:
    """Why a member name cannot be unpacked, or None when it is a plain relative path."""
    if not name or "\x00" in name:
        return "has an empty name"
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or name.startswith("\\"):
        return "is an absolute path"
    if ".." in posix.parts or ".." in windows.parts:
        return "climbs out of the folder with '..'"
    return None


def _checked_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members, seen, total = [], set(), 0
    for member in tar:
        if len(members) == MAX_MEMBERS:
            msg = f"{archive} holds more than {MAX_MEMBERS} entries; it is not a MapCell bundle"
            raise BundleError(msg)
        problem = _unsafe(member.name)
        if problem is None and not (member.isfile() or member.isdir()):
            problem = "is a link or a special file, which a bundle never holds"
        if problem is not None:
            msg = f"{archive}: the entry {member.name!r} {problem}; nothing was unpacked"
            raise BundleError(msg)
        key = PurePosixPath(member.name).as_posix().strip("/")
        if key in seen:
            msg = f"{archive}: the entry {member.name!r} appears twice; nothing was unpacked"
            raise BundleError(msg)
        seen.add(key)
        total += member.size
        if total > MAX_UNPACKED_BYTES:
            msg = (
                f"{archive} would unpack to more than {MAX_UNPACKED_BYTES:,} bytes; it is not a "
                "MapCell bundle"
            )
            raise BundleError(msg)
        members.append(member)
    return members


def _bundle_folder(root: Path, archive: Path) -> Path:
    if (root / BUNDLE_CONFIG_FILE).is_file():
        return root
    candidates = [entry for entry in root.iterdir() if (entry / BUNDLE_CONFIG_FILE).is_file()]
    if len(candidates) != 1:
        msg = (
            f"{archive} holds no MapCell bundle: {BUNDLE_CONFIG_FILE} is neither at its top nor "
            "in exactly one folder there; make the archive with 'mapcell models publish'"
        )
        raise BundleError(msg)
    return candidates[0]


def unpack_bundle(archive: Path, destination: Path) -> Path:
    """Unpack the bundle in ``archive`` safely into the new folder ``destination``.

    Returns ``destination``. On any problem nothing is left at ``destination``.
    """
    try:
        tar = tarfile.open(archive, mode="r:*")  # noqa: SIM115 (closed by the with below)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile) as error:
        msg = f"{archive} is not a .tar.gz archive of a MapCell bundle ({error})"
        raise BundleError(msg) from error

    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        with tar:
            members = _checked_members(tar, archive)
            for member in members:
                _write_member(tar, member, staging, archive)
        folder = _bundle_folder(staging, archive)
        make_readable(staging)
        try:
            folder.rename(destination)
        except OSError:
            if not (destination / BUNDLE_CONFIG_FILE).is_file():
                raise
            # Another process unpacked the same archive first; its copy is as good as ours.
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        msg = f"{archive} is truncated or damaged ({error}); download or copy it again"
        raise BundleError(msg) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, archive) -> None:
    target = root.joinpath(*PurePosixPath(member.name).parts)
    try:
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        with tar.extractfile(member) or io.BytesIO() as content, target.open("xb") as out:
            shutil.copyfileobj(content, out, CHUNK_BYTES)
    except (FileExistsError, NotADirectoryError) as error:
        msg = f"{archive}: the entry {member.name!r} clashes with another entry ({error})"
        raise BundleError(msg) from error
