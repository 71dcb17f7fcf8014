"""Data sets as integer levels, a registry of named sets, and scaling to the model's range."""

from elbolab.data.base import (ImageData, dataset_names, default_data_dir, load_data, register, to_levels,
                               to_model)
from elbolab.data import digits as _digits  # noqa: F401  (registers "digits")

__all__ = ["ImageData", "dataset_names", "default_data_dir", "load_data", "register", "to_levels", "to_model"]
