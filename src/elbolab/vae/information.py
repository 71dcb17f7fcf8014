"""The VAE's latent as a channel: its rate, active units and the distortion of its reconstructions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from elbolab.bounds import mean_ci95, nats_to_bpd, rmse_255
from elbolab.data.base import ImageData
from elbolab.records import LatentRate
from elbolab.vae.bound import kl_per_dim

if TYPE_CHECKING:
    from elbolab.vae.model import VAE


@torch.no_grad()
def latent_rate(
    model: VAE, data: ImageData, n: int = 1000, batch_size: int = 250, active_threshold: float = 0.01
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
    kl = torch.cat(kls)
    activity = torch.cat(means).var(0)
    rate, rate_ci = mean_ci95(kl.sum(1))
    return LatentRate(
        rate_nats=rate,
        rate_ci95_nats=rate_ci,
        rate_bpd=nats_to_bpd(rate, data.dims),
        kl_per_dim_nats=tuple(kl.mean(0).tolist()),
        latent_dims=kl.shape[1],
        active_units=int((activity > active_threshold).sum()),
        active_threshold=active_threshold,
        distortion_rmse=mean_ci95(torch.cat(distortions))[0],
        n=n,
    )
