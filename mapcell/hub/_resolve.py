"""One resolver for every way of naming a reference: a path, an archive, a URL, a name, a repo."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from mapcell._settings import REGISTRY_URL_ENV, settings
from mapcell.hub._bundle import BundleError, load_bundle
from mapcell.hub._download import URL_SCHEMES, url_scheme
from mapcell.hub._hf import HF_PREFIX, pull_from_hf_hub, split_hf
from mapcell.hub._registry import RegistryError, download, fetch_url, split_name, unpack_local


def _local(path: Path) -> Path:
    if path.is_file() and tarfile.is_tarfile(path):
        return unpack_local(path)
    return path  # a folder, or a path load_bundle explains the trouble with


def resolve(source: str | os.PathLike) -> Path:
    """The local bundle folder that ``source`` names, fetched into the cache when needed.

    ``source`` is tried as, in this order:

    1. ``"hf://owner/repo"`` or ``"hf://owner/repo@revision"``: a Hugging Face repository
       (needs ``pip install 'mapcell[hf]'``);
    2. an ``http(s)://`` or ``file://`` URL of a bundle archive (``.tar.gz``), optionally ending
       in ``#sha256=...`` to pin its checksum;
    3. a path that exists: a bundle folder, or a bundle archive (unpacked into the cache);
    4. ``"name"`` or ``"name@version"`` in the registry at ``mc.settings.registry_url``.

    A ``os.PathLike`` is always a path. Downloads are verified before use and kept in
    ``mc.settings.cache_dir``, so a reference fetched once works offline.

    Parameters
    ----------
    source
        What names the reference.

    Returns
    -------
    The bundle folder.
    """
    if isinstance(source, os.PathLike):
        return _local(Path(source))
    if not isinstance(source, str):
        msg = f"a reference is named by a path, URL or registry name, not {type(source).__name__}"
        raise TypeError(msg)
    if source.startswith(HF_PREFIX):
        repo_id, revision = split_hf(source)
        return pull_from_hf_hub(repo_id, revision=revision)
    if url_scheme(source) in URL_SCHEMES:
        return fetch_url(source)

    path = Path(source).expanduser()
    if path.exists() or split_name(source) is None:
        return _local(path)
    if settings.registry_url is None:
        msg = (
            f"{source!r} is not a folder here ({Path.cwd()}), and no registry is set to look the "
            "name up in: pass the path of a bundle, or set mc.settings.registry_url (or "
            f"{REGISTRY_URL_ENV}) to a registry index"
        )
        raise RegistryError(msg)
    return download(source)


def load_model(source: str | os.PathLike):
    """A :class:`~mapcell.MapCell` from a bundle folder, archive, URL, registry name or repo.

    See :func:`resolve` for the forms ``source`` takes; the bundle is checked completely
    before anything is built from it, and nothing in it is executed.
    """
    path = resolve(source)
    try:
        model = load_bundle(path)
    except BundleError as error:
        cache = settings.cache_dir / "bundles"
        if cache not in path.parents:
            raise
        again = (
            f"mapcell models get {source} --force (mc.hub.download({source!r}, force=True))"
            if isinstance(source, str) and split_name(source) is not None
            else f"delete {path} and load it again"
        )
        msg = f"{error}. This is mapcell's cached copy: to download it again, {again}"
        raise BundleError(msg) from error
    model.bundle_source = os.fspath(source)
    return model
