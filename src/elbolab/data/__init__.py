"""Data sets as integer levels, a registry of named sets, and scaling to the model's range."""

from elbolab.data import cifar as _cifar  # noqa: F401  (registers "cifar10")
from elbolab.data import digits as _digits  # noqa: F401  (registers "digits")
from elbolab.data import mnist as _mnist  # noqa: F401  (registers "mnist", "fashion-mnist")
from elbolab.data.base import ImageData, dataset_names, default_data_dir, load_data, register, to_levels, to_model
from elbolab.data.download import SOURCES, DataWarning, fetch_dataset
from elbolab.data.files import load_path

__all__ = [
    "SOURCES",
    "DataWarning",
    "ImageData",
    "dataset_names",
    "default_data_dir",
    "fetch_dataset",
    "load_data",
    "load_path",
    "register",
    "to_levels",
    "to_model",
]
