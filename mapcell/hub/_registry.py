"""The registry: a JSON index of shared references, and a local cache of what was downloaded.

An index is one JSON file anyone can host (a web server, object storage, a shared drive)::

    {"format": "mapcell-registry", "version": 1, "models": [
        {"name": "pbmc", "version": "1.0", "url": "pbmc-1.0.tar.gz", "sha256": "...",
         "size": 1234567, "species": "human", "tissue": "blood", "description": "...",
         "license": "CC-BY-4.0"}]}

An entry's ``url`` may be relative to the index. Everything downloaded goes under
``mc.settings.cache_dir``: ``registries/`` keeps the last copy of each index read (so names
resolve offline), ``downloads/`` the archives in transit, and ``bundles/SHA256/`` every bundle,
by the sha256 of the archive it came from, so a republished version never hides behind an old
copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin

import pandas as pd

from mapcell._constants import BUNDLE_CONFIG_FILE, BUNDLE_WEIGHTS_FILE
from mapcell._logging import logger
from mapcell._settings import REGISTRY_URL_ENV, settings
from mapcell.hub._archive import ARCHIVE_SUFFIX, pack_bundle, unpack_bundle
from mapcell.hub._bundle import check_about, load_bundle, write_bundle_documents
from mapcell.hub._download import DownloadError, download_file, fetch_bytes, url_scheme
from mapcell.hub._files import make_readable, sha256_file, write_text_atomic
from mapcell.hub._schema import INTEGER, SHA256, STRING, ListOf, Obj, Scalar, check

INDEX_FORMAT = "mapcell-registry"
INDEX_VERSION = 1
#: Names and versions become folder and file names, so they are kept to a safe alphabet.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
VERSION_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}"
_REGISTRY_NAME = re.compile(rf"({NAME_PATTERN})(?:@({VERSION_PATTERN}))?")

#: Text fields of an entry that describe the reference, as in a bundle's ``about``.
DESCRIPTIVE_FIELDS = ("species", "tissue", "description", "license")
ENTRY_SCHEMA = Obj(
    required={
        "name": Scalar(("string",), pattern=NAME_PATTERN),
        "version": Scalar(("string",), pattern=VERSION_PATTERN),
        "url": STRING,
        "sha256": SHA256,
        "size": INTEGER,
    },
    optional={
        **dict.fromkeys(DESCRIPTIVE_FIELDS, STRING),
        "n_cell_types": INTEGER,
        "n_genes": INTEGER,
        "schema_version": INTEGER,
        "mapcell_version": STRING,
    },
)
INDEX_SCHEMA = Obj(
    required={"models": ListOf(ENTRY_SCHEMA)},
    optional={"format": STRING, "version": INTEGER, "name": STRING, "description": STRING},
)


class RegistryError(ValueError):
    """A registry is not set, cannot be read, or lacks the reference asked for."""


@dataclass(frozen=True)
class Registry:
    """An index read from ``url``: its entries, and whether it came from the local copy."""

    url: str
    entries: tuple[dict, ...]
    fetched: str
    from_cache: bool

    def find(self, name: str, version: str | None = None) -> dict:
        """The entry of ``name`` at ``version`` (by default its latest version)."""
        matches = [entry for entry in self.entries if entry["name"] == name]
        if not matches:
            names = sorted({entry["name"] for entry in self.entries})
            shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
            msg = (
                f"no reference named {name!r} in the registry {self.url}; it holds: "
                f"{shown or 'nothing'} ('mapcell models list' shows them)"
            )
            raise RegistryError(msg)
        if version is None:
            return max(matches, key=lambda entry: _version_key(entry["version"]))
        for entry in matches:
            if entry["version"] == version:
                return entry
        versions = ", ".join(entry["version"] for entry in matches)
        msg = f"the registry {self.url} has no version {version!r} of {name!r}; it has {versions}"
        raise RegistryError(msg)

    def archive_url(self, entry: dict) -> str:
        """The absolute address of an entry's archive (its ``url`` may be relative)."""
        return urljoin(self.url, entry["url"])


def _version_key(text: str):
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(text), text)
    except InvalidVersion:
        return (0, text, text)


def split_name(source: str) -> tuple[str, str | None] | None:
    """``("pbmc", "1.0")`` for ``"pbmc@1.0"``, ``("pbmc", None)`` for ``"pbmc"``, else None."""
    match = _REGISTRY_NAME.fullmatch(source)
    return (match.group(1), match.group(2)) if match else None


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def bundle_cache(sha256: str) -> Path:
    """The cache folder of the bundle unpacked from the archive with this sha256."""
    return settings.cache_dir / "bundles" / sha256


def index_url(registry: str | os.PathLike | None = None) -> str:
    """The registry index's address as a URL: ``registry``, else ``mc.settings.registry_url``."""
    address = os.fspath(registry) if registry is not None else settings.registry_url
    if address is None:
        msg = (
            "no registry is set: set mc.settings.registry_url (or the environment variable "
            f"{REGISTRY_URL_ENV}) to the address of a registry index, or pass registry="
        )
        raise RegistryError(msg)
    scheme = url_scheme(address)
    if scheme is None:
        return Path(address).expanduser().resolve().as_uri()
    if scheme not in ("http", "https", "file"):
        msg = (
            f"the registry address must be an http(s):// or file:// URL or a path, not {address!r}"
        )
        raise RegistryError(msg)
    return address


def _parse(document, url: str, fetched: str, *, from_cache: bool) -> Registry:
    absent, problems = check(document, INDEX_SCHEMA)
    problems = [f"{field} is missing" for field in absent] + problems
    if isinstance(document, dict) and document.get("format", INDEX_FORMAT) != INDEX_FORMAT:
        problems.append(f"format is {document['format']!r}, not {INDEX_FORMAT!r}")
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if problems[5:] else ""
        )
        msg = (
            f"the registry index {url} is not a mapcell registry: {shown}. Tell its maintainer "
            "(an entry comes from 'mapcell models publish')"
        )
        raise RegistryError(msg)
    if document.get("version", INDEX_VERSION) > INDEX_VERSION:
        msg = (
            f"the registry index {url} has format version {document['version']}, newer than "
            f"this mapcell reads ({INDEX_VERSION}); upgrade mapcell (pip install -U mapcell)"
        )
        raise RegistryError(msg)
    seen: set[tuple[str, str]] = set()
    for entry in document["models"]:
        key = (entry["name"], entry["version"])
        if key in seen:
            msg = f"the registry index {url} lists {key[0]}@{key[1]} twice; tell its maintainer"
            raise RegistryError(msg)
        seen.add(key)
    return Registry(url, tuple(document["models"]), fetched, from_cache)


def open_registry(registry: str | os.PathLike | None = None) -> Registry:
    """Read the registry index, or its cached copy when the registry cannot be reached.

    Parameters
    ----------
    registry
        Address of the index (a URL or a path); by default ``mc.settings.registry_url``.

    Returns
    -------
    The index. A fresh copy is kept under ``mc.settings.cache_dir`` so that names resolve
    offline; when the registry cannot be reached that copy is used, with a logged warning.
    """
    url = index_url(registry)
    copy = settings.cache_dir / "registries" / f"{_key(url)}.json"
    try:
        data = fetch_bytes(url)
    except DownloadError as error:
        if not copy.is_file():
            msg = (
                f"the registry index cannot be read, and no copy of it is cached: {error}. The "
                f"index is set by mc.settings.registry_url or {REGISTRY_URL_ENV}"
            )
            raise RegistryError(msg) from error
        saved = json.loads(copy.read_text(encoding="utf-8"))
        logger.warning(
            "using the copy of the registry index from %s, since the registry cannot be read: %s",
            saved["fetched"],
            error,
        )
        return _parse(saved["index"], url, saved["fetched"], from_cache=True)

    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        msg = f"the registry index {url} is not valid JSON ({error}); tell its maintainer"
        raise RegistryError(msg) from error
    fetched = _now()
    found = _parse(document, url, fetched, from_cache=False)
    write_text_atomic(copy, json.dumps({"url": url, "fetched": fetched, "index": document}))
    return found


def list_models(registry: str | os.PathLike | None = None) -> pd.DataFrame:
    """The references a registry offers, one row per version.

    Parameters
    ----------
    registry
        Address of the index; by default ``mc.settings.registry_url``.

    Returns
    -------
    A frame with ``name``, ``version``, ``species``, ``tissue``, ``n_cell_types``, ``size``
    (bytes), ``license``, ``description`` and ``downloaded`` (whether it is in the cache), sorted
    by name and newest version first.
    """
    found = open_registry(registry)
    columns = ["name", "version", "species", "tissue", "n_cell_types", "size", "license",
               "description"]  # fmt: skip
    rows = [
        {
            **{column: entry.get(column) for column in columns},
            "downloaded": (bundle_cache(entry["sha256"]) / BUNDLE_CONFIG_FILE).is_file(),
        }
        for entry in sorted(
            found.entries,
            key=lambda entry: (entry["name"], _version_key(entry["version"])),
            reverse=True,
        )
    ]
    frame = pd.DataFrame(rows, columns=[*columns, "downloaded"])
    return frame.sort_values("name", kind="stable").reset_index(drop=True)


def describe(name: str, registry: str | os.PathLike | None = None) -> dict:
    """Everything the registry says about one reference, and where it is cached.

    Parameters
    ----------
    name
        ``"name"`` (its latest version) or ``"name@version"``.
    registry
        Address of the index; by default ``mc.settings.registry_url``.

    Returns
    -------
    The index entry, with ``url`` made absolute, ``registry`` (the index's URL) and ``path``
    (the cached bundle folder, or None when it has not been downloaded).
    """
    name, version = _checked_name(name)
    found = open_registry(registry)
    entry = found.find(name, version)
    folder = bundle_cache(entry["sha256"])
    return {
        **entry,
        "url": found.archive_url(entry),
        "registry": found.url,
        "path": str(folder) if (folder / BUNDLE_CONFIG_FILE).is_file() else None,
    }


def _checked_name(source: str) -> tuple[str, str | None]:
    parts = split_name(source)
    if parts is None:
        msg = (
            f"{source!r} is not a registry name: names are letters, digits, '.', '_' and '-', "
            "optionally followed by @version (for example 'pbmc@1.0')"
        )
        raise RegistryError(msg)
    return parts


def download(name: str, registry: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """Download a reference from the registry into the cache (once) and return its folder.

    Parameters
    ----------
    name
        ``"name"`` (its latest version) or ``"name@version"``.
    registry
        Address of the index; by default ``mc.settings.registry_url``.
    force
        Download it again even when it is in the cache (to replace a damaged copy); the cached
        copy is replaced only once the new download is verified.

    Returns
    -------
    The bundle folder under ``mc.settings.cache_dir``. The archive is checked against the
    entry's size and sha256 before it is unpacked; a download that is cut off resumes.
    """
    name, version = _checked_name(name)
    found = open_registry(registry)
    entry = found.find(name, version)
    folder = bundle_cache(entry["sha256"])
    handle = f"{entry['name']}@{entry['version']}"
    if (folder / BUNDLE_CONFIG_FILE).is_file() and not force:
        logger.info("using %s from the cache (%s)", handle, folder)
        return folder

    archive = settings.cache_dir / "downloads" / f"{entry['sha256']}{ARCHIVE_SUFFIX}"
    url = found.archive_url(entry)
    logger.info("downloading %s (%s bytes) from %s", handle, entry["size"], url)
    download_file(
        url,
        archive,
        sha256=entry["sha256"],
        size=entry["size"],
        description=handle,
    )
    try:
        if folder.exists():  # forced: the verified archive replaces the old copy
            shutil.rmtree(folder)
        unpack_bundle(archive, folder)
    finally:
        archive.unlink(missing_ok=True)
    logger.info("    saved %s to %s", handle, folder)
    return folder


def fetch_url(url: str) -> Path:
    """Download the bundle archive at ``url`` into the cache and return its folder.

    A ``#sha256=...`` at the end of the URL pins the archive's checksum: the download is
    verified against it, and a copy already in the cache is used without asking the network.
    Without it the archive is downloaded again each time (the bundle's own checks still apply),
    and the last copy is used, with a warning, when the URL cannot be reached.
    """
    address, _, fragment = url.partition("#")
    pinned = re.fullmatch(r"sha256=([0-9a-f]{64})", fragment)
    if fragment and pinned is None:
        msg = f"the URL {url} ends in #{fragment}; the only suffix understood is #sha256=<64 hex>"
        raise DownloadError(msg)
    sha256 = pinned.group(1) if pinned else None
    if sha256 is not None and (bundle_cache(sha256) / BUNDLE_CONFIG_FILE).is_file():
        return bundle_cache(sha256)

    record = settings.cache_dir / "urls" / f"{_key(address)}.json"
    archive = settings.cache_dir / "downloads" / f"{sha256 or _key(address)}{ARCHIVE_SUFFIX}"
    if sha256 is None:
        # Unpinned content may change between calls; a part of an older file cannot be resumed.
        archive.with_name(archive.name + ".part").unlink(missing_ok=True)
        logger.info("no checksum given for %s; add #sha256=... to the URL to pin it", address)
    try:
        download_file(address, archive, sha256=sha256, description=address.rsplit("/", 1)[-1])
    except DownloadError as error:
        if sha256 is not None or not record.is_file():
            raise
        saved = json.loads(record.read_text(encoding="utf-8"))
        if not (bundle_cache(saved["sha256"]) / BUNDLE_CONFIG_FILE).is_file():
            raise
        logger.warning("%s; using the copy downloaded on %s", error, saved["fetched"])
        return bundle_cache(saved["sha256"])

    digest = sha256 or sha256_file(archive)
    folder = bundle_cache(digest)
    try:
        if not (folder / BUNDLE_CONFIG_FILE).is_file():
            unpack_bundle(archive, folder)
    finally:
        archive.unlink(missing_ok=True)
    write_text_atomic(record, json.dumps({"url": address, "sha256": digest, "fetched": _now()}))
    return folder


def unpack_local(archive: Path) -> Path:
    """Unpack a local bundle archive into the cache (once, by its sha256); return the folder."""
    folder = bundle_cache(sha256_file(archive))
    if not (folder / BUNDLE_CONFIG_FILE).is_file():
        unpack_bundle(archive, folder)
    return folder


def publish(
    bundle: str | os.PathLike,
    output_dir: str | os.PathLike = ".",
    *,
    name: str | None = None,
    version: str | None = None,
    base_url: str | None = None,
    index: str | os.PathLike | None = None,
    overwrite: bool = False,
    **about: str | None,
) -> dict:
    """Check a bundle, write its archive, and return the registry entry for it.

    The bundle is loaded with every check :func:`load_bundle` makes. Its ``about`` record
    (name, version, species, ...) is updated with what is given here, and the card rewritten
    from it; the weights are not touched. The archive ``NAME-VERSION.tar.gz`` is reproducible:
    the same bundle and details give the same bytes and sha256.

    Parameters
    ----------
    bundle
        The bundle folder, as written by :meth:`mapcell.MapCell.save`.
    output_dir
        Folder for the archive.
    name, version
        The reference's registry name and version; by default those in the bundle's ``about``.
    base_url
        Address of the folder the archive will be uploaded to. Without it the entry's ``url`` is
        the archive's file name, which works when the archive sits beside the index.
    index
        A local index file to add the entry to (created if absent), for a registry served from
        a folder. An entry of the same name and version with another sha256 is refused unless
        ``overwrite=True``: users expect a version never to change.
    overwrite
        Replace an existing archive, and an index entry of the same name and version.
    **about
        ``description``, ``species``, ``tissue``, ``license``, ``authors``, ``citation``, ``url``.

    Returns
    -------
    The index entry: ``name``, ``version``, ``url``, ``sha256``, ``size``, the descriptive
    fields given, ``n_cell_types``, ``n_genes``, ``schema_version`` and ``mapcell_version``.
    """
    from mapcell import __version__

    bundle = Path(bundle)
    model = load_bundle(bundle)
    given = {key: value for key, value in about.items() if value is not None}
    about = _publish_about({**model.about, **given, "name": name or model.about.get("name"),
                            "version": version or model.about.get("version")})  # fmt: skip
    handle = f"{about['name']}-{about['version']}"
    archive = Path(output_dir) / f"{handle}{ARCHIVE_SUFFIX}"
    if archive.exists() and not overwrite:
        msg = f"{archive} already exists; pass overwrite=True to replace it"
        raise FileExistsError(msg)

    config = _write_archive(bundle, about, archive, handle)
    entry = {
        "name": about["name"],
        "version": about["version"],
        "url": urljoin(base_url.rstrip("/") + "/", archive.name) if base_url else archive.name,
        "sha256": sha256_file(archive),
        "size": archive.stat().st_size,
        **{field: about[field] for field in DESCRIPTIVE_FIELDS if field in about},
        "n_cell_types": len(model.labels),
        "n_genes": len(model.genes),
        "schema_version": config["schema_version"],
        "mapcell_version": __version__,
    }
    if index is not None:
        try:
            add_to_index(index, entry, overwrite=overwrite)
        except RegistryError:
            archive.unlink()  # an archive no index lists would only mislead
            raise
    logger.info("wrote %s (sha256 %s)", archive, entry["sha256"])
    return entry


def _publish_about(about: dict) -> dict:
    about = check_about(about)
    for field, pattern in (("name", NAME_PATTERN), ("version", VERSION_PATTERN)):
        if not re.fullmatch(pattern, about.get(field, "")):
            msg = (
                f"publishing needs a {field} of letters, digits, '.', '_' or '-' (for example "
                f"{'pbmc' if field == 'name' else '1.0'!r}), not {about.get(field)!r}: pass "
                f"{field}=..."
            )
            raise ValueError(msg)
    return about


def _write_archive(bundle: Path, about: dict, archive: Path, handle: str) -> dict:
    # The weights are copied as they are; mapcell.json gets the about record (and the checksum
    # a bundle of mapcell 0.1 lacks), and the card is written again from it.
    config = json.loads((bundle / BUNDLE_CONFIG_FILE).read_text(encoding="utf-8"))
    config["about"] = about
    staging = Path(tempfile.mkdtemp(prefix=".publish."))
    try:
        weights = staging / BUNDLE_WEIGHTS_FILE
        shutil.copyfile(bundle / BUNDLE_WEIGHTS_FILE, weights)
        config["weights"] = {
            "file": BUNDLE_WEIGHTS_FILE,
            "sha256": sha256_file(weights),
            "size": weights.stat().st_size,
        }
        write_bundle_documents(staging, config)
        make_readable(staging)
        pack_bundle(staging, archive, folder=handle)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return config


def add_to_index(index: str | os.PathLike, entry: dict, *, overwrite: bool = False) -> Path:
    """Add ``entry`` to the local index file ``index`` (created if absent), atomically."""
    index = Path(index)
    if index.exists():
        try:
            document = json.loads(index.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            msg = f"{index} is not valid JSON ({error}); fix or remove it"
            raise RegistryError(msg) from error
        _parse(document, str(index), _now(), from_cache=False)
    else:
        document = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "models": []}
    models = document["models"]
    same = [m for m in models if (m["name"], m["version"]) == (entry["name"], entry["version"])]
    if same and same[0]["sha256"] != entry["sha256"] and not overwrite:
        msg = (
            f"{index} already lists {entry['name']}@{entry['version']} with another sha256; "
            "publish it as a new version (users expect a version never to change), or pass "
            "overwrite=True"
        )
        raise RegistryError(msg)
    document["models"] = sorted(
        [m for m in models if m not in same] + [entry],
        key=lambda m: (m["name"], _version_key(m["version"])),
    )
    write_text_atomic(index, json.dumps(document, indent=1) + "\n")
    return index
