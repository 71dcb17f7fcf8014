"""Images from a path: a folder of PNG/JPEG files (subfolders are classes) or an .npz array file.

Split: a folder with `train/` and `test/` subfolders, or an .npz with `train_images` and
`test_images`, brings its own; otherwise a fixed seeded 90/10 train/test split is drawn.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from elbolab.data.base import ImageData
from elbolab.data.problems import data_error

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TEST_FRACTION = 0.1
SPLIT_SEED = 0
LEVELS = 256
MAX_CHANNELS = 4
GREY_MODES = ("1", "L", "LA")
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def load_path(path: Path, split: str) -> ImageData:
    """Images from a folder or an .npz file, as one split."""
    path = Path(path).expanduser()
    if not path.exists():
        raise data_error(path, "no such file or folder")
    if path.is_dir():
        return load_folder(path, split)
    return load_npz(path, split)


def split_indices(n: int, split: str, source: Path, seed: int = SPLIT_SEED) -> np.ndarray:
    """The sorted indices of one split of n items: a seeded permutation, its first 10% the test set."""
    if n < 2:
        raise data_error(source, f"holds {n} image(s); at least 2 are needed for a train/test split")
    n_test = max(1, round(n * TEST_FRACTION))
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:n_test] if split == "test" else order[n_test:])


# -- image folders -----------------------------------------------------------------------


def image_files(folder: Path) -> list[Path]:
    """Every PNG/JPEG under folder, recursively, in sorted order (hidden files skipped)."""
    found = [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(folder).parts))


def class_name(file: Path, folder: Path) -> str | None:
    """The top-level subfolder a file lies in, or None if it lies in folder itself."""
    parts = file.relative_to(folder).parts
    return parts[0] if len(parts) > 1 else None


def image_header(path: Path) -> tuple[tuple[int, int], str]:
    """An image's (width, height) and mode, read from its header without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size, image.mode
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise data_error(path, "cannot read the image", exc) from exc


def survey(files: list[Path]) -> int:
    """The channels all images will share (1 if every one is grey, else 3), after checking one size."""
    size = image_header(files[0])[0]
    colour = False
    for f in files:
        f_size, mode = image_header(f)
        if mode in WIDE_MODES:
            raise data_error(f, f"{mode} images are not 8-bit; save them as 8-bit PNG or JPEG")
        if f_size != size:
            raise data_error(
                f,
                f"is {f_size[0]}×{f_size[1]} but {files[0].name} is {size[0]}×{size[1]}; all images must have one size",
            )
        colour = colour or mode not in GREY_MODES
    return 3 if colour else 1


def read_image(path: Path, channels: int) -> np.ndarray:
    """One image decoded as [H, W, channels] uint8 (grey for 1, RGB for 3; alpha is dropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise data_error(path, "cannot read the image", exc) from exc
    return array[:, :, None] if array.ndim == 2 else array


def stack_images(files: list[Path], channels: int) -> np.ndarray:
    """Decode images of one size into [N, C, H, W] uint8."""
    return np.stack([read_image(f, channels) for f in files]).transpose(0, 3, 1, 2).copy()


def labelled_files(folder: Path) -> list[tuple[Path, str | None]]:
    """The images under folder, each with its class name (top-level subfolder) or None."""
    return [(f, class_name(f, folder)) for f in image_files(folder)]


def load_folder(root: Path, split: str) -> ImageData:
    """A folder of images; subfolder names become labels when every image lies in one."""
    pre_split = (root / "train").is_dir() and (root / "test").is_dir()
    groups = {s: labelled_files(root / s) for s in ("train", "test")} if pre_split else {"all": labelled_files(root)}
    everything = [entry for group in groups.values() for entry in group]
    if not everything:
        raise data_error(root, f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder or below")
    names = {c for _, c in everything}
    classes = None if None in names else sorted(n for n in names if n is not None)
    if pre_split:
        chosen = groups[split]
        if not chosen:
            raise data_error(root / split, "no images in this folder")
    else:
        chosen = [everything[i] for i in split_indices(len(everything), split, root)]
    images = stack_images([f for f, _ in chosen], survey([f for f, _ in everything]))
    labels = None if classes is None else torch.tensor([classes.index(str(c)) for _, c in chosen], dtype=torch.int64)
    return ImageData(root.name, torch.from_numpy(images), LEVELS, labels)


# -- .npz arrays -------------------------------------------------------------------------


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array in an .npz file (pickled objects refused), in the order they were saved."""
    with open(path, "rb") as fh:  # neither a zip nor an .npy: numpy would call it a pickle
        if not zipfile.is_zipfile(fh) and fh.seek(0) == 0 and fh.read(6) != b"\x93NUMPY":
            raise data_error(path, "not a readable .npz file (not a zip archive; save arrays with numpy.savez)")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise data_error(path, "not an .npz archive (a single .npy array?)")
        with archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise data_error(path, "not a readable .npz file", exc) from exc
    if not arrays:
        raise data_error(path, "the .npz file holds no arrays")
    return arrays


def image_key(arrays: dict[str, np.ndarray], path: Path) -> str:
    """The key of the image array: `images`, else the first array that is not `labels` or `levels`."""
    if "images" in arrays:
        return "images"
    for key in arrays:
        if key not in ("labels", "levels"):
            return key
    raise data_error(path, "no image array (store one as 'images')")


def to_nchw(images: np.ndarray, path: Path) -> np.ndarray:
    """[N, H, W], [N, H, W, C] or [N, C, H, W] (C ≤ 4; channels-first when ambiguous) → [N, C, H, W]."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4 and images.shape[1] <= MAX_CHANNELS:
        return images
    if images.ndim == 4 and images.shape[3] <= MAX_CHANNELS:
        return images.transpose(0, 3, 1, 2)
    raise data_error(
        path,
        f"images of shape {images.shape}: expected [N, H, W], [N, H, W, C] or [N, C, H, W] "
        f"with at most {MAX_CHANNELS} channels",
    )


def npz_levels(arrays: dict[str, np.ndarray], images: np.ndarray, path: Path) -> int:
    """The number of levels: the `levels` entry, else 2 for booleans and 256 for integers."""
    if "levels" in arrays:
        value = arrays["levels"]
        if value.size != 1 or value.dtype.kind not in "iu":
            raise data_error(path, "'levels' must be one integer")
        return int(value.reshape(()))
    return 2 if images.dtype == np.bool_ else LEVELS


def npz_images(images: np.ndarray, levels: int, path: Path) -> np.ndarray:
    """Check that images are integer levels 0..levels-1 and return them as uint8 [N, C, H, W]."""
    if images.dtype.kind not in "biu":
        raise data_error(path, f"images are {images.dtype}; store integer levels (e.g. uint8 0..255)")
    if not 2 <= levels <= 256:
        raise data_error(path, f"levels must be between 2 and 256, got {levels}")
    if images.size and (int(images.min()) < 0 or int(images.max()) >= levels):
        raise data_error(path, f"image values span {images.min()}..{images.max()}, outside 0..{levels - 1}")
    return np.ascontiguousarray(to_nchw(images, path).astype(np.uint8))


def npz_labels(labels: np.ndarray | None, n: int, path: Path) -> torch.Tensor | None:
    """Labels as int64 [N], checked against the number of images."""
    if labels is None:
        return None
    if labels.ndim != 1 or len(labels) != n or labels.dtype.kind not in "biu":
        raise data_error(path, f"labels must be {n} integers, got {labels.dtype} of shape {labels.shape}")
    return torch.from_numpy(labels.astype(np.int64))


def load_npz(path: Path, split: str) -> ImageData:
    """An .npz file: `images` (or the first array), optional `labels` and `levels`, or its own split."""
    arrays = read_npz(path)
    pre_split = "train_images" in arrays and "test_images" in arrays
    key = f"{split}_images" if pre_split else image_key(arrays, path)
    levels = npz_levels(arrays, arrays[key], path)
    images = npz_images(arrays[key], levels, path)
    labels = npz_labels(arrays.get(f"{split}_labels" if pre_split else "labels"), len(images), path)
    if not pre_split:
        chosen = split_indices(len(images), split, path)
        images, labels = images[chosen], None if labels is None else labels[torch.from_numpy(chosen)]
    return ImageData(path.stem, torch.from_numpy(images), levels, labels)
