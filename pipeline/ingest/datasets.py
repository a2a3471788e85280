"""Named MovieLens datasets: download, verify and extract them under ``settings.data_dir``.

ML-100K has an offline fallback: the RecBole 1.2.1 wheel on PyPI ships a copy of it (in RecBole's atomic
file layout), so a machine that reaches only the package index can still get the dataset.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from tqdm import tqdm

from pipeline.core.errors import InputError, MovierecError, SourceUnavailable
from pipeline.core.settings import Settings

# Bounds connecting (and any single stalled read) so an offline machine fails fast instead of hanging.
CONNECT_TIMEOUT_S = 10.0
_CHUNK = 1 << 20
_MARKER = ".movierec-verified.json"

OFFLINE_ML100K_DIRNAME = "ml-100k-recbole"
_RECBOLE_REQUIREMENT = "recbole==1.2.1"
_RECBOLE_SOURCE = f"pypi:{_RECBOLE_REQUIREMENT}"
_RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
_RECBOLE_PREFIX = "recbole/dataset_example/ml-100k/"
_RECBOLE_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user", "ml-100k.link", "ml-100k.kg")
_PIP_TIMEOUT_S = 600

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset comes from and how to verify it.

    ``md5=None`` means the archive is regenerated upstream, so the digest is read from ``url + '.md5'``.
    The archive must hold one top-level folder named ``name``.
    """

    name: str
    url: str
    md5: str | None
    offline_fallback: bool = False  # only ML-100K has an offline copy (the RecBole wheel)

    @property
    def archive_name(self) -> str:
        return PurePosixPath(urllib.parse.urlsplit(self.url).path).name or f"{self.name}.zip"


_BASE = "https://files.grouplens.org/datasets/movielens"

DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(
    {
        "ml-100k": DatasetSpec(
            "ml-100k", f"{_BASE}/ml-100k.zip", "0e33842e24a9c977be4e0107933c0723", offline_fallback=True
        ),
        "ml-1m": DatasetSpec("ml-1m", f"{_BASE}/ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906"),
        "ml-25m": DatasetSpec("ml-25m", f"{_BASE}/ml-25m.zip", "6b51fb2759a8657d3bfcbfc42b592ada"),
        "ml-32m": DatasetSpec("ml-32m", f"{_BASE}/ml-32m.zip", "d472be332d4daa821edc399621853b57"),
        "ml-latest-small": DatasetSpec("ml-latest-small", f"{_BASE}/ml-latest-small.zip", None),
    }
)


@dataclass(frozen=True)
class FetchedDataset:
    """A dataset on disk, verified.

    ``path`` holds GroupLens' own layout (u.data, ratings.csv, ...) or, when ``offline_fallback``, RecBole's
    atomic files (ml-100k.inter, ...). ``sha256``/``md5`` are of the verified archive (zip or wheel).
    """

    name: str
    path: Path
    source: str
    offline_fallback: bool
    sha256: str
    md5: str | None = None


def _echo_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``; InputError naming the known datasets otherwise."""
    spec = DATASETS.get(name.strip().lower())
    if spec is None:
        raise InputError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return spec


def fetch_dataset(
    name: str,
    settings: Settings,
    *,
    spec: DatasetSpec | None = None,
    echo: Callable[[str], None] = _echo_stderr,
    progress: bool = True,
) -> FetchedDataset:
    """Download, verify and extract dataset ``name``; a no-op (no network) once it is in place.

    ``spec`` replaces the registry entry (a mirror, or a local server in tests); its name must match.
    Unreachable source: SourceUnavailable, except ML-100K which falls back to the RecBole wheel on PyPI.
    """
    if spec is None:
        spec = get_spec(name)
    elif spec.name != name.strip().lower():
        raise ValueError(f"spec is for {spec.name!r}, not {name!r}")

    target = settings.data_dir / spec.name
    done = _read_marker(target)
    # A regenerated dataset (no pinned md5) is not re-checked once verified: delete the folder to refresh it.
    if done is not None and done.get("md5") and (spec.md5 is None or done["md5"] == spec.md5.lower()):
        return FetchedDataset(spec.name, target, done["source"], False, done["sha256"], done.get("md5"))

    try:
        archive, md5, sha256 = _download_verified(spec, settings.downloads_dir, progress=progress)
    except SourceUnavailable as exc:
        if not spec.offline_fallback:
            raise
        echo(
            f"The official {spec.name.upper()} download is unreachable ({exc}); "
            f"using {spec.name.upper()} from the RecBole 1.2.1 wheel on PyPI instead."
        )
        return _fetch_recbole_ml100k(settings)

    marker = {"name": spec.name, "source": spec.url, "md5": md5, "sha256": sha256}
    _extract_zip_dir(archive, spec.name, target, marker)
    return FetchedDataset(spec.name, target, spec.url, False, sha256, md5)


# --- markers -------------------------------------------------------------------------------------------


def _read_marker(target: Path) -> dict[str, str] | None:
    try:
        data = json.loads((target / _MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("source", "sha256")):
        return None
    return data


def _install_dir(staged: Path, target: Path, marker: Mapping[str, str | None]) -> None:
    """Move a fully prepared directory into place; the marker travels with it, so it appears atomically."""
    (staged / _MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    if target.exists():  # an unverified leftover (no or stale marker)
        shutil.rmtree(target)
    os.replace(staged, target)


# --- download ------------------------------------------------------------------------------------------

# urllib wraps connect-time failures (DNS, refused, TLS) in URLError; these can still surface mid-body.
_NETWORK_ERRORS = (
    urllib.error.URLError,
    TimeoutError,
    ConnectionError,
    http.client.HTTPException,
    ssl.SSLError,
)


def _reason(url: str, exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        detail = f"HTTP {exc.code} {exc.reason}"
    else:
        cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(cause, TimeoutError):
            detail = f"timed out after {CONNECT_TIMEOUT_S:g} s"
        else:
            detail = str(cause) or type(cause).__name__
    return f"{url}: {detail}".splitlines()[0]


def _open(url: str) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": "movierec"})
    return urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_S)


def _published_md5(url: str) -> str:
    """The digest GroupLens publishes beside a regenerated archive (first token of ``<url>.md5``)."""
    sidecar = url + ".md5"
    try:
        with _open(sidecar) as resp:
            text = resp.read(4096).decode("ascii", errors="replace")
    except _NETWORK_ERRORS as exc:
        raise SourceUnavailable(_reason(sidecar, exc)) from exc
    tokens = text.split()
    if not tokens or not _HEX32.fullmatch(tokens[0]):
        raise MovierecError(f"{sidecar} does not start with an md5 digest: {text[:60]!r}")
    return tokens[0].lower()


def _hash_file(path: Path) -> tuple[str, str]:
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()


def _download_verified(spec: DatasetSpec, downloads: Path, *, progress: bool) -> tuple[Path, str, str]:
    """The archive in ``downloads``, md5-verified: reused if already there, else downloaded."""
    expected = spec.md5.lower() if spec.md5 else _published_md5(spec.url)
    downloads.mkdir(parents=True, exist_ok=True)
    archive = downloads / spec.archive_name
    if archive.is_file():
        md5, sha256 = _hash_file(archive)
        if md5 == expected:
            return archive, md5, sha256
        archive.unlink()  # stale or corrupt: download afresh

    part = archive.with_name(archive.name + ".part")
    md5_h, sha_h = hashlib.md5(), hashlib.sha256()
    try:
        with _open(spec.url) as resp, part.open("wb") as out:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=spec.name,
                disable=not progress,
                leave=False,
            ) as bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    md5_h.update(chunk)
                    sha_h.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if total is not None and received != total:
                raise SourceUnavailable(f"{spec.url}: connection closed after {received} of {total} bytes")
    except _NETWORK_ERRORS as exc:
        part.unlink(missing_ok=True)
        raise SourceUnavailable(_reason(spec.url, exc)) from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise

    md5, sha256 = md5_h.hexdigest(), sha_h.hexdigest()
    if md5 != expected:
        part.unlink(missing_ok=True)
        raise MovierecError(
            f"{spec.name}: checksum mismatch for {spec.url}: expected md5 {expected}, "
            f"got {md5}; the download was deleted"
        )
    os.replace(part, archive)
    return archive, md5, sha256


# --- extraction ----------------------------------------------------------------------------------------


def _safe_member_path(root: Path, member: str) -> Path:
    """Where ``member`` lands under ``root``; MovierecError for entries that would escape it."""
    pure = PurePosixPath(member.replace("\\", "/"))
    dest = (root / pure).resolve()
    if pure.is_absolute() or ".." in pure.parts or not dest.is_relative_to(root.resolve()):
        raise MovierecError(f"refusing unsafe archive entry {member!r}")
    return dest


def _extract_zip_dir(archive: Path, folder: str, target: Path, marker: Mapping[str, str | None]) -> None:
    """Extract ``archive``'s top-level ``folder`` to ``target`` via a temp dir, so failures leave nothing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _extract_all(archive, staging)
        inner = staging / folder
        if not inner.is_dir():
            raise MovierecError(f"{archive} has no top-level folder {folder}/")
        _install_dir(inner, target, marker)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def unpacked_archive(archive: Path) -> Iterator[Path]:
    """A zip archive (a dataset as GroupLens publishes it) extracted into a temporary directory, removed
    afterwards; InputError when it is not a readable zip (truncated, corrupt) or holds unsafe entries."""
    if not zipfile.is_zipfile(archive):
        raise InputError(f"{archive} is not a directory or a readable zip archive (truncated or corrupt?)")
    with tempfile.TemporaryDirectory(prefix="movierec-archive-") as tmp:
        _extract_all(archive, Path(tmp))
        yield Path(tmp)


def _extract_all(archive: Path, root: Path) -> None:
    """Every entry of ``archive`` under ``root``, all validated before any is written; InputError for an
    unreadable archive (bad directory, a damaged member) or an entry that would escape ``root``."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _safe_member_path(root, info.filename)
            zf.extractall(root, members)
    except (zipfile.BadZipFile, zlib.error, EOFError, MovierecError) as exc:
        raise InputError(f"{archive} is not a readable zip archive: {exc}") from exc


# --- offline ML-100K from the RecBole wheel -------------------------------------------------------------


def _pip_error(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip() and not ln.startswith("[notice]")]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or ["pip produced no output"])[-1]


def _recbole_wheel(downloads: Path) -> tuple[Path, str]:
    """The sha256-verified RecBole wheel in ``downloads``, fetched with ``pip download`` if missing."""
    downloads.mkdir(parents=True, exist_ok=True)
    for candidate in sorted(downloads.glob("recbole-1.2.1-*.whl")):
        if _hash_file(candidate)[1] == _RECBOLE_WHEEL_SHA256:
            return candidate, _RECBOLE_WHEEL_SHA256
        candidate.unlink()

    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        _RECBOLE_REQUIREMENT,
        "-d",
        str(downloads),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SourceUnavailable(
            f"pip download {_RECBOLE_REQUIREMENT} timed out after {exc.timeout} s"
        ) from exc
    if proc.returncode != 0:
        raise SourceUnavailable(
            f"pip download {_RECBOLE_REQUIREMENT} failed: {_pip_error(proc.stderr + chr(10) + proc.stdout)}"
        )
    wheels = sorted(downloads.glob("recbole-1.2.1-*.whl"))
    if not wheels:
        raise SourceUnavailable(f"pip download {_RECBOLE_REQUIREMENT} left no wheel in {downloads}")
    wheel = wheels[0]
    sha256 = _hash_file(wheel)[1]
    if sha256 != _RECBOLE_WHEEL_SHA256:
        wheel.unlink(missing_ok=True)
        raise MovierecError(
            f"checksum mismatch for {wheel.name}: expected sha256 {_RECBOLE_WHEEL_SHA256}, "
            f"got {sha256}; the download was deleted"
        )
    return wheel, sha256


def fetch_offline_ml100k(settings: Settings) -> FetchedDataset:
    """ML-100K from the pinned RecBole 1.2.1 wheel on PyPI, whether or not GroupLens is reachable."""
    return _fetch_recbole_ml100k(settings)


def _fetch_recbole_ml100k(settings: Settings) -> FetchedDataset:
    target = settings.data_dir / OFFLINE_ML100K_DIRNAME
    done = _read_marker(target)
    if done is not None and done.get("sha256") == _RECBOLE_WHEEL_SHA256:
        return FetchedDataset("ml-100k", target, _RECBOLE_SOURCE, True, _RECBOLE_WHEEL_SHA256)

    wheel, sha256 = _recbole_wheel(settings.downloads_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        inner = staging / OFFLINE_ML100K_DIRNAME
        inner.mkdir()
        with zipfile.ZipFile(wheel) as zf:
            for filename in _RECBOLE_FILES:  # only these five entries are read; the rest is RecBole's code
                try:
                    src = zf.open(_RECBOLE_PREFIX + filename)
                except KeyError as exc:
                    raise MovierecError(f"{wheel.name} lacks {_RECBOLE_PREFIX}{filename}") from exc
                with src, (inner / filename).open("wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
        _install_dir(
            inner, target, {"name": "ml-100k", "source": _RECBOLE_SOURCE, "md5": None, "sha256": sha256}
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return FetchedDataset("ml-100k", target, _RECBOLE_SOURCE, True, sha256)
