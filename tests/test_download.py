"""Downloads end to end against a local HTTP server: checksums, atomic writes, safe unpacking."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import shutil
import socket
import tarfile
import threading
import warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from elbolab.data import DataWarning, download, load_data
from elbolab.data.download import SOURCES, extract_tar, fetch_dataset, file_md5, mirror_urls
from elbolab.errors import DataError

MNIST_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
CIFAR_TEST = "cifar-10-batches-py/test_batch"


class Server:
    """A static HTTP server on 127.0.0.1 over a temp folder, recording the paths it is asked for."""

    def __init__(self, root: Path):
        self.root, self.requests = root, []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def put(self, relpath: str, data: bytes) -> str:
        """Serve `data` at /relpath; returns its MD5."""
        (self.root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (self.root / relpath).write_bytes(data)
        return hashlib.md5(data).hexdigest()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local mirror, with $ELBOLAB_MIRROR pointing at it."""
    srv = Server(tmp_path / "served")
    srv.root.mkdir()
    monkeypatch.setenv("ELBOLAB_MIRROR", srv.url)
    yield srv
    srv.close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: the network is 'down'."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def leftovers(folder: Path) -> list[str]:
    """Temp files a download left behind."""
    return [p.name for p in folder.rglob("*.part")] if folder.exists() else []


def one_line(info) -> str:
    """The DataError's message, checked to be one line."""
    message = str(info.value)
    assert "\n" not in message
    return message


# -- the tables ----------------------------------------------------------------------------


def test_official_checksums_are_well_formed():
    for source in SOURCES.values():
        assert all(re.fullmatch(r"[0-9a-f]{32}", md5) for md5 in source.md5.values())
    assert SOURCES["mnist"].md5["t10k-images-idx3-ubyte.gz"] == "9fb629c4189551a2d022fa330f9573f3"
    assert SOURCES["cifar10"].md5["cifar-10-python.tar.gz"] == "c58f30108f718f92721af3b95e74349a"


def test_shared_mnist_test_files_are_the_official_ones(shared_data):
    for name in MNIST_TEST:
        assert hashlib.md5((shared_data / "mnist" / name).read_bytes()).hexdigest() == SOURCES["mnist"].md5[name]


def test_mirror_urls(monkeypatch):
    monkeypatch.delenv("ELBOLAB_MIRROR", raising=False)
    assert mirror_urls("mnist", "t10k-images-idx3-ubyte.gz") == [
        "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
        "http://yann.lecun.com/exdb/mnist/t10k-images-idx3-ubyte.gz",
    ]
    assert mirror_urls("cifar10", "cifar-10-python.tar.gz") == [
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    ]
    monkeypatch.setenv("ELBOLAB_MIRROR", "http://env.example/")
    assert mirror_urls("fashion-mnist", "x.gz") == ["http://env.example/fashion-mnist/x.gz"]
    assert mirror_urls("fashion-mnist", "x.gz", mirror="http://arg.example") == [
        "http://arg.example/fashion-mnist/x.gz"
    ]


# -- downloads -----------------------------------------------------------------------------


def test_download_checks_and_loads_then_reads_offline(shared_data, server, tmp_path, monkeypatch):
    for name in MNIST_TEST:
        md5 = server.put(f"mnist/{name}", (shared_data / "mnist" / name).read_bytes())
        monkeypatch.setitem(SOURCES["mnist"].md5, name, md5)
    data_dir = tmp_path / "data"
    data = load_data("mnist", "test", data_dir=data_dir)
    assert data.images.shape == (10_000, 1, 28, 28) and data.levels == 256
    assert sorted(server.requests) == sorted(f"/mnist/{n}" for n in MNIST_TEST)
    assert leftovers(data_dir) == []
    stamp = json.loads((data_dir / "mnist" / download.STAMP).read_text())
    assert stamp[MNIST_TEST[0]][2] == SOURCES["mnist"].md5[MNIST_TEST[0]]
    assert oct((data_dir / "mnist" / MNIST_TEST[0]).stat().st_mode & 0o444) == oct(0o444)  # readable by all

    monkeypatch.setenv("ELBOLAB_MIRROR", closed_port_url())  # offline now: the files are already here
    monkeypatch.setattr(download, "hash_file", lambda path: pytest.fail("re-hashed a stamped file"))
    assert len(load_data("mnist", "test", data_dir=data_dir)) == 10_000
    assert len(server.requests) == 2


def test_corrupt_download_fails_and_leaves_nothing(shared_data, server, tmp_path, monkeypatch):
    good = (shared_data / "mnist" / MNIST_TEST[1]).read_bytes()
    monkeypatch.setitem(SOURCES["mnist"].md5, MNIST_TEST[1], hashlib.md5(good).hexdigest())
    server.put(f"mnist/{MNIST_TEST[1]}", good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
    folder = tmp_path / "data" / "mnist"
    with pytest.raises(DataError) as info:
        download.download_file("mnist", MNIST_TEST[1], folder)
    message = one_line(info)
    assert "MD5" in message and f"{server.url}/mnist/{MNIST_TEST[1]}" in message and str(folder) in message
    assert not (folder / MNIST_TEST[1]).exists() and leftovers(folder) == []


def test_missing_file_is_a_404_naming_url_and_folder(server, tmp_path):
    with pytest.raises(DataError) as info:
        load_data("fashion-mnist", "test", data_dir=tmp_path / "data")
    message = one_line(info)
    url = f"{server.url}/fashion-mnist/t10k-images-idx3-ubyte.gz"
    assert "HTTP 404" in message and url in message
    assert f"by hand into {tmp_path / 'data' / 'fashion-mnist'}/" in message
    assert leftovers(tmp_path / "data") == []


def test_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ELBOLAB_MIRROR", closed_port_url())
    with pytest.raises(DataError, match="offline or unreachable") as info:
        fetch_dataset("mnist", tmp_path)
    assert "by hand into" in one_line(info)


def test_fetch_dataset_refuses_sets_without_files(tmp_path):
    with pytest.raises(DataError, match="no files to download"):
        fetch_dataset("digits", tmp_path)


# -- CIFAR-10: an archive, unpacked safely ---------------------------------------------------


def tar_bytes(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A .tar.gz holding the given files (and symlinks), with whatever names they are given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def test_cifar_archive_downloads_unpacks_and_loads(shared_data, server, tmp_path, monkeypatch):
    batch = (shared_data / "cifar-10-subset" / CIFAR_TEST).read_bytes()
    archive_md5 = server.put("cifar10/cifar-10-python.tar.gz", tar_bytes({CIFAR_TEST: batch}))
    monkeypatch.setitem(SOURCES["cifar10"].md5, "cifar-10-python.tar.gz", archive_md5)
    monkeypatch.setitem(SOURCES["cifar10"].md5, CIFAR_TEST, hashlib.md5(batch).hexdigest())
    data_dir = tmp_path / "data"
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # everything matches: no warning
        test = load_data("cifar10", "test", data_dir=data_dir)
    assert test.images.shape == (1_017, 3, 32, 32) and test.labels.max().item() == 9
    folder = data_dir / "cifar10"
    assert (folder / CIFAR_TEST).read_bytes() == batch
    assert not (folder / "cifar-10-python.tar.gz").exists() and leftovers(folder) == []
    with pytest.raises(DataError, match="does not hold cifar-10-batches-py/data_batch_1") as info:
        load_data("cifar10", "train", data_dir=data_dir)
    one_line(info)


@pytest.mark.parametrize(
    "members, links, message",
    [
        ({"../evil": b"x"}, None, "outside the folder"),
        ({"/tmp/evil-abs": b"x"}, None, "outside the folder"),
        ({"cifar-10-batches-py/../../evil": b"x"}, None, "outside the folder"),
        ({}, {"cifar-10-batches-py/test_batch": "/etc/passwd"}, "not a regular file"),
    ],
)
def test_unsafe_archive_members_are_refused(tmp_path, members, links, message):
    archive = tmp_path / "a" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(tar_bytes(members, links))
    folder = tmp_path / "a" / "out"
    folder.mkdir()
    with pytest.raises(DataError, match=message) as info:
        extract_tar(archive, folder)
    one_line(info)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "a" / "evil").exists()
    assert not Path("/tmp/evil-abs").exists() and list(folder.rglob("*")) == []


def test_truncated_archive(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(tar_bytes({"cifar-10-batches-py/test_batch": os.urandom(50_000)})[:2_000])
    with pytest.raises(DataError, match="cannot unpack the archive") as info:
        extract_tar(archive, tmp_path)
    one_line(info)


# -- files already present ---------------------------------------------------------------------


def test_present_files_are_read_with_a_warning_only_when_unofficial(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ELBOLAB_MIRROR", closed_port_url())
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        load_data("mnist", "test", data_dir=shared_data)  # the official test files: silent
    own = tmp_path / "mnist"
    own.mkdir()
    for name in MNIST_TEST:
        shutil.copy(shared_data / "mnist" / name, own / name)
    monkeypatch.setitem(SOURCES["mnist"].md5, MNIST_TEST[0], "0" * 32)
    with pytest.warns(DataWarning, match="differs from the official file"):
        assert len(load_data("mnist", "test", data_dir=tmp_path)) == 10_000
    assert not (own / download.STAMP).exists()  # a folder of the user's own is only read


def test_stamp_remembers_a_hash_until_the_file_changes(shared_data, tmp_path, monkeypatch):
    shutil.copy(shared_data / "mnist" / MNIST_TEST[1], tmp_path / MNIST_TEST[1])
    download.remember_md5(tmp_path, MNIST_TEST[1], "feed" * 8, create=True)
    assert file_md5(tmp_path, MNIST_TEST[1]) == "feed" * 8  # taken from the stamp, not re-hashed
    os.utime(tmp_path / MNIST_TEST[1], ns=(1, 1))
    assert file_md5(tmp_path, MNIST_TEST[1]) == SOURCES["mnist"].md5[MNIST_TEST[1]]
    assert json.loads((tmp_path / download.STAMP).read_text())[MNIST_TEST[1]][2] == SOURCES["mnist"].md5[MNIST_TEST[1]]
