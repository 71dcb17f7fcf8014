"""The one list of model kinds: kind → (module, config class, model class), imported on first use.

A new model is one module with its config and model class, registered here with one line. Nothing
here imports torch, so the command line can offer the kinds without loading a model.
"""

from __future__ import annotations

import importlib

from elbolab.errors import ConfigError

MODEL_KINDS: dict[str, tuple[str, str, str]] = {
    "vae": ("elbolab.vae", "VAEConfig", "VAE"),
    "diffusion": ("elbolab.diffusion", "DiffusionConfig", "DiffusionModel"),
    "latent-diffusion": ("elbolab.latent", "LatentDiffusionConfig", "LatentDiffusion"),
    "hvae": ("elbolab.hvae", "HVAEConfig", "HierarchicalVAE"),
}
#: how readers name a kind, where not by its name
LABELS: dict[str, str] = {"vae": "VAE", "latent-diffusion": "latent diffusion"}


def model_classes(kind: str) -> tuple[type, type]:
    """(config class, model class) of a model kind."""
    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    module, cfg_name, model_name = MODEL_KINDS[kind]
    mod = importlib.import_module(module)
    return getattr(mod, cfg_name), getattr(mod, model_name)
