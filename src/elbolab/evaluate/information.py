"""Information: the VAE's rate and active units; diffusion's progressive rate–distortion and
how much information x_t still carries about x_0 along the chain.

Rates are in bits per data dimension, distortions are RMSE on the 0–255 scale (as in
Ho et al. 2020, Fig. 5), so a VAE and a diffusion model sit on the same axes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from elbolab.bounds import mean_ci95, nats_to_bpd
from elbolab.data.base import ImageData
from elbolab.diffusion.forward import q_sample
from elbolab.diffusion.reverse import denoise
from elbolab.vae.bound import kl_per_dim

RMSE_SCALE = 127.5  # model range [-1, 1] → 0..255


def rmse_255(x_hat: Tensor, x: Tensor) -> Tensor:
    """Per-example root-mean-square error on the 0–255 scale, [B]."""
    return (x_hat - x).pow(2).flatten(1).mean(1).sqrt() * RMSE_SCALE


@torch.no_grad()
def vae_information(model, data: ImageData, n: int = 1000, batch_size: int = 250,
                    active_threshold: float = 0.01) -> dict[str, Any]:
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
    return {"rate_nats": rate, "rate_ci95_nats": rate_ci, "rate_bpd": nats_to_bpd(rate, data.dims),
            "kl_per_dim_nats": kl.mean(0).tolist(), "latent_dims": kl.shape[1],
            "active_units": int((activity > active_threshold).sum()), "active_threshold": active_threshold,
            "distortion_rmse": mean_ci95(torch.cat(distortions))[0], "n": n}


def _evaluation_steps(T: int, points: int) -> Tensor:
    """About `points` step indices in 1..T, dense near t = 0 where distortion changes fastest."""
    grid = torch.unique(torch.round(torch.logspace(0, math.log10(T), points, dtype=torch.float64)).long())
    return grid.clamp(1, T)


@torch.no_grad()
def diffusion_rate_distortion(model, data: ImageData, n: int = 64, points: int = 30,
                              generator: torch.Generator | None = None) -> dict[str, Any]:
    """Progressive lossy coding (Ho et al. 2020, §4.3, Algorithms 3–4) along t.

    Holding x_i, a receiver has been sent L_T + Σ_{j ≥ i} L_j (the rate) and estimates
    x̂_0 = E[x_0 | x_i] from the network (the distortion). Also the information curve:
    the bits still needed to recover x_0 from x_i, Σ_{j < i} L_j, and the Gaussian-channel
    ceiling on I(x_0; x_i) ≤ Σ_d ½ log(1 + SNR_i · Var[x_0,d]).
    """
    chain = model.diffusion
    schedule, T = chain.schedule, chain.config.T
    x = data.model_range(slice(0, min(n, len(data)))).to(model.device).double()
    bound = model.elbo(x, method="exact")
    per_step = bound.per_step.double()                       # [B, T]: L_0 … L_{T−1}
    sent = bound.terms["prior"].double()[:, None] + per_step.flip(1).cumsum(1).flip(1)  # rate to hold x_i, i=0..T-1
    remaining = per_step.cumsum(1) - per_step                # Σ_{j<i} L_j
    steps = _evaluation_steps(T, points)
    raw, prediction = chain.denoiser(clip=False)
    variance = data.model_range().double().var(0).flatten()
    rows = []
    for i in steps.tolist():
        t = schedule.times(torch.tensor(i))
        log_snr = schedule.log_snr(t)
        eps = torch.randn(x.shape, generator=generator, dtype=torch.float64, device=x.device)
        x_i = q_sample(x, log_snr.to(x.device), eps)
        x0_hat = denoise(raw, x_i, t.expand(x.shape[0]).to(x.device), schedule, prediction).x0_hat.clamp(-1, 1)
        rate = sent[:, i] if i < T else bound.terms["prior"].double()
        rem = remaining[:, i] if i < T else remaining[:, -1] + per_step[:, -1]
        capacity = 0.5 * torch.log1p(math.exp(log_snr.item()) * variance).sum().item()
        rows.append({"step": i, "t": t.item(), "rate_bpd": nats_to_bpd(rate.mean().item(), data.dims),
                     "distortion_rmse": rmse_255(x0_hat, x).mean().item(),
                     "bits_to_recover_bpd": nats_to_bpd(rem.mean().item(), data.dims),
                     "capacity_bpd": nats_to_bpd(capacity, data.dims)})
    rows.append({"step": 0, "t": 0.0, "rate_bpd": nats_to_bpd(bound.total.double().mean().item(), data.dims),
                 "distortion_rmse": 0.0, "bits_to_recover_bpd": 0.0, "capacity_bpd": float("nan")})
    rows.sort(key=lambda r: r["step"])
    # the Monte-Carlo estimate over t on the same images must agree with the exact sum of all T terms
    mc = model.elbo(x, method="mc", generator=generator)
    diff = (mc.total.double() - bound.total.double()).mean().item()
    diff_se = mc.extras["stderr"].double().pow(2).sum().sqrt().item() / x.shape[0]
    return {"curve": rows, "n": x.shape[0], "T": T, "exact_bpd": nats_to_bpd(bound.total.double().mean().item(),
                                                                             data.dims),
            "mc_minus_exact_nats": diff, "mc_minus_exact_se_nats": diff_se,
            "per_step_bpd": nats_to_bpd(per_step.mean(0), data.dims).tolist()}
