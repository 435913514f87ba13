"""The Hugging Face Hub as a second home for bundles, through ``huggingface_hub`` (optional).

A bundle is pushed as the files of a model repository, its card as the repository's README (with
the metadata block the Hub reads), and pulled back by repository id and revision into the Hub's
own cache, where the Hub's offline mode (``HF_HUB_OFFLINE=1``) finds it again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from mapcell._constants import BUNDLE_CARD_FILE, BUNDLE_CONFIG_FILE, BUNDLE_WEIGHTS_FILE
from mapcell._logging import logger
from mapcell.hub._bundle import read_bundle
from mapcell.hub._download import DownloadError
from mapcell.hub._registry import RegistryError

#: What a bundle repository holds; anything else in the repository is not downloaded.
BUNDLE_FILES = (BUNDLE_WEIGHTS_FILE, BUNDLE_CONFIG_FILE, BUNDLE_CARD_FILE)
HF_PREFIX = "hf://"
_TAGS = ("mapcell", "single-cell", "scRNA-seq", "cell-type-annotation", "scverse")


def _huggingface_hub():
    try:
        import huggingface_hub
        import huggingface_hub.utils  # the error classes; not loaded with the package itself
    except ImportError as error:
        msg = (
            "the Hugging Face Hub needs the package huggingface_hub, which is not installed: "
            "pip install 'mapcell[hf]'"
        )
        raise ImportError(msg) from error
    return huggingface_hub


def split_hf(source: str) -> tuple[str, str | None]:
    """``("owner/repo", "v1")`` for ``"hf://owner/repo@v1"``; the revision is optional."""
    repo_id, _, revision = source.removeprefix(HF_PREFIX).partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        msg = f"{source!r} is not of the form hf://owner/repository or hf://owner/repository@rev"
        raise RegistryError(msg)
    return repo_id, revision or None


def _front_matter(config: dict) -> str:
    # The metadata block the Hub shows beside a model card; the card itself stays as it is.
    license_ = config.get("about", {}).get("license")
    lines = ["---", "library_name: mapcell"]
    if license_:
        lines.append(f"license: {license_.lower()}")
    lines += ["tags:", *(f"- {tag}" for tag in _TAGS), "---", ""]
    return "\n".join(lines)


def push_to_hf_hub(
    bundle: str | os.PathLike,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload a bundle to a Hugging Face model repository, with its card as the README.

    Parameters
    ----------
    bundle
        The bundle folder (it is checked completely first).
    repo_id
        ``"owner/name"``; the repository is created if it does not exist.
    revision
        Branch to commit to (created if needed); by default the main branch.
    private
        Make a new repository private.
    token
        A Hugging Face token; by default the one ``huggingface-cli login`` saved.
    commit_message
        By default "Upload mapcell bundle".

    Returns
    -------
    The URL of the commit.
    """
    hf = _huggingface_hub()
    bundle = Path(bundle)
    config, _ = read_bundle(bundle)
    api = hf.HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")

    with tempfile.TemporaryDirectory(prefix="mapcell-hf-") as staging:
        for name in (BUNDLE_WEIGHTS_FILE, BUNDLE_CONFIG_FILE):
            shutil.copyfile(bundle / name, Path(staging) / name)
        card = (bundle / BUNDLE_CARD_FILE).read_text(encoding="utf-8")
        (Path(staging) / BUNDLE_CARD_FILE).write_text(
            _front_matter(config) + card, encoding="utf-8"
        )
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=staging,
            revision=revision,
            repo_type="model",
            commit_message=commit_message or "Upload mapcell bundle",
        )
    url = str(getattr(info, "commit_url", info))
    logger.info("pushed %s to the Hugging Face Hub: %s", bundle, url)
    return url


def pull_from_hf_hub(
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Download a bundle from a Hugging Face model repository; return its local folder.

    Parameters
    ----------
    repo_id
        ``"owner/name"``.
    revision
        A branch, tag or commit; by default the main branch.
    token
        A Hugging Face token, for private repositories.
    cache_dir
        The Hub cache to use; by default the Hub's own (``HF_HUB_CACHE``).

    Returns
    -------
    The folder of the snapshot in the Hub's cache. With ``HF_HUB_OFFLINE=1`` a snapshot
    downloaded before is found without the network.
    """
    hf = _huggingface_hub()
    from mapcell import __version__

    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        folder = hf.snapshot_download(
            repo_id,
            revision=revision,
            repo_type="model",
            allow_patterns=list(BUNDLE_FILES),
            token=token,
            cache_dir=cache_dir,
            library_name="mapcell",
            library_version=__version__,
        )
    except hf.utils.LocalEntryNotFoundError as error:
        msg = (
            f"{where} is not in the local Hugging Face cache, and the Hub cannot be reached or "
            "offline mode is on (HF_HUB_OFFLINE=1): connect, or unset HF_HUB_OFFLINE, and try "
            "again"
        )
        raise DownloadError(msg) from error
    except (hf.utils.RepositoryNotFoundError, hf.utils.RevisionNotFoundError) as error:
        msg = (
            f"the Hugging Face Hub has no {where} (or it is private: pass token=); check the "
            "repository id and revision"
        )
        raise RegistryError(msg) from error
    return Path(folder)
