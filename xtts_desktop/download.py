"""Getting XTTS v2: licence agreement, resumable verified download from the Hub, folder checks."""

from __future__ import annotations

import collections
import datetime
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xtts_desktop import config
from xtts_desktop.errors import Cancelled, UserError

logger = logging.getLogger(__name__)

# ----- what is downloaded -------------------------------------------------------------------

# coqui-tts 0.28 downloads XTTS v2 from this repository (TTS/.models.json, the entry
# "tts_models/multilingual/multi-dataset/xtts_v2": "repo_id": "tts-hub/XTTS-v2"), where its
# maintainers republished Coqui's checkpoints so that they load with torch's weights_only.
REPO_ID = "tts-hub/XTTS-v2"
# coqui-tts pins no revision: TTS/utils/manage.py calls snapshot_download(repo_id, ...) without
# one, which means the branch "main". No commit hash of tts-hub/XTTS-v2 could be looked up
# from here (no access to the Hub), so "main" it is; each download resolves it to one commit
# first and takes every file from that commit (recorded in model.json), so a repository
# update in the middle of a download can never mix files. Put a commit hash here to pin it.
REVISION = "main"
# What the app loads (engine.model.REQUIRED_FILES), small ones first. Not dvae.pth and
# mel_stats.pth (training only), not the sample recordings.
MODEL_FILES = ("config.json", "vocab.json", "speakers_xtts.pth", "model.pth")

# ----- the licence --------------------------------------------------------------------------

LICENSE_NAME = "Coqui Public Model License 1.0.0"
LICENSE_ID = "CPML"
LICENSE_VERSION = "1.0.0"
LICENSE_URL = "https://coqui.ai/cpml"
# coqui-tts 0.28 links this copy (TTS/utils/manage.py, LICENSE_URLS["cpml"]); coqui.ai closed.
LICENSE_MIRROR_URL = "https://tts-hub.github.io/cpml"
LICENSE_SUMMARY = (
    "XTTS v2's weights are published by Coqui under the Coqui Public Model License (CPML) "
    "1.0.0. In plain words: you may use the model, and the speech it makes, for "
    "non-commercial purposes only (personal use, study, research, hobby projects). Using it "
    "to earn money or for a business, directly or indirectly, is not allowed under this "
    "licence. If you pass the model on, the licence goes with it. This summary is not the "
    "licence: read the full text before you agree."
)
# coqui-tts's own switch: with it set, TTS.utils.manage.ModelManager.tos_agreed() is true and
# coqui never asks its interactive input() question (which would hang a window).
COQUI_TOS_SWITCH = "COQUI_TOS_AGREED"

# ----- how -----------------------------------------------------------------------------------

BLOCK_SIZE = 1 << 20
# Free space kept beyond the files themselves, so a download never fills a disk to the brim.
SPACE_MARGIN_BYTES = 200_000_000
# A broken connection is resumed (HTTP Range) this many times in one run before giving up.
RETRIES = 3
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
PROGRESS_INTERVAL_S = 0.1
SPEED_WINDOW_S = 3.0
LIBRARY_NAME = "xtts-desktop"


def _library_version() -> str:
    from importlib import metadata

    try:
        return metadata.version(LIBRARY_NAME)
    except metadata.PackageNotFoundError:
        return "dev"


ProgressCallback = Callable[["DownloadProgress"], None]


# ----- values --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LicenseAgreement:
    license: str
    version: str
    agreed_at: str  # ISO 8601, UTC


@dataclass(frozen=True)
class DownloadProgress:
    """Where a download stands; done_bytes counts what is already on disk (resumed or kept)."""

    filename: str
    file_index: int  # 1-based
    file_count: int
    file_done: int
    file_total: int
    done_bytes: int
    total_bytes: int
    speed: float  # bytes per second over the last few seconds; 0.0 until measured

    @property
    def fraction(self) -> float:
        return self.done_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def eta_seconds(self) -> float | None:
        if self.speed <= 0:
            return None
        return max(0.0, (self.total_bytes - self.done_bytes) / self.speed)


@dataclass(frozen=True)
class DownloadResult:
    model_dir: Path
    repo_id: str
    revision: str
    commit: str
    downloaded_bytes: int  # fetched in this run
    total_bytes: int
    reused_files: tuple[str, ...]  # already complete on disk, not fetched again


@dataclass(frozen=True)
class ModelRecord:
    """The folder the app recorded as its model (config_dir()/model.json)."""

    model_dir: Path
    source: str  # "download" or "folder"
    file_sizes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class HubSettings:
    """The Hugging Face settings as the environment has them now (not at import time)."""

    endpoint: str
    cache_dir: Path
    offline: bool
    token: str | None


# ----- sizes for people ----------------------------------------------------------------------


def format_bytes(count: float) -> str:
    """Decimal units, as the Hub shows them: 950 kB, 412 MB, 1.87 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            value = count / scale
            digits = 2 if value < 10 else 1 if value < 100 else 0
            return f"{value:.{digits}f} {unit}"
    return f"{int(count)} bytes"


def format_progress(progress: DownloadProgress) -> str:
    """'412 MB of 1.87 GB · 35.2 MB/s · about 40 s left'."""
    parts = [f"{format_bytes(progress.done_bytes)} of {format_bytes(progress.total_bytes)}"]
    if progress.speed > 0:
        parts.append(f"{format_bytes(progress.speed)}/s")
    eta = progress.eta_seconds
    if eta is not None and progress.done_bytes < progress.total_bytes:
        parts.append(f"about {eta:.0f} s left" if eta < 90 else f"about {eta / 60:.0f} min left")
    return " · ".join(parts)


# ----- the licence agreement -----------------------------------------------------------------


def license_path() -> Path:
    return config.config_dir() / "license.json"


def read_agreement() -> LicenseAgreement | None:
    """The recorded agreement to the current licence version, or None."""
    path = license_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        logger.warning("the licence agreement in %s is unreadable (%s); asking again", path, error)
        return None
    if (
        not isinstance(raw, dict)
        or raw.get("license") != LICENSE_ID
        or raw.get("version") != LICENSE_VERSION
    ):
        return None
    return LicenseAgreement(LICENSE_ID, LICENSE_VERSION, str(raw.get("agreed_at", "")))


def has_agreed() -> bool:
    return read_agreement() is not None


def record_agreement() -> LicenseAgreement:
    """Record that the user agreed to the CPML (only call this after they did), and tell coqui."""
    agreement = LicenseAgreement(
        LICENSE_ID,
        LICENSE_VERSION,
        datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    payload = {
        "license": agreement.license,
        "version": agreement.version,
        "name": LICENSE_NAME,
        "url": LICENSE_URL,
        "agreed_at": agreement.agreed_at,
    }
    config.atomic_write_text(license_path(), json.dumps(payload, indent=2) + "\n")
    apply_coqui_switch()
    logger.info("recorded the agreement to the %s", LICENSE_NAME)
    return agreement


def apply_coqui_switch() -> bool:
    """Set COQUI_TOS_AGREED=1 for this process if, and only if, the user agreed; returns that."""
    if not has_agreed():
        return False
    os.environ[COQUI_TOS_SWITCH] = "1"
    return True


NEEDS_AGREEMENT = (
    f"XTTS v2 is downloaded only after you agree to its licence, the {LICENSE_NAME} "
    f"(non-commercial use only, {LICENSE_URL}): run 'xtts-desktop download' in a terminal to be "
    "asked, or add --agree-license."
)


# ----- where the model is recorded -----------------------------------------------------------


def model_record_path() -> Path:
    return config.config_dir() / "model.json"


def read_model_record() -> ModelRecord | None:
    path = model_record_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        model_dir = raw["model_dir"]
        if not isinstance(model_dir, str) or not model_dir:
            raise ValueError("no model_dir")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        logger.warning("the model record %s is unreadable (%s); ignoring it", path, error)
        return None
    sizes: dict[str, int] = {}
    files = raw.get("files")
    if isinstance(files, dict):
        for name, info in files.items():
            if isinstance(info, dict) and isinstance(info.get("size"), int):
                sizes[name] = info["size"]
    return ModelRecord(Path(model_dir), str(raw.get("source", "")), sizes)


def record_model_dir(model_dir: Path, source: str, details: dict[str, Any] | None = None) -> Path:
    """Write config_dir()/model.json: {"model_dir": ..., "source": ..., "recorded_at": ...}."""
    payload: dict[str, Any] = {
        "model_dir": str(model_dir),
        "source": source,
        "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    payload.update(details or {})
    config.atomic_write_text(model_record_path(), json.dumps(payload, indent=2) + "\n")
    logger.info("recorded %s as the model folder (%s)", model_dir, source)
    return model_dir


# ----- checking a folder ---------------------------------------------------------------------


def check_model_folder(
    path: str | os.PathLike[str],
    *,
    deep: bool = True,
    expected_sizes: dict[str, int] | None = None,
) -> Path:
    """Raise a UserError naming the file at fault; return the folder (absolute).

    engine.model.check_model_dir first (missing, empty, unreadable files, truncated archives),
    then the expected sizes (given, or recorded in model.json when it downloaded this folder),
    whether vocab.json matches config.json, and, when deep, every byte of the two torch
    archives against their CRC-32 (read as zip archives, never unpickled).
    """
    from xtts_desktop.engine.model import check_model_dir

    folder = Path(path).expanduser().absolute()
    check_model_dir(folder)
    if expected_sizes is None:
        record = read_model_record()
        if record is not None and _same_folder(record.model_dir, folder):
            expected_sizes = record.file_sizes
    if expected_sizes:
        for name, expected in expected_sizes.items():
            file = folder / name
            actual = file.stat().st_size if file.is_file() else None
            if actual is not None and actual != expected:
                raise UserError(
                    f"{file} is {actual} bytes but the downloaded file was "
                    f"{expected} bytes: it was changed or cut short; download the model again."
                )
    _check_vocab_matches_config(folder)
    if deep:
        for name in ("speakers_xtts.pth", "model.pth"):
            _check_torch_archive(folder / name)
    return folder


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def _vocab_size(vocab_file: Path) -> int:
    raw = json.loads(vocab_file.read_text(encoding="utf-8"))
    ids = [i for i in raw["model"]["vocab"].values() if isinstance(i, int)]
    ids += [
        t["id"]
        for t in raw.get("added_tokens") or []
        if isinstance(t, dict) and isinstance(t.get("id"), int)
    ]
    if not ids:
        raise ValueError("no tokens")
    # coqui sizes the GPT's text embedding the same way (VoiceBpeTokenizer.get_number_tokens).
    return max(ids) + 1


def _check_vocab_matches_config(folder: Path) -> None:
    vocab_file = folder / "vocab.json"
    try:
        expected = json.loads((folder / "config.json").read_text(encoding="utf-8"))[
            "model_args"
        ].get("gpt_number_text_tokens")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        expected = None
    try:
        size = _vocab_size(vocab_file)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(
            f"{vocab_file} is not a tokenizer vocabulary ({error}); download the model again."
        ) from None
    if isinstance(expected, int) and expected > 0 and size != expected:
        raise UserError(
            f"{vocab_file} has {size} text tokens but {folder / 'config.json'} expects {expected}: "
            "the files come from different models; download the model again."
        )


def _check_torch_archive(file: Path) -> None:
    try:
        with zipfile.ZipFile(file) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                raise UserError(f"{file} is not a PyTorch checkpoint; download the model again.")
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        damaged = "the archive"
    if damaged is not None:
        raise UserError(f"{file} is corrupt ({damaged} is damaged); download the model again.")


def use_model_folder(path: str | os.PathLike[str]) -> Path:
    """Check a folder of XTTS v2 files already on disk and record it as the model (not copied)."""
    folder = check_model_folder(path, deep=True)
    record = read_model_record()
    if (
        record is not None
        and record.source == "download"
        and _same_folder(record.model_dir, folder)
    ):
        return folder  # the folder this app downloaded: its record (sizes, commit) stays
    apply_coqui_switch()
    return record_model_dir(folder, "folder")


# ----- the Hub settings ----------------------------------------------------------------------


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache now: HF_HUB_CACHE, else HF_HOME/hub, else the default."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HF_HUB_CACHE"])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def hub_settings() -> HubSettings:
    """HF_ENDPOINT, HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE and HF_TOKEN as they are now.

    huggingface_hub reads these into its constants once, at import; the environment may have
    changed since (a test, a window setting), so the current values win, the constants fill in.
    """
    from huggingface_hub import constants, get_token

    endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    offline = constants.is_offline_mode() or _truthy(os.environ.get("HF_HUB_OFFLINE"))
    try:
        token = get_token()
    except Exception as error:  # a broken token setup (OIDC) must not hide the real problem
        logger.warning("could not read a Hugging Face token (%s); going on without one", error)
        token = None
    return HubSettings(endpoint=endpoint, cache_dir=hub_cache_dir(), offline=offline, token=token)


def default_download_dir(repo_id: str = REPO_ID) -> Path:
    """The repository's folder in the Hugging Face cache (snapshots/<commit> holds the files)."""
    from huggingface_hub import constants

    return hub_cache_dir() / constants.REPO_ID_SEPARATOR.join(["models", *repo_id.split("/")])


OFFLINE_MESSAGE = (
    "Hugging Face offline mode is on (HF_HUB_OFFLINE), so XTTS v2 cannot be downloaded: unset "
    "HF_HUB_OFFLINE, or use a model folder already on disk "
    "(xtts-desktop download --use-folder DIR)."
)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


# ----- the download --------------------------------------------------------------------------


@dataclass(frozen=True)
class _RemoteFile:
    name: str
    url: str  # where the bytes come from (the CDN location for large files)
    size: int | None
    etag: str
    same_host: bool  # whether the bytes come from the Hub itself (the token may go along)

    @property
    def checksum_kind(self) -> str | None:
        # The Hub's ETag is the sha256 for LFS files and the git blob sha1 for the others.
        if re.fullmatch(r"[0-9a-f]{64}", self.etag):
            return "sha256"
        if re.fullmatch(r"[0-9a-f]{40}", self.etag):
            return "git-sha1"
        return None


@dataclass(frozen=True)
class _Placement:
    final: Path
    partial: Path
    lock: Path
    link: Path | None  # the snapshot entry in the Hugging Face cache layout


class _Tracker:
    """Counts bytes across files and calls the progress callback at most ten times a second."""

    def __init__(self, callback: ProgressCallback | None, total: int, file_count: int) -> None:
        self.callback = callback
        self.total = total
        self.file_count = file_count
        self.done_before = 0  # bytes of finished files
        self.fetched = 0  # bytes received in this run
        self.samples: collections.deque[tuple[float, int]] = collections.deque()
        self.last_report = 0.0
        self.name = ""
        self.index = 0
        self.file_done = 0
        self.file_total = 0

    def start_file(self, name: str, index: int, size: int, already: int) -> None:
        self.name, self.index, self.file_total, self.file_done = name, index, size, already
        self.report(force=True)

    def restart_file(self, already: int) -> None:
        self.file_done = already

    def add(self, count: int) -> None:
        self.file_done += count
        self.fetched += count
        now = time.monotonic()
        self.samples.append((now, self.fetched))
        while self.samples and now - self.samples[0][0] > SPEED_WINDOW_S:
            self.samples.popleft()
        self.report()

    def finish_file(self) -> None:
        self.file_done = self.file_total
        self.report(force=True)
        self.done_before += self.file_total

    def speed(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.callback is None or (not force and now - self.last_report < PROGRESS_INTERVAL_S):
            return
        self.last_report = now
        self.callback(
            DownloadProgress(
                filename=self.name,
                file_index=self.index,
                file_count=self.file_count,
                file_done=self.file_done,
                file_total=self.file_total,
                done_bytes=min(self.total, self.done_before + self.file_done),
                total_bytes=self.total,
                speed=self.speed(),
            )
        )


class _Interrupted(Exception):
    """The connection ended before the whole file arrived."""


def free_disk_bytes(path: Path) -> int:
    """Free bytes on the disk that holds ``path`` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(Path.cwd()).free


def download_model(
    target_dir: str | os.PathLike[str] | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    repo_id: str = REPO_ID,
    revision: str = REVISION,
    files: tuple[str, ...] = MODEL_FILES,
) -> DownloadResult:
    """Download XTTS v2 into the Hugging Face cache (or ``target_dir``) and record the folder.

    Refuses, without a single request, when the licence was not agreed to or offline mode is on.
    Checks the free space first, resumes partial files (HTTP Range), retries a broken
    connection, verifies every file's size and checksum, and raises Cancelled when ``cancel``
    is set (checked between blocks; the partial file is kept for the next run).
    """
    if not has_agreed():
        raise UserError(NEEDS_AGREEMENT)
    apply_coqui_switch()
    hub = hub_settings()
    if hub.offline:
        raise UserError(OFFLINE_MESSAGE)
    cancel = cancel or threading.Event()

    remote, commit = _plan(hub, repo_id, revision, files, cancel)
    storage = default_download_dir(repo_id) if target_dir is None else None
    if storage is not None:
        model_dir = storage / "snapshots" / commit
    else:
        model_dir = Path(target_dir).expanduser().absolute()  # type: ignore[arg-type]
    placements = [_placement(hub, storage, model_dir, repo_id, item) for item in remote]

    total = sum(item.size or 0 for item in remote)
    complete = [
        _is_complete(item, place, verify=storage is None)
        for item, place in zip(remote, placements, strict=True)
    ]
    remaining = sum(
        (item.size or 0) - _partial_size(place, item)
        for item, place, done in zip(remote, placements, complete, strict=True)
        if not done
    )
    _check_space(model_dir if storage is None else storage, remaining)

    tracker = _Tracker(progress, total, len(remote))
    reused: list[str] = []
    for index, (item, place, done) in enumerate(
        zip(remote, placements, complete, strict=True), start=1
    ):
        if cancel.is_set():
            raise Cancelled(_cancelled_message(place.partial.parent))
        if done:
            reused.append(item.name)
            tracker.start_file(item.name, index, item.size or 0, item.size or 0)
        else:
            _fetch(hub, item, place, tracker, cancel, index)
        if place.link is not None:
            try:
                _link(place.final, place.link)
            except OSError as error:
                raise UserError(_os_error_message(error, place.link)) from None
        tracker.finish_file()

    if storage is None:
        _remove_if_empty(model_dir / ".download")
    elif revision != commit:
        # refs/main -> the commit, as huggingface_hub records it, so its cache lookups find it.
        ref = storage / "refs" / revision
        try:
            config.atomic_write_text(ref, commit)
        except OSError as error:
            raise UserError(_os_error_message(error, ref)) from None

    # The checksums were verified above; these are the cheap structural checks.
    check_model_folder(
        model_dir, deep=False, expected_sizes={i.name: i.size for i in remote if i.size is not None}
    )
    record_model_dir(
        model_dir,
        "download",
        {
            "repo_id": repo_id,
            "revision": revision,
            "commit": commit,
            "files": {item.name: {"size": item.size, "etag": item.etag} for item in remote},
        },
    )
    logger.info("XTTS v2 (%s@%s) is in %s", repo_id, commit, model_dir)
    return DownloadResult(
        model_dir=model_dir,
        repo_id=repo_id,
        revision=revision,
        commit=commit,
        downloaded_bytes=tracker.fetched,
        total_bytes=total,
        reused_files=tuple(reused),
    )


def _cancelled_message(where: Path) -> str:
    return (
        f"The download was cancelled; what arrived is kept in {where} and the next download "
        "resumes from there."
    )


def _plan(
    hub: HubSettings, repo_id: str, revision: str, files: tuple[str, ...], cancel: threading.Event
) -> tuple[list[_RemoteFile], str]:
    """Ask the Hub for each file's size, checksum and location, all from one commit."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    remote: list[_RemoteFile] = []
    commit: str | None = None
    for name in files:
        if cancel.is_set():
            raise Cancelled("The download was cancelled before any file was fetched.")
        # The first answer names the commit "main" is at; the other files come from that commit.
        url = hf_hub_url(repo_id, name, revision=commit or revision, endpoint=hub.endpoint)
        try:
            metadata = get_hf_file_metadata(
                url,
                token=hub.token or False,
                library_name=LIBRARY_NAME,
                library_version=_library_version(),
                endpoint=hub.endpoint,
                timeout=CONNECT_TIMEOUT_S + READ_TIMEOUT_S,
            )
        except Exception as error:
            raise UserError(_hub_error_message(error, hub, repo_id, revision, name)) from None
        if not metadata.commit_hash:
            raise UserError(
                f"The server at {hub.endpoint} did not say which version of {repo_id} it serves "
                "(no X-Repo-Commit header); check HF_ENDPOINT or your proxy."
            )
        if not metadata.etag:
            raise UserError(
                f"The server at {hub.endpoint} gave no checksum (ETag) for {name}; check "
                "HF_ENDPOINT or your proxy."
            )
        commit = commit or metadata.commit_hash
        location = metadata.location or url
        remote.append(
            _RemoteFile(
                name=name,
                url=location,
                size=metadata.size,
                etag=metadata.etag,
                same_host=_origin(location) == _origin(hub.endpoint),
            )
        )
    assert commit is not None
    return remote, commit


def _safe_etag(etag: str) -> str:
    return (
        etag
        if re.fullmatch(r"[0-9A-Za-z._-]{1,128}", etag)
        else hashlib.sha256(etag.encode()).hexdigest()
    )


def _placement(
    hub: HubSettings, storage: Path | None, model_dir: Path, repo_id: str, item: _RemoteFile
) -> _Placement:
    etag = _safe_etag(item.etag)
    if storage is not None:
        # The Hugging Face cache layout, so huggingface_hub and other tools find and share it;
        # the lock file is the one huggingface_hub itself takes for this blob.
        blob = storage / "blobs" / etag
        return _Placement(
            final=blob,
            partial=blob.with_name(f"{etag}.incomplete"),
            lock=hub.cache_dir / ".locks" / storage.name / f"{etag}.lock",
            link=model_dir / item.name,
        )
    work = model_dir / ".download"
    return _Placement(
        final=model_dir / item.name,
        partial=work / f"{item.name}.{etag}.incomplete",
        lock=work / f"{item.name}.lock",
        link=None,
    )


def _partial_size(place: _Placement, item: _RemoteFile) -> int:
    try:
        size = place.partial.stat().st_size
    except OSError:
        return 0
    return size if item.size is None or size <= item.size else 0


def _is_complete(item: _RemoteFile, place: _Placement, verify: bool) -> bool:
    """A file already on disk: in the cache a blob is named by its checksum, elsewhere check it."""
    try:
        size = place.final.stat().st_size
    except OSError:
        return False
    if item.size is not None and size != item.size:
        return False
    if not verify:
        return True
    try:
        return _checksum_matches(place.final, item, threading.Event())
    except OSError:
        return False  # unreadable: fetched again, and replaced


def _check_space(where: Path, needed: int) -> None:
    if needed <= 0:
        return
    free = free_disk_bytes(where)
    if free < needed + SPACE_MARGIN_BYTES:
        raise UserError(
            f"Not enough disk space for XTTS v2 in {where}: it needs {format_bytes(needed)} plus "
            f"{format_bytes(SPACE_MARGIN_BYTES)} to spare, and {format_bytes(free)} is free; free "
            "some space or choose another folder."
        )


def _fetch(
    hub: HubSettings,
    item: _RemoteFile,
    place: _Placement,
    tracker: _Tracker,
    cancel: threading.Event,
    index: int,
) -> None:
    import filelock

    try:
        place.partial.parent.mkdir(parents=True, exist_ok=True)
        place.final.parent.mkdir(parents=True, exist_ok=True)
        place.lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(_os_error_message(error, place.partial.parent)) from None
    lock = filelock.FileLock(str(place.lock), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise UserError(
            f"Another download of {item.name} is running (it holds {place.lock}); wait for it to "
            "finish, then try again."
        ) from None
    try:
        tracker.start_file(item.name, index, item.size or 0, _partial_size(place, item))
        _stream_with_retries(hub, item, place, tracker, cancel)
        if cancel.is_set():
            raise Cancelled(_cancelled_message(place.partial.parent))
        _verify(item, place, cancel)
        try:
            os.replace(place.partial, place.final)
        except OSError as error:
            raise UserError(_os_error_message(error, place.final)) from None
    finally:
        lock.release()


def _stream_with_retries(
    hub: HubSettings,
    item: _RemoteFile,
    place: _Placement,
    tracker: _Tracker,
    cancel: threading.Event,
) -> None:
    import httpx2

    failures = 0
    while True:
        before = _partial_size(place, item)
        try:
            _stream_once(hub, item, place, tracker, cancel)
            return
        except (httpx2.TransportError, _Interrupted) as error:
            if isinstance(error, httpx2.ConnectError) and before == 0 and failures == 0:
                # Nothing arrived at all: say so now rather than retrying a dead address.
                raise UserError(_connection_message(error, hub, place)) from None
            progressed = _partial_size(place, item) > before
            failures = 0 if progressed else failures + 1
            if failures > RETRIES:
                raise UserError(_connection_message(error, hub, place)) from None
            delay = 0.0 if progressed else min(8.0, 2.0 ** (failures - 1))
            logger.warning(
                "the download of %s broke off (%s); resuming in %.0f s", item.name, error, delay
            )
            if cancel.wait(delay):
                raise Cancelled(_cancelled_message(place.partial.parent)) from None


def _stream_once(
    hub: HubSettings,
    item: _RemoteFile,
    place: _Placement,
    tracker: _Tracker,
    cancel: threading.Event,
) -> None:
    import httpx2
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    offset = _partial_size(place, item)
    if offset == 0:
        place.partial.unlink(missing_ok=True)
    if item.size is not None and offset == item.size:
        return
    headers = build_hf_headers(
        token=(hub.token or False) if item.same_host else False,
        library_name=LIBRARY_NAME,
        library_version=_library_version(),
        headers={"Accept-Encoding": "identity"},
    )
    if offset:
        headers["Range"] = f"bytes={offset}-"
    tracker.restart_file(offset)
    timeout = httpx2.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    try:
        with get_session().stream("GET", item.url, headers=headers, timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            if offset and response.status_code != 206:
                logger.info(
                    "the server ignored the Range request for %s; starting it again", item.name
                )
                offset = 0
                tracker.restart_file(0)
            elif offset and not response.headers.get("Content-Range", "").startswith(
                f"bytes {offset}-"
            ):
                raise _Interrupted(f"the server resumed {item.name} at the wrong place")
            written = offset
            with open(place.partial, "r+b" if offset else "wb") as out:
                out.seek(offset)
                out.truncate()
                for chunk in response.iter_bytes(BLOCK_SIZE):
                    if cancel.is_set():
                        raise Cancelled(_cancelled_message(place.partial.parent))
                    out.write(chunk)
                    written += len(chunk)
                    if item.size is not None and written > item.size:
                        break
                    tracker.add(len(chunk))
    except (Cancelled, UserError, _Interrupted, httpx2.TransportError):
        raise
    except OSError as error:
        if hasattr(error, "response") or isinstance(error, ConnectionError):
            raise UserError(_hub_error_message(error, hub, "", "", item.name)) from None
        raise UserError(_os_error_message(error, place.partial)) from None
    except Exception as error:
        raise UserError(_hub_error_message(error, hub, "", "", item.name)) from None
    if item.size is not None and written < item.size:
        raise _Interrupted(f"{item.name} ended after {written} of {item.size} bytes")


def _checksum_matches(path: Path, item: _RemoteFile, cancel: threading.Event) -> bool:
    kind = item.checksum_kind
    if kind is None:
        logger.warning(
            "no checksum known for %s (ETag %s); only its size was checked", item.name, item.etag
        )
        return True
    size = path.stat().st_size
    digest = hashlib.sha256() if kind == "sha256" else hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK_SIZE * 4):
            if cancel.is_set():
                raise Cancelled(_cancelled_message(path.parent))
            digest.update(block)
    return digest.hexdigest() == item.etag


def _verify(item: _RemoteFile, place: _Placement, cancel: threading.Event) -> None:
    size = place.partial.stat().st_size
    if (item.size is not None and size != item.size) or not _checksum_matches(
        place.partial, item, cancel
    ):
        # A damaged file cannot be resumed into a good one: drop it, so the next run starts clean.
        place.partial.unlink(missing_ok=True)
        why = (
            f"{size} bytes instead of {item.size}"
            if item.size is not None and size != item.size
            else "checksum mismatch"
        )
        raise UserError(
            f"The downloaded {item.name} is corrupt ({why}); it was deleted: "
            "run the download again."
        )


def _link(blob: Path, link: Path) -> None:
    """snapshots/<commit>/<name> -> ../../blobs/<etag>, as huggingface_hub lays out its cache."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == blob.resolve():
            return
        link.unlink()
    try:
        link.symlink_to(os.path.relpath(blob, link.parent))
    except OSError:
        # No symlinks allowed (Windows without developer mode): a copy, as huggingface_hub does.
        shutil.copyfile(blob, link)


def _remove_if_empty(folder: Path) -> None:
    try:
        for leftover in folder.glob("*.lock"):
            leftover.unlink(missing_ok=True)
        folder.rmdir()
    except OSError:
        pass


# ----- failures in one sentence --------------------------------------------------------------


def _os_error_message(error: OSError, path: Path) -> str:
    if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return (
            f"The disk is full while writing {path}; free some space and run the download "
            "again (it resumes)."
        )
    if isinstance(error, PermissionError):
        return f"Cannot write {path}: permission denied; choose another folder with --dir."
    return f"Cannot write {path} ({error.strerror or error})."


def _connection_message(error: Exception, hub: HubSettings, place: _Placement) -> str:
    return (
        f"Cannot download from {hub.endpoint}: the connection failed ({_first_line(error)}). "
        f"Check your internet connection (or HF_ENDPOINT / proxy settings) and run the download "
        f"again; what arrived is kept in {place.partial.parent} and resumed."
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:160] if text else type(error).__name__


def _hub_error_message(
    error: Exception, hub: HubSettings, repo_id: str, revision: str, name: str
) -> str:
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo = repo_id or REPO_ID
    status = getattr(getattr(error, "response", None), "status_code", None)
    refused = (
        f"The Hub at {hub.endpoint} refused access to {repo} (HTTP {status}): if it needs a "
        "Hugging Face token, set HF_TOKEN or log in with 'hf auth login', and accept the "
        "model's conditions on its page."
    )
    if isinstance(error, OfflineModeIsEnabled):
        return OFFLINE_MESSAGE
    if isinstance(error, GatedRepoError):
        return refused
    if isinstance(error, RepositoryNotFoundError):
        if status in (401, 403):
            return refused
        return f"The Hub at {hub.endpoint} has no repository {repo}; check HF_ENDPOINT."
    if isinstance(error, RevisionNotFoundError):
        return f"The Hub at {hub.endpoint} has no revision '{revision}' of {repo}."
    if isinstance(error, RemoteEntryNotFoundError):
        return f"The Hub at {hub.endpoint} has no file {name} in {repo} (revision {revision})."
    if isinstance(error, HfHubHTTPError):
        if status in (401, 403):
            return refused
        if status == 404:
            return f"{name} was not found at {hub.endpoint} (HTTP 404); check HF_ENDPOINT."
        if status is not None and (status == 429 or status >= 500):
            return f"The Hub at {hub.endpoint} is busy or failing (HTTP {status}); try again later."
        return f"The Hub at {hub.endpoint} answered HTTP {status} for {name}: {_first_line(error)}."
    if isinstance(error, (httpx2.TransportError, ConnectionError)):
        return (
            f"Cannot connect to {hub.endpoint} ({_first_line(error)}); check your internet "
            "connection (or HF_ENDPOINT / proxy settings) and try again."
        )
    if isinstance(error, OSError):
        return f"Cannot download {name} from {hub.endpoint} ({_first_line(error)})."
    logger.error("unexpected error while downloading %s", name, exc_info=error)
    return (
        f"The download of {name} from {hub.endpoint} failed "
        f"({type(error).__name__}: {_first_line(error)})."
    )
