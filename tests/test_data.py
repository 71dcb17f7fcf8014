"""The data layer: named sets read from the shared files, image folders, .npz, and bad input."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from elbolab.data import DataWarning, load_data, load_path, to_levels, to_model
from elbolab.data.cifar import load_pickle, read_batch
from elbolab.data.idx import read_idx
from elbolab.errors import DataError

CIFAR_BATCHES = "cifar-10-subset/cifar-10-batches-py"  # under the shared data folder


def raises_one_line(fn, *args, match: str | None = None, **kwargs) -> str:
    """Call fn, expect a DataError whose message is one line (and matches `match`); return it."""
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    return message


# -- named sets from the shared folder ----------------------------------------------------


def test_mnist_test_split_from_shared_files(shared_data):
    data = load_data("mnist", "test", data_dir=shared_data)
    assert data.images.shape == (10_000, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.levels == 256 and data.dims == 784
    assert data.labels.dtype == torch.int64 and set(data.labels.tolist()) == set(range(10))
    assert data.labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert data.images.float().mean().item() == pytest.approx(33.79, abs=0.01)  # MNIST's mean ink, 0.1325·255
    assert data.images.max().item() == 255 and data.images.min().item() == 0


def test_mnist_folder_itself_works_as_data_dir(shared_data):
    assert len(load_data("mnist", "test", data_dir=shared_data / "mnist")) == 10_000


def test_fashion_mnist_from_shared_files_warns_it_is_not_official(shared_data):
    with pytest.warns(DataWarning, match="differs from the official file"):
        train = load_data("fashion-mnist", "train", data_dir=shared_data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        test = load_data("fashion-mnist", "test", data_dir=shared_data)
    assert train.images.shape == (59_946, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert test.labels.bincount().tolist() == [1000] * 10  # the README's 1,000 held out per class
    assert train.levels == test.levels == 256
    assert 70 < train.images.float().mean().item() < 76  # Fashion-MNIST's mean ≈ 0.286·255 ≈ 72.9


def test_cifar10_subset_from_shared_batches(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        train = load_data("cifar10", "train", data_dir=shared_data / "cifar-10-subset")
        test = load_data("cifar10", "test", data_dir=shared_data / "cifar-10-subset")
    assert train.images.shape == (5_085, 3, 32, 32) and test.images.shape == (1_017, 3, 32, 32)
    assert train.levels == 256 and train.shape == (3, 32, 32)
    assert set(train.labels.tolist()) == set(range(10)) == set(test.labels.tolist())
    means = train.images.float().mean(dim=(0, 2, 3))
    assert means.tolist() == pytest.approx([125.3, 123.0, 113.9], abs=2.0)  # CIFAR-10's channel means
    assert means[0] > means[2]  # red above blue: channels are in RGB order, not scrambled


def test_cifar10_batch_layout_is_channel_planes(shared_data):
    images, labels = read_batch(shared_data / CIFAR_BATCHES / "test_batch")
    raw = pickle.loads((shared_data / CIFAR_BATCHES / "test_batch").read_bytes(), encoding="bytes")
    assert np.array_equal(images[7, 1].ravel(), raw[b"data"][7, 1024:2048])  # row 7, green plane
    assert labels.tolist() == raw[b"labels"]


def test_digits_split_levels_and_round_trip():
    train, test = load_data("digits", "train"), load_data("digits", "test")
    assert len(train) == 1_437 and len(test) == 360 and train.levels == 17
    assert train.images.shape[1:] == (1, 8, 8) and int(train.images.max()) == 16
    x = train.model_range()
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert torch.equal(to_levels(to_model(train.images, 17), 17), train.images)


def test_unknown_data_set_name():
    raises_one_line(load_data, "imagenet", "train", match="unknown data set 'imagenet'")


def test_unknown_split():
    raises_one_line(load_data, "digits", "valid", match="unknown split")


# -- idx files -----------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """Encode an array as idx: 0 0 code ndim, big-endian sizes, big-endian values."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_idx_round_trip_for_each_type(tmp_path):
    for code, dtype in [
        (0x08, np.uint8),
        (0x09, np.int8),
        (0x0B, np.int16),
        (0x0C, np.int32),
        (0x0D, np.float32),
        (0x0E, np.float64),
    ]:
        array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
        path = tmp_path / f"a{code}-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(idx_bytes(array, code)))
        back = read_idx(path)
        assert back.dtype == np.dtype(dtype) and np.array_equal(back, array)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda raw: gzip.compress(raw)[:-20], "truncated or corrupt gzip"),
        (lambda raw: raw, "not a gzip file"),
        (lambda raw: gzip.compress(raw[:-5]), "truncated or corrupt idx data"),
        (lambda raw: gzip.compress(b"\x08\x03" + raw[2:]), "not an idx file"),
        (lambda raw: gzip.compress(raw[:6]), "truncated idx header"),
        (lambda raw: b"", "not a gzip file"),
    ],
)
def test_corrupt_idx_names_the_file(tmp_path, make, message):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(make(idx_bytes(np.zeros((3, 28, 28), np.uint8), 0x08)))
    text = raises_one_line(read_idx, path, match=message)
    assert str(path) in text


def test_corrupt_idx_through_the_loader(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03garbage"))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(3, np.uint8), 0x08)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        raises_one_line(load_data, "mnist", "test", data_dir=tmp_path, match="t10k-images-idx3-ubyte.gz")


def test_idx_images_of_the_wrong_size_are_refused(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((3, 32, 32), np.uint8), 8)))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(3, np.uint8), 8)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        raises_one_line(load_data, "fashion-mnist", "test", data_dir=tmp_path, match="expected uint8 images N×28×28")


# -- CIFAR pickles -------------------------------------------------------------------------


class SystemCall:
    """An object whose pickle asks to run os.system (what a malicious batch would hold)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": SystemCall(f"touch {marker}"), b"labels": []}))
    raises_one_line(load_pickle, path, match=r"refusing to load (posix|os|nt)\.system")
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(eval),  # builtins.eval
        b"cbuiltins\nexec\n(Vprint(1)\ntR.",  # GLOBAL + REDUCE, protocol 0
        b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.",  # a codec other than latin-1
    ],
)
def test_other_globals_are_refused(tmp_path, payload):
    path = tmp_path / "batch"
    path.write_bytes(payload)
    raises_one_line(load_pickle, path, match="refus")


def test_truncated_and_wrong_pickles(shared_data, tmp_path):
    good = (shared_data / CIFAR_BATCHES / "test_batch").read_bytes()
    cases = {
        "cut": good[: len(good) // 2],
        "junk": b"\x80\x04not a pickle at all",
        "list": pickle.dumps([1, 2, 3]),
        "nodata": pickle.dumps({b"labels": [1]}),
    }
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
        text = raises_one_line(read_batch, tmp_path / name)
        assert str(tmp_path / name) in text


def test_batches_written_by_python3_and_numpy2_load(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
    for protocol in (2, 5):  # protocol 2 spells bytes as _codecs.encode(..., 'latin1')
        path = tmp_path / f"batch{protocol}"
        path.write_bytes(pickle.dumps({"data": data, "labels": [0, 3, 9, 1]}, protocol=protocol))
        images, labels = read_batch(path)
        assert images.shape == (4, 3, 32, 32) and np.array_equal(images.reshape(4, -1), data)
        assert labels.tolist() == [0, 3, 9, 1]


def test_cifar_labels_out_of_range(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}))
    raises_one_line(read_batch, path, match="labels in 0..9")


# -- image folders ---------------------------------------------------------------------------


def save_png(path: Path, array: np.ndarray) -> None:
    """Write an [H, W] or [H, W, 3] uint8 array as a PNG, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_class_folder(root: Path, n_per_class: int = 10) -> dict[str, np.ndarray]:
    """Two classes of 6×5 grey PNGs whose first pixel records their number."""
    arrays = {}
    for c, name in enumerate(["cat", "dog"]):
        for i in range(n_per_class):
            array = np.full((6, 5), 10 * c + i, np.uint8)
            arrays[f"{name}/{i:02d}.png"] = array
            save_png(root / name / f"{i:02d}.png", array)
    return arrays


def test_folder_with_class_subfolders_and_seeded_split(tmp_path):
    make_class_folder(tmp_path / "pets")
    train, test = load_path(tmp_path / "pets", "train"), load_path(tmp_path / "pets", "test")
    assert len(train) == 18 and len(test) == 2 and train.shape == (1, 6, 5) and train.levels == 256
    values = sorted(train.images[:, 0, 0, 0].tolist() + test.images[:, 0, 0, 0].tolist())
    assert values == sorted(list(range(10)) + list(range(10, 20)))  # disjoint and complete
    assert torch.equal(train.labels, (train.images[:, 0, 0, 0] >= 10).long())  # cat=0, dog=1
    again = load_path(tmp_path / "pets", "test")
    assert torch.equal(again.images, test.images)  # the split is fixed by its seed


def test_folder_through_load_data_with_train_and_test_subfolders(tmp_path):
    make_class_folder(tmp_path / "set" / "train", 3)
    save_png(tmp_path / "set" / "test" / "dog" / "x.png", np.full((6, 5), 99, np.uint8))
    train, test = load_data(str(tmp_path / "set"), "train"), load_data(str(tmp_path / "set"), "test")
    assert len(train) == 6 and len(test) == 1
    assert test.labels.tolist() == [1] and test.images[0, 0, 0, 0] == 99  # "dog" keeps its index


def test_flat_folder_of_colour_images_has_no_labels(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(10):
        save_png(tmp_path / f"{i}.png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "z.jpg", quality=95)
    (tmp_path / "notes.txt").write_text("not an image")
    data = load_path(tmp_path, "train")
    assert data.labels is None and data.shape == (3, 4, 4) and len(data) == 10


def test_grey_images_become_rgb_beside_colour_ones(tmp_path):
    save_png(tmp_path / "a.png", np.full((3, 3), 7, np.uint8))
    save_png(tmp_path / "b.png", np.zeros((3, 3, 3), np.uint8))
    train, test = load_path(tmp_path, "train"), load_path(tmp_path, "test")  # one image each
    assert train.shape == test.shape == (3, 3, 3)


def test_missing_path():
    raises_one_line(load_path, Path("/nonexistent/elbolab/images"), "train", match="no such file or folder")
    raises_one_line(load_data, "/nonexistent/elbolab/images.npz", "train", match="no such file or folder")


def test_empty_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    raises_one_line(load_path, tmp_path, "train", match="no images")


def test_images_of_mixed_sizes(tmp_path):
    save_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    save_png(tmp_path / "b.png", np.zeros((5, 4), np.uint8))
    raises_one_line(load_path, tmp_path, "test", match="all images must have one size")


def test_unreadable_image(tmp_path):
    save_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    text = raises_one_line(load_path, tmp_path, "train", match="cannot read the image")
    assert "b.png" in text


def test_sixteen_bit_images_are_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "b.png")
    raises_one_line(load_path, tmp_path, "train", match="not 8-bit")


# -- .npz files ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw", "nhw1"])
def test_npz_layouts(tmp_path, layout):
    channels = 3 if layout in ("nhwc", "nchw") else 1
    base = np.random.default_rng(0).integers(0, 256, (20, channels, 6, 5), dtype=np.uint8)
    stored = base[:, 0] if layout == "nhw" else base if layout == "nchw" else base.transpose(0, 2, 3, 1)
    np.savez(tmp_path / "x.npz", images=stored, labels=np.arange(20))
    train, test = load_path(tmp_path / "x.npz", "train"), load_path(tmp_path / "x.npz", "test")
    assert len(train) == 18 and len(test) == 2 and train.levels == 256 and train.shape == (channels, 6, 5)
    assert sorted(train.labels.tolist() + test.labels.tolist()) == list(range(20))
    for part in (train, test):  # each image still sits beside its own label
        assert torch.equal(part.images, torch.from_numpy(base[part.labels.numpy()]))


def test_npz_first_array_levels_and_own_split(tmp_path):
    x = np.random.default_rng(0).integers(0, 17, (10, 8, 8)).astype(np.int64)
    np.savez(tmp_path / "d.npz", labels=np.zeros(10, np.int64), pixels=x, levels=np.array(17))
    data = load_path(tmp_path / "d.npz", "train")
    assert data.levels == 17 and data.images.dtype == torch.uint8 and data.name == "d"
    np.savez(tmp_path / "s.npz", train_images=x[:7], test_images=x[7:], test_labels=np.arange(3), levels=17)
    test = load_path(tmp_path / "s.npz", "test")
    assert len(test) == 3 and test.labels.tolist() == [0, 1, 2]
    assert torch.equal(test.images[:, 0], torch.from_numpy(x[7:]).to(torch.uint8))
    assert load_path(tmp_path / "s.npz", "train").labels is None


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"images": np.zeros((4, 4, 4), np.float32)}, "store integer levels"),
        ({"images": np.full((4, 4, 4), 17), "levels": np.array(17)}, "outside 0..16"),
        ({"images": np.zeros((4, 4, 4), np.uint8), "labels": np.zeros(3)}, "labels must be 4 integers"),
        ({"images": np.zeros((4, 9, 9, 9), np.uint8)}, "at most 4 channels"),
        ({"images": np.zeros(4, np.uint8)}, "expected \\[N, H, W\\]"),
        ({"images": np.zeros((4, 4, 4), np.uint8), "levels": np.array(300)}, "between 2 and 256"),
        ({"images": np.zeros((1, 4, 4), np.uint8)}, "at least 2"),
        ({"labels": np.zeros(3)}, "no image array"),
    ],
)
def test_bad_npz_contents(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    raises_one_line(load_path, tmp_path / "bad.npz", "train", match=message)


def test_bad_npz_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    raises_one_line(load_path, tmp_path / "junk.npz", "train", match="not a readable .npz")
    np.savez(tmp_path / "objects.npz", images=np.array([{"a": 1}, None], dtype=object))
    raises_one_line(load_path, tmp_path / "objects.npz", "train", match="not a readable .npz")
    np.savez(tmp_path / "empty.npz")
    raises_one_line(load_path, tmp_path / "empty.npz", "train", match="no arrays")
    np.save(tmp_path / "single.npy", np.zeros((3, 4, 4), np.uint8))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    raises_one_line(load_path, tmp_path / "single.npz", "train", match="not an .npz archive")
