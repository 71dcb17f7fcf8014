"""Named data sets' official files: download with an MD5 check, atomic writes and safe unpacking.

Layout: a named data set lives in `DATA_DIR/<name>/` (or directly in DATA_DIR when that
folder already holds the set's files and has no `<name>/` subfolder). Files already there
are read without touching the network; one of the user's own that differs from the official file
is read with a warning, one this package downloaded that has changed since is refused. A file this package downloads must match its official MD5, or the download
fails. In folders it downloaded into, hashes are remembered in a stamp file keyed by size
and mtime; folders of the user's own are only read, never written.

The base URL can be replaced by `mirror=` or `$ELBOLAB_MIRROR`: a file is then fetched from
`MIRROR/<name>/<file>`, the same layout as the data folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tarfile
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from elbolab.data.base import default_data_dir
from elbolab.data.problems import data_error, one_line
from elbolab.errors import DataError

MIRROR_ENV = "ELBOLAB_MIRROR"
STAMP = ".elbolab-md5.json"
CHUNK = 1 << 20
TIMEOUT_S = 60.0


class DataWarning(UserWarning):
    """A data file was read although it differs from the official one."""


@dataclass(frozen=True)
class Source:
    """Where a named data set comes from: base URLs tried in order, each file's official MD5."""

    bases: tuple[str, ...]
    md5: dict[str, str]  # file name (relative to the data set's folder) → official MD5
    archive: str | None = None  # when set, the other files come packed in this one
    splits: dict[str, tuple[str, ...]] | None = None  # split → the files it reads


_IDX = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR10 = {
    "train": tuple(f"{CIFAR10_FOLDER}/data_batch_{i}" for i in range(1, 6)),
    "test": (f"{CIFAR10_FOLDER}/test_batch",),
}

# Official checksums, as published with torchvision's data set classes.
SOURCES: dict[str, Source] = {
    "mnist": Source(
        bases=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        splits=_IDX,
    ),
    "fashion-mnist": Source(
        bases=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        splits=_IDX,
    ),
    "cifar10": Source(
        bases=("https://www.cs.toronto.edu/~kriz/",),
        md5={
            "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
            f"{CIFAR10_FOLDER}/data_batch_1": "c99cafc152244af753f735de768cd75f",
            f"{CIFAR10_FOLDER}/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            f"{CIFAR10_FOLDER}/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            f"{CIFAR10_FOLDER}/data_batch_4": "634d18415352ddfa80567beed471001a",
            f"{CIFAR10_FOLDER}/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            f"{CIFAR10_FOLDER}/test_batch": "40351d587109b95175f43aff81a1287e",
        },
        archive="cifar-10-python.tar.gz",
        splits=_CIFAR10,
    ),
}


class _Failed(Exception):
    """One URL could not deliver a good copy of a file (the reason is the message)."""


# -- where the files are ------------------------------------------------------------------


def dataset_folder(root: Path, name: str) -> Path:
    """`root/<name>`, unless that is absent and `root` itself holds some of the set's files."""
    own = root / name
    if not own.is_dir() and any((root / f).is_file() for f in SOURCES[name].md5):
        return root
    return own


def split_files(name: str, split: str) -> tuple[str, ...]:
    """The files (relative to the data set's folder) that one split reads."""
    splits = SOURCES[name].splits or {}
    if split not in splits:
        raise DataError(f"{name}: unknown split {split!r}")
    return splits[split]


def mirror_urls(name: str, filename: str, mirror: str | None = None) -> list[str]:
    """The URLs to try for a file: MIRROR/<name>/<file> if a mirror is set, else the official ones."""
    mirror = mirror or os.environ.get(MIRROR_ENV)
    if mirror:
        return [f"{mirror.rstrip('/')}/{name}/{filename}"]
    return [base + filename for base in SOURCES[name].bases]


def ensure_files(name: str, root: Path, files: Sequence[str], mirror: str | None = None) -> Path:
    """The data set's folder, after fetching whichever of `files` are missing and checking the rest."""
    folder = dataset_folder(Path(root).expanduser(), name)
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        _fetch_missing(name, folder, missing, mirror)
    for f in files:
        check_present(folder, f, SOURCES[name].md5.get(f))
    return folder


def fetch_dataset(name: str, data_dir: str | Path | None = None, mirror: str | None = None) -> Path:
    """Make every split of a named data set available locally; returns its folder."""
    if name not in SOURCES:
        raise DataError(f"{name!r} has no files to download; choose one of {', '.join(sorted(SOURCES))}")
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    files = [f for split in sorted(SOURCES[name].splits or {}) for f in split_files(name, split)]
    return ensure_files(name, root, files, mirror)


def _fetch_missing(name: str, folder: Path, missing: list[str], mirror: str | None) -> None:
    """Download the missing files, or the archive that holds them, and unpack it."""
    archive = SOURCES[name].archive
    if archive is None:
        for f in missing:
            download_file(name, f, folder, mirror)
        return
    had_archive = (folder / archive).is_file()
    if had_archive:
        check_present(folder, archive, SOURCES[name].md5.get(archive))
    else:
        download_file(name, archive, folder, mirror)
    unpacked = set(extract_tar(folder / archive, folder))
    if not had_archive:
        (folder / archive).unlink(missing_ok=True)  # ours to remove; the batches are what we read
    lacking = [f for f in missing if f not in unpacked]
    if lacking:
        raise data_error(folder / archive, f"the archive does not hold {', '.join(lacking)}")


# -- checksums ---------------------------------------------------------------------------


def hash_file(path: Path) -> str:
    """The MD5 of a file's bytes, as 32 hex digits."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_stamps(folder: Path) -> dict[str, list]:
    """The remembered hashes of a folder: file → [size, mtime_ns, md5]; empty if none or unreadable."""
    try:
        stamps = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return {}
    return stamps if isinstance(stamps, dict) else {}


def remember_md5(folder: Path, filename: str, md5: str, create: bool = False) -> None:
    """Record a file's MD5 with its size and mtime in the folder's stamp (made only if `create`).

    Folders this package never downloaded into get no stamp; where the stamp cannot be written,
    the hash is simply not remembered.
    """
    try:
        st = (folder / filename).stat()
        if not create and not (folder / STAMP).is_file():
            return
        stamps = _read_stamps(folder)
        stamps[filename] = [st.st_size, st.st_mtime_ns, md5]
        text = json.dumps(stamps, indent=1, sort_keys=True).encode()
        write_atomic(folder / STAMP, [text])
    except OSError:
        pass


def file_md5(folder: Path, filename: str) -> str:
    """The MD5 of folder/filename, hashed once and then taken from the stamp while size and mtime hold."""
    st = (folder / filename).stat()
    entry = _read_stamps(folder).get(filename)
    if isinstance(entry, list) and len(entry) == 3 and entry[:2] == [st.st_size, st.st_mtime_ns]:
        return str(entry[2])
    md5 = hash_file(folder / filename)
    remember_md5(folder, filename, md5)
    return md5


def check_present(folder: Path, filename: str, expected: str | None) -> None:
    """A file elbolab downloaded (its official hash in the stamp) that has changed since must still be official, or
    it is refused with the command that fetches it afresh; a file of the user's own that differs is read with a
    warning (once per file and process)."""
    if expected is None:
        return
    ours = _read_stamps(folder).get(filename)
    if isinstance(ours, list) and len(ours) == 3 and ours[2] == expected:
        st = (folder / filename).stat()
        if ours[:2] == [st.st_size, st.st_mtime_ns]:
            return  # verified when downloaded, unchanged since
        got = hash_file(folder / filename)
        if got != expected:
            raise DataError(
                f"{folder / filename}: damaged since it was downloaded (MD5 {got}, official {expected}); "
                f"remove it (rm '{folder / filename}') and run the command again to download it afresh"
            )
        remember_md5(folder, filename, got)
        return
    got = file_md5(folder, filename)
    if got != expected:
        warnings.warn(
            f"{folder / filename} differs from the official file (MD5 {got}, official {expected}); reading it as it is",
            DataWarning,
            stacklevel=3,
        )


# -- writing -----------------------------------------------------------------------------


def _create_temp(dest: Path) -> tuple[int, Path]:
    """A new, hidden file beside dest, opened for writing with the usual (umask) permissions."""
    while True:
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.part"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def write_atomic(dest: Path, chunks: Iterable[bytes], expected: str | None = None) -> str:
    """Write chunks to a temp file beside dest, fsync, check the MD5, then os.replace; returns the MD5."""
    fd, tmp = _create_temp(dest)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
            out.flush()
            os.fsync(out.fileno())
        md5 = digest.hexdigest()
        if expected is not None and md5 != expected:
            raise _Failed(f"MD5 {md5}, expected {expected}")
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return md5


def _writable_folder(folder: Path, filename: str) -> None:
    """Create the folder a download goes to, or stop with a DataError saying it cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise data_error(
            folder,
            f"cannot create the folder to download {filename} into; choose a writable --data-dir or $ELBOLAB_DATA",
            exc,
        ) from exc
    if not os.access(folder, os.W_OK):
        raise data_error(
            folder,
            f"{filename} is missing and the folder is not writable; choose a writable --data-dir or $ELBOLAB_DATA",
        )


# -- downloading -------------------------------------------------------------------------


def download_file(name: str, filename: str, folder: Path, mirror: str | None = None) -> Path:
    """Fetch one official file into folder, trying each URL in turn; a bad MD5 never lands."""
    expected = SOURCES[name].md5[filename]
    dest = folder / filename
    _writable_folder(dest.parent, filename)
    failures = []
    for url in mirror_urls(name, filename, mirror):
        try:
            md5 = _download(url, dest, expected)
        except _Failed as exc:
            failures.append(f"{url} ({exc})")
            continue
        remember_md5(folder, filename, md5, create=True)
        return dest
    raise DataError(
        one_line(f"could not download {filename} from {'; '.join(failures)}. Download it by hand into {dest.parent}/")
    )


def _download(url: str, dest: Path, expected: str) -> str:
    """One attempt: stream url into dest atomically with a progress bar; returns the MD5."""
    request = urllib.request.Request(url, headers={"User-Agent": "elbolab"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            return write_atomic(dest, _with_progress(response, total, url), expected)
    except urllib.error.HTTPError as exc:
        raise _Failed(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise _Failed(f"offline or unreachable: {one_line(exc.reason)}") from exc
    except (OSError, ValueError) as exc:
        raise _Failed(f"{type(exc).__name__}: {one_line(exc)}") from exc


def _with_progress(response, total: int | None, url: str) -> Iterator[bytes]:
    """The response's bytes in chunks, advancing a rich progress bar on stderr (a plain line if no tty)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        console.print(f"downloading {url}", soft_wrap=True, highlight=False)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"downloading {url.rsplit('/', 1)[-1]}", total=total)
        for chunk in iter(lambda: response.read(CHUNK), b""):
            progress.advance(task, len(chunk))
            yield chunk


# -- unpacking ---------------------------------------------------------------------------


def _member_path(member: tarfile.TarInfo, archive: Path) -> PurePosixPath:
    """A member's relative path, refusing links, devices, absolute paths and '..'."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or member.name.startswith(("/", "\\")):
        raise data_error(archive, f"refusing to unpack {member.name!r}: it points outside the folder")
    if not member.isfile():
        raise data_error(archive, f"refusing to unpack {member.name!r}: not a regular file")
    return path


def extract_tar(archive: Path, folder: Path) -> list[str]:
    """Unpack an archive's regular files into folder (atomically, each file); returns their names."""
    names = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.isdir():
                    continue
                rel = _member_path(member, archive)
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                md5 = write_atomic(folder / rel, iter(lambda source=source: source.read(CHUNK), b""))
                remember_md5(folder, rel.as_posix(), md5, create=True)
                names.append(rel.as_posix())
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise data_error(archive, "cannot unpack the archive (truncated or corrupt?)", exc) from exc
    return names
