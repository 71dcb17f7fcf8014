"""The VAE's latent as a channel: its rate, active units and the distortion of its reconstructions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from elbolab.bounds import mean_ci95, nats_to_bpd, rmse_255
from elbolab.data.base import ImageData
from elbolab.records import LatentRate
from elbolab.vae.bound import kl_per_dim

if TYPE_CHECKING:
    from elbolab.vae.model import VAE

#: a latent unit is active when its posterior mean varies over x by more than this (Burda et al. 2016, §5.2)
ACTIVE_THRESHOLD = 0.01


def active_units(means: Tensor, threshold: float = ACTIVE_THRESHOLD) -> int:
    """Units u with Cov_x E_q[z_u] > threshold, from the posterior means of N images, [N, d]."""
    return int((means.var(0) > threshold).sum())


def rate_record(kl: Tensor, means: Tensor, distortion: Tensor, dims: int, threshold: float) -> LatentRate:
    """The `LatentRate` of a code from each image's KL per latent dimension [N, d], posterior means [N, d] and
    reconstruction RMSE [N]; `dims` is D, the pixel values per image."""
    rate, rate_ci = mean_ci95(kl.sum(1))
    return LatentRate(
        rate_nats=rate,
        rate_ci95_nats=rate_ci,
        rate_bpd=float(nats_to_bpd(rate, dims)),
        kl_per_dim_nats=tuple(kl.mean(0).tolist()),
        latent_dims=kl.shape[1],
        active_units=active_units(means, threshold),
        active_threshold=threshold,
        distortion_rmse=mean_ci95(distortion)[0],
        n=kl.shape[0],
    )


@torch.no_grad()
def latent_rate(
    model: VAE, data: ImageData, n: int = 1000, batch_size: int = 250, active_threshold: float = ACTIVE_THRESHOLD
) -> LatentRate:
    """Rate KL(q(z|x)‖p(z)) (an upper bound on I(x; z)), KL per latent dimension, active units
    (Cov_x E_q[z_u] > 0.01; Burda et al. 2016, §5.2) and the distortion of the mean reconstruction."""
    n = min(n, len(data))
    kls, means, distortions = [], [], []
    for i in range(0, n, batch_size):
        x = data.model_range(slice(i, min(i + batch_size, n))).to(model.device)
        mean, logvar = model.posterior(x)
        kls.append(kl_per_dim(mean, logvar).flatten(1))
        means.append(mean.flatten(1))
        recon = model.likelihood.mean(model.decoder_params(mean))
        distortions.append(rmse_255(recon, x))
    return rate_record(torch.cat(kls), torch.cat(means), torch.cat(distortions), data.dims, active_threshold)
