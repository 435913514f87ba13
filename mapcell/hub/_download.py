"""Downloads with the standard library: resumable, checked against a sha256, written atomically.

A file is downloaded into ``NAME.part`` beside its destination. When the connection is lost the
part stays, and the next attempt asks the server for the rest (an HTTP ``Range`` request); a
server that does not resume sends the whole file again, and the part starts over. Only when the
download is complete, of the expected size and sha256, is it renamed to its destination; a file
that does not match is deleted, so the next try starts clean.
"""

from __future__ import annotations

import http.client
import os
import re
import time
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm.auto import tqdm

from mapcell._logging import logger
from mapcell._settings import settings
from mapcell.hub._files import CHUNK_BYTES, sha256_file

#: Seconds to wait for a server to answer, or to send the next bytes.
TIMEOUT_S = 30
#: Times a lost connection is resumed within one call before giving up.
RETRIES = 3
#: Pause before the second retry and after (times the attempt number); the first is at once.
RETRY_PAUSE_S = 1.0
#: A registry index is a small JSON file; anything larger is refused.
MAX_INDEX_BYTES = 16 * 2**20
URL_SCHEMES = ("http", "https", "file")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(OSError):
    """A download failed, was cut short, or does not match its checksum; the message says which."""


class _Interrupted(Exception):
    """The connection was lost mid-transfer: what arrived is kept, the rest can be asked for."""


def url_scheme(address: str) -> str | None:
    """The scheme of ``address`` (``"https"``), or None when it is no URL (a path, a name)."""
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", address)
    return match.group(1).lower() if match else None


def _request(url: str, headers: dict[str, str] | None = None) -> Request:
    from mapcell import __version__

    return Request(url, headers={"User-Agent": f"mapcell/{__version__}", **(headers or {})})


def _unreachable(url: str, error: Exception) -> DownloadError:
    if isinstance(error, HTTPError):
        message = (
            f"{url} answered HTTP {error.code} ({error.reason}); check the address, or tell "
            "whoever publishes it"
        )
    else:
        reason = error.reason if isinstance(error, URLError) else error
        message = f"cannot reach {url} ({reason}); check the address and your connection"
    return DownloadError(message)


def fetch_bytes(url: str) -> bytes:
    """The content of a small file at ``url`` (a registry index), read in one request."""
    max_bytes = MAX_INDEX_BYTES
    try:
        with urlopen(_request(url), timeout=TIMEOUT_S) as response:
            data = response.read(max_bytes + 1)
    except (URLError, http.client.HTTPException, OSError) as error:
        raise _unreachable(url, error) from error
    if len(data) > max_bytes:
        msg = f"{url} is larger than {max_bytes:,} bytes; it is not a registry index"
        raise DownloadError(msg)
    return data


def download_file(
    url: str,
    destination: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    description: str | None = None,
    retries: int | None = None,
) -> Path:
    """Download ``url`` to ``destination``, resuming after a lost connection, then verify it.

    Parameters
    ----------
    url
        An ``http://``, ``https://`` or ``file://`` URL.
    destination
        Where the file goes; it appears only once complete and verified.
    sha256
        The expected checksum (64 hex digits); a file that does not match is deleted.
    size
        The expected size in bytes, if known: a server sending more is cut off.
    description
        Label of the progress bar (shown when ``mc.settings.progress_bar`` is on).
    retries
        Times to resume within this call when the connection is lost (by default
        :data:`RETRIES`). After the last, the part stays on disk and the next call resumes it.

    Returns
    -------
    ``destination``.
    """
    if url_scheme(url) not in URL_SCHEMES:
        msg = f"cannot download {url!r}: only http://, https:// and file:// URLs are supported"
        raise DownloadError(msg)
    retries = RETRIES if retries is None else retries
    part = destination.with_name(destination.name + ".part")
    destination.parent.mkdir(parents=True, exist_ok=True)

    for attempt in range(retries + 1):
        try:
            _transfer(url, part, size, description or destination.name)
            break
        except _Interrupted as error:
            got = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                of = f" of {size}" if size is not None else ""
                msg = (
                    f"the download of {url} was cut off after {got}{of} bytes ({error}); the "
                    "part is kept, run the same command again to resume it"
                )
                raise DownloadError(msg) from error
            logger.info("    connection lost after %d bytes (%s); resuming", got, error)
            time.sleep(RETRY_PAUSE_S * attempt)

    _verify(part, url, sha256, size)
    os.replace(part, destination)
    return destination


def _transfer(url: str, part: Path, size: int | None, description: str) -> None:
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:  # not a part of this file
        part.unlink()
        have = 0
    if size is not None and have == size:
        return  # complete from an earlier call; _verify checks it

    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = urlopen(_request(url, headers), timeout=TIMEOUT_S)
    except HTTPError as error:
        if error.code == 416 and have:  # the part is longer than the file: start again
            part.unlink()
            msg = "the server cannot resume from the part on disk"
            raise _Interrupted(msg) from error
        raise _unreachable(url, error) from error
    except URLError as error:
        if isinstance(error.reason, ConnectionResetError | TimeoutError):
            raise _Interrupted(str(error.reason)) from error
        raise _unreachable(url, error) from error
    except (http.client.HTTPException, ConnectionResetError, TimeoutError) as error:
        raise _Interrupted(str(error)) from error

    with response:
        start = _resumed_at(response, have)
        if start < 0:  # a range the download did not ask for: nothing of it can be used
            part.unlink()
            msg = "the server answered with another range than the one asked for"
            raise _Interrupted(msg)
        if have and not start:
            logger.info("    the server does not resume downloads; starting %s again", url)
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        total = start + expected if expected is not None else size
        received = _copy(response, part, start, size, total, description)
    if expected is not None and received < expected:
        msg = f"the server sent {received} of {expected} bytes and closed the connection"
        raise _Interrupted(msg)


def _resumed_at(response, have: int) -> int:
    """Where the body the server sends starts in the file: ``have`` for a resume, else 0."""
    if not have or getattr(response, "status", None) != 206:
        return 0
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    return int(match.group(1)) if match and int(match.group(1)) == have else -1


def _copy(response, part: Path, start: int, size, total, description: str) -> int:
    received = 0
    with (
        part.open("ab" if start else "wb") as out,
        tqdm(
            total=total,
            initial=start,
            desc=description,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not settings.progress_bar,
        ) as bar,
    ):
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except (http.client.HTTPException, OSError) as error:
                raise _Interrupted(str(error) or type(error).__name__) from error
            if not chunk:
                break
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
            if size is not None and start + received > size:
                break
    if size is not None and start + received > size:
        part.unlink()
        msg = (
            f"the server sent more than the {size} bytes expected; the file there is not the "
            "one published. Nothing was kept; tell whoever publishes it"
        )
        raise DownloadError(msg)
    return received


def _verify(part: Path, url: str, sha256: str | None, size: int | None) -> None:
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        msg = (
            f"{url} gave {got} bytes, but {size} were expected; nothing was kept. The file there "
            "was changed or damaged: try again, and if it fails again tell whoever publishes it"
        )
        raise DownloadError(msg)
    if sha256 is None:
        return
    digest = sha256_file(part)
    if digest != sha256:
        part.unlink()
        msg = (
            f"the file downloaded from {url} does not match its sha256 (it is {digest}, "
            f"expected {sha256}): it was damaged in transit or altered at the source, and "
            "nothing was kept. Try again; if it fails again, tell whoever publishes it"
        )
        raise DownloadError(msg)
