"""Sharing references: publish, a registry served over HTTP, the cache, archives, the HF Hub.

No test touches the internet: the registry is a real HTTP server on 127.0.0.1 started here, and
the Hugging Face Hub is replaced by its own offline cache, filled by a stand-in for the upload.
"""

from __future__ import annotations

import http.server
import io
import json
import logging
import re
import sys
import tarfile
import threading
import types
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

import mapcell as mc
from mapcell._constants import BUNDLE_CARD_FILE, BUNDLE_CONFIG_FILE, BUNDLE_WEIGHTS_FILE
from mapcell._logging import logger
from mapcell._settings import REGISTRY_URL_ENV
from mapcell.cli import main
from mapcell.hub import BundleError, DownloadError, RegistryError, _archive, _download
from mapcell.hub._files import sha256_file

ABOUT = {"species": "synthetic", "tissue": "none", "license": "CC0-1.0",
         "description": "Three synthetic cell types."}  # fmt: skip
ARCHIVE = "tiny-1.0.tar.gz"


# ---------------------------------------------------------------- a registry on 127.0.0.1


class Served:
    """What the test server serves, how it misbehaves, and what it was asked."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.replaced: dict[str, bytes] = {}  # path -> bytes served instead of the file
        self.cut_after: dict[str, int] = {}  # path -> bytes sent before closing, once
        self.ignore_range = False
        self.wrong_range = False  # answer a Range request from another offset
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)

    def asked_for(self, name: str) -> list[str | None]:
        """The Range headers of the requests for ``name``."""
        return [rng for path, rng in self.requests if path == f"/{name}"]


def _handler(served: Served):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            served.requests.append((self.path, self.headers.get("Range")))
            file = served.root / self.path.lstrip("/")
            data = served.replaced.get(self.path)
            if data is None and not file.is_file():
                self.send_error(404)
                return
            data = file.read_bytes() if data is None else data
            start = 0
            wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if wanted and not served.ignore_range:
                start = int(wanted.group(1)) - (7 if served.wrong_range else 0)
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cut = served.cut_after.pop(self.path, None)
            self.wfile.write(body if cut is None else body[:cut])  # then the server hangs up

        def log_message(self, *args):
            pass

    return Handler


class Registry(types.SimpleNamespace):
    """The fixture: ``url`` of the index, the ``entry`` published, ``served``, ``stop()``."""


@pytest.fixture
def settings_reset(monkeypatch, tmp_path):
    """A fresh cache per test; the registry setting is put back afterwards."""
    monkeypatch.setenv("MAPCELL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(REGISTRY_URL_ENV, raising=False)
    yield tmp_path / "cache"
    mc.settings.registry_url = None


@pytest.fixture
def registry(model, tmp_path, settings_reset):
    """The tiny model published as tiny@1.0 into a folder served over HTTP."""
    root = tmp_path / "served"
    entry = mc.hub.publish(
        model.bundle_path, root, name="tiny", version="1.0", index=root / "index.json", **ABOUT
    )
    served = Served(root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.json"
    mc.settings.registry_url = url
    stopped = []

    def stop():
        if not stopped:
            server.shutdown()
            server.server_close()
            stopped.append(True)

    yield Registry(url=url, entry=entry, served=served, root=root, stop=stop, cache=settings_reset)
    stop()


@pytest.fixture
def mapcell_log(caplog):
    """Records of mapcell's own logger (which does not propagate to the root's handlers)."""
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="mapcell")
    yield caplog
    logger.removeHandler(caplog.handler)


def _cache_contents(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


# ---------------------------------------------------------------- publishing


def test_publish_writes_a_reproducible_archive_and_its_entry(model, tmp_path):
    entry = mc.hub.publish(model.bundle_path, tmp_path / "a", name="tiny", version="1.0", **ABOUT)
    again = mc.hub.publish(model.bundle_path, tmp_path / "b", name="tiny", version="1.0", **ABOUT)

    archive = tmp_path / "a" / ARCHIVE
    assert entry["url"] == ARCHIVE
    assert entry["sha256"] == sha256_file(archive) == again["sha256"]
    assert entry["size"] == archive.stat().st_size
    assert entry["n_cell_types"] == 3
    assert entry["n_genes"] == 120
    assert {key: entry[key] for key in ABOUT} == ABOUT
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["tiny-1.0", *(f"tiny-1.0/{name}" for name in
                                          sorted([BUNDLE_CARD_FILE, BUNDLE_CONFIG_FILE,
                                                  BUNDLE_WEIGHTS_FILE]))]  # fmt: skip


def test_publish_names_the_reference_in_its_card(model, tmp_path):
    mc.hub.publish(model.bundle_path, tmp_path, name="tiny", version="1.0", **ABOUT)

    with tarfile.open(tmp_path / ARCHIVE) as tar:
        card = tar.extractfile(f"tiny-1.0/{BUNDLE_CARD_FILE}").read().decode()
    assert card.startswith("# tiny 1.0\n\nThree synthetic cell types.")
    assert "| license | CC0-1.0 |" in card


def test_publish_with_a_base_url(model, tmp_path):
    entry = mc.hub.publish(
        model.bundle_path, tmp_path, name="tiny", version="1.0", base_url="https://x.org/refs"
    )

    assert entry["url"] == f"https://x.org/refs/{ARCHIVE}"


def test_publish_needs_a_name(model, tmp_path):
    with pytest.raises(ValueError, match=r"publishing needs a name .*pass name=\.\.\."):
        mc.hub.publish(model.bundle_path, tmp_path, version="1.0")
    assert list(tmp_path.iterdir()) == []


def test_publish_refuses_a_bad_version(model, tmp_path):
    with pytest.raises(ValueError, match=r"publishing needs a version .*not '1 0'"):
        mc.hub.publish(model.bundle_path, tmp_path, name="tiny", version="1 0")


def test_publish_refuses_an_existing_archive(model, tmp_path):
    mc.hub.publish(model.bundle_path, tmp_path, name="tiny", version="1.0")

    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        mc.hub.publish(model.bundle_path, tmp_path, name="tiny", version="1.0")


def test_publish_checks_the_bundle_first(model, tmp_path):
    bundle = tmp_path / "bundle"
    model.save(bundle)
    tensors = load_file(bundle / BUNDLE_WEIGHTS_FILE)
    tensors["prototypes"] = tensors["prototypes"] * 2
    save_file(tensors, bundle / BUNDLE_WEIGHTS_FILE, metadata={"format": "mapcell"})

    with pytest.raises(BundleError, match="does not match the sha256 recorded"):
        mc.hub.publish(bundle, tmp_path / "out", name="tiny", version="1.0")
    assert not (tmp_path / "out").exists()


def test_publish_gives_an_old_bundle_its_checksum(tmp_path):
    bundle_v1 = Path(__file__).parent / "data" / "bundle_v1"

    mc.hub.publish(bundle_v1, tmp_path, name="old", version="0.1")

    with tarfile.open(tmp_path / "old-0.1.tar.gz") as tar:
        config = json.load(tar.extractfile(f"old-0.1/{BUNDLE_CONFIG_FILE}"))
    assert config["weights"]["sha256"] == sha256_file(bundle_v1 / BUNDLE_WEIGHTS_FILE)


def test_index_refuses_to_change_a_published_version(model, tmp_path):
    index = tmp_path / "index.json"
    mc.hub.publish(model.bundle_path, tmp_path, name="tiny", version="1.0", index=index)

    with pytest.raises(RegistryError, match=r"already lists tiny@1\.0 with another sha256"):
        mc.hub.publish(
            model.bundle_path,
            tmp_path / "other",
            name="tiny",
            version="1.0",
            description="changed",
            index=index,
        )
    assert len(json.loads(index.read_text())["models"]) == 1
    assert not (tmp_path / "other" / ARCHIVE).exists()


def test_publish_keeps_the_bundles_own_about(model, tmp_path):
    mc.hub.save_bundle(model, tmp_path / "named", about={"name": "tiny", "version": "1.0",
                                                          "species": "mouse"})  # fmt: skip

    entry = mc.hub.publish(tmp_path / "named", tmp_path, tissue="lung", description=None)

    assert (entry["name"], entry["version"], entry["species"]) == ("tiny", "1.0", "mouse")
    assert entry["tissue"] == "lung"


def test_index_keeps_every_version(model, tmp_path):
    index = tmp_path / "index.json"
    for version in ("1.0", "1.10", "1.9"):
        mc.hub.publish(model.bundle_path, tmp_path, name="tiny", version=version, index=index)

    versions = [m["version"] for m in json.loads(index.read_text())["models"]]
    assert versions == ["1.0", "1.9", "1.10"]


# ---------------------------------------------------------------- the registry, end to end


def test_share_through_a_registry(registry, query):
    frame = mc.hub.list_models()
    assert frame[["name", "version", "species", "downloaded"]].values.tolist() == [
        ["tiny", "1.0", "synthetic", False]
    ]

    mc.tl.annotate(query, "tiny")

    assert set(query.obs["mapcell_label"].astype(str)) <= {"alpha", "beta", "gamma", "Unknown"}
    assert query.uns["mapcell"]["model"]["source"] == "tiny"
    assert query.uns["mapcell"]["model"]["name"] == "tiny"
    assert query.uns["mapcell"]["model"]["version"] == "1.0"
    assert mc.hub.list_models()["downloaded"].tolist() == [True]
    folder = mc.settings.cache_dir / "bundles" / registry.entry["sha256"]
    assert _cache_contents(registry.cache) == sorted(
        [f"bundles/{folder.name}/{name}" for name in (BUNDLE_CARD_FILE, BUNDLE_CONFIG_FILE,
                                                      BUNDLE_WEIGHTS_FILE)]
        + [f"registries/{p.name}" for p in (registry.cache / "registries").iterdir()]
    )  # fmt: skip


def test_a_downloaded_reference_is_not_downloaded_again(registry):
    first = mc.MapCell.load("tiny@1.0")
    second = mc.MapCell.load("tiny@1.0")

    assert first.bundle_path == second.bundle_path
    assert len(registry.served.asked_for(ARCHIVE)) == 1


def test_describe(registry):
    info = mc.hub.describe("tiny")

    assert info["sha256"] == registry.entry["sha256"]
    assert info["url"] == registry.url.replace("index.json", ARCHIVE)
    assert info["path"] is None
    mc.hub.download("tiny")
    assert Path(mc.hub.describe("tiny@1.0")["path"]).is_dir()


def test_latest_version_is_chosen(registry, model):
    mc.hub.publish(model.bundle_path, registry.root, name="tiny", version="1.10",
                   index=registry.root / "index.json")  # fmt: skip

    assert mc.hub.describe("tiny")["version"] == "1.10"
    assert mc.hub.describe("tiny@1.0")["version"] == "1.0"


def test_progress_bar_when_switched_on(registry, capsys):
    mc.settings.progress_bar = True

    mc.hub.download("tiny")

    err = capsys.readouterr().err
    assert "tiny@1.0" in err
    assert "100%" in err


def test_no_progress_bar_when_switched_off(registry, capsys):
    mc.hub.download("tiny")

    assert "tiny@1.0" not in capsys.readouterr().err


# ---------------------------------------------------------------- damaged downloads


def _flip_a_byte(registry) -> None:
    data = bytearray((registry.root / ARCHIVE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    registry.served.replaced[f"/{ARCHIVE}"] = bytes(data)


def _wrong_checksum(registry) -> None:
    index = json.loads((registry.root / "index.json").read_text())
    index["models"][0]["sha256"] = "0" * 64
    (registry.root / "index.json").write_text(json.dumps(index))


def _longer_file(registry) -> None:
    registry.served.replaced[f"/{ARCHIVE}"] = (registry.root / ARCHIVE).read_bytes() + b"extra"


def _shorter_file(registry) -> None:
    registry.served.replaced[f"/{ARCHIVE}"] = (registry.root / ARCHIVE).read_bytes()[:-10]


def _archive_missing(registry) -> None:
    (registry.root / ARCHIVE).unlink()


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (_flip_a_byte, r"does not match its sha256 .*altered at the source, and nothing was kept"),
        (_wrong_checksum, r"does not match its sha256 \(it is [0-9a-f]{64}, expected 0{64}\)"),
        (_longer_file, r"sent more than the \d+ bytes expected; .*Nothing was kept"),
        (_shorter_file, r"gave \d+ bytes, but \d+ were expected; nothing was kept"),
        (_archive_missing, r"tiny-1\.0\.tar\.gz answered HTTP 404"),
    ],
    ids=["corrupted-file", "wrong-checksum", "longer-file", "shorter-file", "file-missing"],
)
def test_a_bad_download_is_refused_and_nothing_is_kept(registry, damage, match):
    damage(registry)

    with pytest.raises(DownloadError, match=match):
        mc.MapCell.load("tiny")
    assert [p for p in _cache_contents(registry.cache) if not p.startswith("registries/")] == []


def test_a_refused_download_succeeds_once_the_file_is_right(registry):
    _flip_a_byte(registry)
    with pytest.raises(DownloadError, match="does not match its sha256"):
        mc.hub.download("tiny")

    registry.served.replaced.clear()

    assert (mc.hub.download("tiny") / BUNDLE_CONFIG_FILE).is_file()


# ---------------------------------------------------------------- interrupted downloads


def test_a_lost_connection_resumes_within_the_call(registry):
    registry.served.cut_after[f"/{ARCHIVE}"] = registry.entry["size"] // 3

    mc.hub.download("tiny")

    assert registry.served.asked_for(ARCHIVE) == [None, f"bytes={registry.entry['size'] // 3}-"]


def test_a_lost_connection_resumes_on_the_next_call(registry, monkeypatch):
    monkeypatch.setattr(_download, "RETRIES", 0)
    cut = registry.entry["size"] // 2
    registry.served.cut_after[f"/{ARCHIVE}"] = cut

    with pytest.raises(
        DownloadError,
        match=rf"cut off after {cut} of {registry.entry['size']} bytes .*run the same command "
        "again to resume it",
    ):
        mc.hub.download("tiny")
    part = registry.cache / "downloads" / f"{registry.entry['sha256']}.tar.gz.part"
    assert part.stat().st_size == cut

    mc.hub.download("tiny")

    assert registry.served.asked_for(ARCHIVE) == [None, f"bytes={cut}-"]
    assert not part.exists()


def test_a_server_that_cannot_resume_restarts_cleanly(registry):
    registry.served.ignore_range = True
    registry.served.cut_after[f"/{ARCHIVE}"] = 1000

    folder = mc.hub.download("tiny")

    assert registry.served.asked_for(ARCHIVE) == [None, "bytes=1000-"]
    assert (folder / BUNDLE_WEIGHTS_FILE).is_file()


def test_a_part_longer_than_the_file_is_discarded(registry):
    part = registry.cache / "downloads" / f"{registry.entry['sha256']}.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * (registry.entry["size"] + 1))

    assert (mc.hub.download("tiny") / BUNDLE_CONFIG_FILE).is_file()
    assert registry.served.asked_for(ARCHIVE) == [None]


# ---------------------------------------------------------------- names that are not there


def test_missing_entry(registry):
    with pytest.raises(RegistryError, match=r"no reference named 'nope' in the registry .*tiny"):
        mc.MapCell.load("nope")


def test_missing_version(registry):
    with pytest.raises(RegistryError, match=r"has no version '9\.9' of 'tiny'; it has 1\.0"):
        mc.hub.download("tiny@9.9")


def test_not_a_registry_name(registry):
    with pytest.raises(RegistryError, match=r"'tiny@1 0' is not a registry name"):
        mc.hub.describe("tiny@1 0")


def test_no_registry_set(settings_reset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    with pytest.raises(
        RegistryError, match=r"'tiny' is not a folder here .*no registry is set .*MAPCELL_REGISTRY"
    ):
        mc.MapCell.load("tiny")
    with pytest.raises(RegistryError, match=r"no registry is set: set mc\.settings\.registry_url"):
        mc.hub.list_models()


def test_a_missing_path_is_still_reported_as_a_path(settings_reset, tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"no MapCell bundle at .*the folder does not exist"
    ):
        mc.MapCell.load(str(tmp_path / "nowhere"))


# ---------------------------------------------------------------- offline


def test_offline_from_the_cache(registry, query, mapcell_log):
    mc.hub.download("tiny")
    registry.stop()

    mc.tl.annotate(query, "tiny")

    assert "mapcell_label" in query.obs
    assert mc.hub.list_models()["name"].tolist() == ["tiny"]
    assert any("using the copy of the registry index from" in r.getMessage() and "cannot "
               "reach" in r.getMessage() for r in mapcell_log.records)  # fmt: skip


def test_offline_without_a_cached_index(registry):
    registry.stop()

    with pytest.raises(
        RegistryError, match=r"cannot be read, and no copy of it is cached: cannot reach http"
    ):
        mc.hub.list_models()


def test_registry_in_a_local_folder(registry, query):
    mc.settings.registry_url = str(registry.root / "index.json")

    mc.tl.annotate(query, "tiny@1.0")

    assert "mapcell_label" in query.obs
    assert registry.served.requests == []


# ---------------------------------------------------------------- malformed indexes


def _index(registry, document) -> None:
    text = document if isinstance(document, str) else json.dumps(document)
    (registry.root / "index.json").write_text(text)


def _entry(registry, **changes) -> dict:
    return {"models": [{**registry.entry, **changes}]}


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda r: "{not json", r"is not valid JSON"),
        (lambda r: {"entries": []}, r"not a mapcell registry: models is missing"),
        (lambda r: _entry(r, sha256="abc"), r"models\[0\]\.sha256 \('abc'\) is not of the form"),
        (lambda r: _entry(r, name="../evil"), r"models\[0\]\.name \('\.\./evil'\) is not of"),
        (lambda r: _entry(r, size="big"), r"models\[0\]\.size is a string \('big'\)"),
        (lambda r: {"models": [r.entry, r.entry]}, r"lists tiny@1\.0 twice"),
        (lambda r: {**_entry(r), "version": 2}, r"format version 2, newer than this mapcell"),
        (lambda r: {**_entry(r), "format": "other"}, r"format is 'other'"),
    ],
    ids=["not-json", "no-models", "bad-sha", "unsafe-name", "size-not-int", "duplicate",
         "newer-format", "other-format"],
)  # fmt: skip
def test_a_malformed_index_is_refused(registry, make, match):
    _index(registry, make(registry))

    with pytest.raises(RegistryError, match=match):
        mc.hub.list_models()


# ---------------------------------------------------------------- settings.registry_url


def test_registry_url_from_the_environment(settings_reset, monkeypatch):
    monkeypatch.setenv(REGISTRY_URL_ENV, "https://example.org/index.json")

    assert mc.settings.registry_url == "https://example.org/index.json"
    mc.settings.registry_url = "file:///srv/index.json"
    assert mc.settings.registry_url == "file:///srv/index.json"
    mc.settings.registry_url = None
    assert mc.settings.registry_url == "https://example.org/index.json"


def test_registry_url_refuses_other_schemes(settings_reset):
    with pytest.raises(ValueError, match=r"must be an http://, https:// or file:// URL .*'ftp:"):
        mc.settings.registry_url = "ftp://example.org/index.json"
    assert mc.settings.registry_url is None


# ---------------------------------------------------------------- archives and URLs


def test_load_a_local_archive(model, tmp_path, settings_reset):
    mc.hub.publish(model.bundle_path, tmp_path, name="tiny", version="1.0")

    loaded = mc.MapCell.load(tmp_path / ARCHIVE)

    assert loaded.labels == model.labels
    assert Path(loaded.bundle_path).parent == settings_reset / "bundles"


def test_load_a_pinned_url(registry):
    url = registry.url.replace("index.json", ARCHIVE) + f"#sha256={registry.entry['sha256']}"

    mc.MapCell.load(url)
    mc.MapCell.load(url)

    assert len(registry.served.asked_for(ARCHIVE)) == 1  # pinned: the cached copy is enough


def test_load_a_url_with_a_wrong_pin(registry):
    url = registry.url.replace("index.json", ARCHIVE) + "#sha256=" + "1" * 64

    with pytest.raises(DownloadError, match="does not match its sha256"):
        mc.MapCell.load(url)


def test_load_a_url_with_another_fragment(registry):
    with pytest.raises(DownloadError, match=r"the only suffix understood is #sha256="):
        mc.MapCell.load(registry.url.replace("index.json", ARCHIVE) + "#md5=abc")


def test_an_unpinned_url_falls_back_to_its_last_copy(registry, mapcell_log):
    url = registry.url.replace("index.json", ARCHIVE)
    first = mc.MapCell.load(url)
    registry.stop()

    again = mc.MapCell.load(url)

    assert again.bundle_path == first.bundle_path
    assert any("using the copy downloaded on" in r.getMessage() for r in mapcell_log.records)


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def _info(name: str, kind=tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _good_files(folder: str = "b") -> list[tuple[tarfile.TarInfo, bytes]]:
    return [(_info(f"{folder}/{BUNDLE_CONFIG_FILE}"), b"{}"),
            (_info(f"{folder}/{BUNDLE_WEIGHTS_FILE}"), b"")]  # fmt: skip


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([(_info("/etc/evil"), b"x")], r"'/etc/evil' is an absolute path"),
        ([(_info("b/../../evil"), b"x")], r"'b/\.\./\.\./evil' climbs out of the folder"),
        ([(_info("C:\\evil"), b"x")], r"is an absolute path"),
        ([(_info("b/link", tarfile.SYMTYPE, "/etc/passwd"), b"")], r"'b/link' is a link"),
        ([(_info("b/hard", tarfile.LNKTYPE, "b/x"), b"")], r"'b/hard' is a link"),
        ([(_info("b/fifo", tarfile.FIFOTYPE), b"")], r"'b/fifo' is a link or a special file"),
        ([*_good_files(), (_info(f"b/{BUNDLE_CONFIG_FILE}"), b"{}")], r"appears twice"),
        ([(_info("b/notes.txt"), b"x")], r"holds no MapCell bundle: mapcell\.json is neither"),
        ([*_good_files("a"), *_good_files("b")], r"holds no MapCell bundle"),
        ([(_info("b/x"), b"x"), (_info("b/x/y"), b"y")], r"'b/x/y' clashes with another entry"),
    ],
    ids=["absolute", "dot-dot", "windows-drive", "symlink", "hardlink", "fifo", "twice",
         "no-config", "two-bundles", "file-as-folder"],
)  # fmt: skip
def test_unsafe_archives_are_refused(tmp_path, members, match):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar(members))

    with pytest.raises(BundleError, match=match):
        _archive.unpack_bundle(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz"]
    assert not (tmp_path.parent / "evil").exists()


def test_too_many_members_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(_archive, "MAX_MEMBERS", 2)
    archive = tmp_path / "many.tar.gz"
    archive.write_bytes(_tar([*_good_files(), (_info("b/extra"), b"x")]))

    with pytest.raises(BundleError, match="holds more than 2 entries"):
        _archive.unpack_bundle(archive, tmp_path / "out")


def test_a_bundle_at_the_top_of_an_archive_unpacks(tmp_path):
    archive = tmp_path / "flat.tar.gz"
    archive.write_bytes(_tar([(_info(BUNDLE_CONFIG_FILE), b"{}")]))

    folder = _archive.unpack_bundle(archive, tmp_path / "out")

    assert (folder / BUNDLE_CONFIG_FILE).read_bytes() == b"{}"


@pytest.mark.parametrize(
    ("data", "match"),
    [(b"not an archive", "is not a .tar.gz archive"), (None, "is truncated or damaged")],
    ids=["not-a-tar", "truncated"],
)
def test_damaged_archives_are_refused(model, tmp_path, data, match):
    mc.hub.publish(model.bundle_path, tmp_path, name="tiny", version="1.0")
    archive = tmp_path / ARCHIVE
    archive.write_bytes(data if data is not None else archive.read_bytes()[:-2000])

    with pytest.raises(BundleError, match=match):
        _archive.unpack_bundle(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the command line


def test_cli_publish_list_info_get_annotate(model, registry, query, tmp_path, capsys):
    served = registry.root
    argv = ["models", "publish", model.bundle_path, "--name", "cli", "--version", "2.0",
            "--species", "synthetic", "-o", str(served),
            "--index", str(served / "index.json")]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    entry = json.loads(out)
    assert entry["sha256"] == sha256_file(served / "cli-2.0.tar.gz")
    assert "the entry was added to" in err

    assert main(["models", "list", "--registry", registry.url]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"cli\s+2\.0\s+synthetic", listing)
    assert re.search(r"tiny\s+1\.0\s+synthetic", listing)

    assert main(["models", "info", "cli"]) == 0
    assert f"sha256        {entry['sha256']}" in capsys.readouterr().out

    assert main(["models", "get", "cli@2.0"]) == 0
    assert "cli@2.0: 3 cell types, 120 genes, checked and ready in" in capsys.readouterr().out

    assert main(["models", "info", "cli"]) == 0
    assert "# cli 2.0" in capsys.readouterr().out  # the card, now that it is here

    query_file, output = tmp_path / "query.h5ad", tmp_path / "annotated.h5ad"
    query.write_h5ad(query_file)
    assert main(["annotate", str(query_file), "--model", "cli@2.0", "-o", str(output)]) == 0


def test_cli_publish_prints_the_entry_to_add(model, tmp_path, capsys):
    assert main(["models", "publish", model.bundle_path, "--name", "tiny", "--version", "1.0",
                 "-o", str(tmp_path)]) == 0  # fmt: skip

    out, err = capsys.readouterr()
    assert json.loads(out)["url"] == ARCHIVE
    assert "add the entry above to the 'models' list of the registry's index.json" in err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["models", "get", "nope"], r"mapcell models: error: no reference named 'nope'"),
        (["models", "info", "tiny@7"], r"has no version '7' of 'tiny'"),
        (["models", "publish", "nowhere", "--name", "x", "--version", "1"], r"no MapCell bundle"),
    ],
    ids=["get-missing", "info-missing-version", "publish-missing-bundle"],
)
def test_cli_models_errors(registry, capsys, argv, match):
    assert main(argv) == 1
    assert re.search(match, capsys.readouterr().err)


def test_cli_models_needs_an_action(capsys):
    with pytest.raises(SystemExit, match="2"):
        main(["models"])
    assert "required: {list,info,get,publish}" in capsys.readouterr().err


# ---------------------------------------------------------------- the Hugging Face Hub


@pytest.fixture
def hf_hub(monkeypatch, tmp_path):
    """The Hub replaced by its offline cache: uploads land in it as the Hub's downloads would."""
    hf = pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, *, branch, **kwargs):
        calls.append(("create_branch", repo_id, branch))

    def upload_folder(self, *, repo_id, folder_path, revision=None, **kwargs):
        calls.append(("upload_folder", repo_id, revision))
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        commit = f"{len(calls):040d}"
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        for file in Path(folder_path).iterdir():
            (snapshot / file.name).write_bytes(file.read_bytes())
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / (revision or "main")).write_text(commit)
        return types.SimpleNamespace(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{commit}"
        )

    monkeypatch.setattr(hf.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(hf.HfApi, "create_branch", create_branch)
    monkeypatch.setattr(hf.HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return types.SimpleNamespace(cache=cache, calls=calls)


def test_push_then_pull_through_the_hub(model, hf_hub, query):
    url = mc.hub.push_to_hf_hub(model.bundle_path, "me/tiny", revision="v1")

    assert url.startswith("https://huggingface.co/me/tiny/commit/")
    assert [call[0] for call in hf_hub.calls] == ["create_repo", "create_branch", "upload_folder"]
    folder = mc.hub.pull_from_hf_hub("me/tiny", revision="v1")
    readme = (folder / BUNDLE_CARD_FILE).read_text(encoding="utf-8")
    assert readme.startswith("---\nlibrary_name: mapcell\n")
    assert "\n---\n# MapCell reference of 3 cell types" in readme

    mc.tl.annotate(query, "hf://me/tiny@v1")

    assert query.uns["mapcell"]["model"]["source"] == "hf://me/tiny@v1"


def test_push_checks_the_bundle_before_the_hub(model, hf_hub, tmp_path):
    bundle = tmp_path / "bundle"
    model.save(bundle)
    (bundle / BUNDLE_WEIGHTS_FILE).write_bytes(b"not weights")

    with pytest.raises(BundleError, match="truncated or damaged"):
        mc.hub.push_to_hf_hub(bundle, "me/tiny")
    assert hf_hub.calls == []


def test_pull_offline_without_the_repository(hf_hub):
    with pytest.raises(
        DownloadError, match=r"me/absent@v2 is not in the local Hugging Face cache"
    ):
        mc.hub.pull_from_hf_hub("me/absent", revision="v2")


@pytest.mark.parametrize("source", ["hf://tiny", "hf://a/b/c", "hf:///x"], ids=str)
def test_hf_source_must_name_a_repository(source):
    with pytest.raises(RegistryError, match=r"is not of the form hf://owner/repository"):
        mc.hub.resolve(source)


def test_without_huggingface_hub(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)

    with pytest.raises(ImportError, match=r"pip install 'mapcell\[hf\]'"):
        mc.hub.push_to_hf_hub(model.bundle_path, "me/tiny")
    with pytest.raises(ImportError, match=r"needs the package huggingface_hub"):
        mc.MapCell.load("hf://me/tiny")


def test_pull_a_repository_the_hub_does_not_have(hf_hub, monkeypatch):
    import huggingface_hub
    import huggingface_hub.utils

    def not_found(*args, **kwargs):
        # Built without its HTTP response, whose type differs between huggingface_hub versions.
        error = huggingface_hub.utils.RepositoryNotFoundError
        raise error.__new__(error)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_found)

    with pytest.raises(RegistryError, match=r"the Hugging Face Hub has no me/absent \(or it is"):
        mc.hub.pull_from_hf_hub("me/absent")


def test_download_again_by_force(registry):
    folder = mc.hub.download("tiny")
    (folder / BUNDLE_WEIGHTS_FILE).write_bytes(b"damaged")
    with pytest.raises(
        BundleError, match=r"cached copy: to download it again, mapcell models get"
    ):
        mc.MapCell.load("tiny")

    mc.hub.download("tiny", force=True)

    assert mc.MapCell.load("tiny").labels == ["alpha", "beta", "gamma"]
    assert len(registry.served.asked_for(ARCHIVE)) == 2


def test_cli_get_force(registry, capsys):
    assert main(["models", "get", "tiny"]) == 0
    assert main(["models", "get", "tiny", "--force"]) == 0

    assert len(registry.served.asked_for(ARCHIVE)) == 2
    assert "checked and ready" in capsys.readouterr().out


def test_archives_that_unpack_too_large_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(_archive, "MAX_UNPACKED_BYTES", 3)
    archive = tmp_path / "big.tar.gz"
    archive.write_bytes(_tar([(_info("b/mapcell.json"), b"{}"), (_info("b/x"), b"xx")]))

    with pytest.raises(
        BundleError, match=r"would unpack to more than 3 bytes; it is not a MapCell bundle"
    ):
        _archive.unpack_bundle(archive, tmp_path / "out")


# ---------------------------------------------------------------- rarer download paths


def test_a_server_answering_another_range_starts_again(registry, monkeypatch):
    monkeypatch.setattr(_download, "RETRIES", 2)
    registry.served.wrong_range = True
    registry.served.cut_after[f"/{ARCHIVE}"] = 5000

    mc.hub.download("tiny")

    cut = "bytes=5000-"
    assert registry.served.asked_for(ARCHIVE) == [None, cut, None]


def test_a_complete_part_of_unknown_size_is_finished(registry, tmp_path):
    url = registry.url.replace("index.json", ARCHIVE)
    destination = tmp_path / "copy.tar.gz"
    destination.with_name("copy.tar.gz.part").write_bytes((registry.root / ARCHIVE).read_bytes())

    _download.download_file(url, destination, sha256=registry.entry["sha256"])

    assert registry.served.asked_for(ARCHIVE) == [f"bytes={registry.entry['size']}-", None]
    assert sha256_file(destination) == registry.entry["sha256"]


def test_only_http_and_file_urls_are_downloaded(tmp_path):
    with pytest.raises(DownloadError, match=r"only http://, https:// and file:// URLs"):
        _download.download_file("ftp://example.org/x.tar.gz", tmp_path / "x")


def test_an_index_too_large_is_refused(registry, monkeypatch):
    monkeypatch.setattr(_download, "MAX_INDEX_BYTES", 100)

    with pytest.raises(RegistryError, match=r"is larger than 100 bytes; it is not a registry"):
        mc.hub.list_models()


def test_a_registry_address_of_another_scheme_is_refused(settings_reset, monkeypatch):
    monkeypatch.setenv(REGISTRY_URL_ENV, "ftp://example.org/index.json")

    with pytest.raises(RegistryError, match=r"must be an http\(s\):// or file:// URL or a path"):
        mc.hub.list_models()


def test_publish_to_an_index_that_is_not_json(model, tmp_path):
    (tmp_path / "index.json").write_text("{oops")

    with pytest.raises(RegistryError, match=r"index\.json is not valid JSON .*fix or remove it"):
        mc.hub.publish(model.bundle_path, tmp_path, name="tiny", version="1.0",
                       index=tmp_path / "index.json")  # fmt: skip


def test_a_file_url_of_an_archive(model, tmp_path, settings_reset):
    mc.hub.publish(model.bundle_path, tmp_path, name="tiny", version="1.0")

    loaded = mc.MapCell.load((tmp_path / ARCHIVE).as_uri())

    assert loaded.labels == model.labels


def test_a_damaged_cached_archive_copy_says_how_to_refresh(model, tmp_path, settings_reset):
    mc.hub.publish(model.bundle_path, tmp_path, name="tiny", version="1.0")
    folder = Path(mc.MapCell.load(tmp_path / ARCHIVE).bundle_path)
    (folder / BUNDLE_WEIGHTS_FILE).write_bytes(b"damaged")

    with pytest.raises(
        BundleError, match=r"cached copy: to download it again, delete .* and load"
    ):
        mc.MapCell.load(tmp_path / ARCHIVE)


def test_resolve_refuses_other_types():
    with pytest.raises(TypeError, match=r"named by a path, URL or registry name, not int"):
        mc.hub.resolve(3)
