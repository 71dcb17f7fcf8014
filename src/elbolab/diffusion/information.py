"""Diffusion's latent along t: progressive rate–distortion and the information x_t still carries about x_0.

Rates are in bits per data dimension, distortions are RMSE on the 0–255 scale (as in Ho et al. 2020,
Fig. 5), so a VAE and a diffusion model sit on the same axes.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from elbolab.bounds import Estimator, nats_to_bpd, rmse_255
from elbolab.data.base import ImageData
from elbolab.diffusion.chain import GaussianDiffusion
from elbolab.diffusion.forward import q_sample
from elbolab.diffusion.schedule import NoiseSchedule, alpha, sigma
from elbolab.errors import ElbolabError
from elbolab.information import InformationCurve, information_estimate
from elbolab.records import ChainRateDistortion, RatePoint


def evaluation_steps(T: int, points: int) -> Tensor:
    """About `points` step indices in 1..T, dense near t = 0 where distortion changes fastest."""
    grid = torch.unique(torch.round(torch.logspace(0, math.log10(T), points, dtype=torch.float64)).long())
    return grid.clamp(1, T)


@torch.no_grad()
def chain_rate_distortion(
    chain: GaussianDiffusion, data: ImageData, n: int = 64, points: int = 30, generator: torch.Generator | None = None
) -> ChainRateDistortion:
    """Progressive lossy coding (Ho et al. 2020, §4.3, Algorithms 3–4) along t, for the clipped reverse process.

    Holding x_i, a receiver has been sent L_T + Σ_{j ≥ i} L_j (the rate; in continuous time, of its
    T-step form, whose step i − 1 → … is per_step column i − 1 and whose reconstruction is sent last) and estimates
    x̂_0 = E[x_0 | x_i] from the network (the distortion). Also the information curve:
    the bits still needed to recover x_0 from x_i, Σ_{j < i} L_j, and the Gaussian-channel
    ceiling on I(x_0; x_i) ≤ Σ_d ½ log(1 + SNR_i · Var[x_0,d]).
    """
    schedule, T = chain.schedule, chain.config.T
    device = next(chain.parameters()).device
    x = data.model_range(slice(0, min(n, len(data)))).to(device).double()
    bound = chain.elbo(x, Estimator("exact"), generator=generator, clip=True)
    prior = bound.terms["prior"].double()
    if bound.per_step is None:
        raise ElbolabError(
            "the chain's exact bound gave no per-step terms; the rate-distortion curve is built from them"
        )
    per_step = bound.per_step.double()  # [B, T]: L_0 … L_{T−1}
    sent = prior[:, None] + per_step.flip(1).cumsum(1).flip(1)  # rate to hold x_i, i = 0..T−1
    remaining = per_step.cumsum(1) - per_step  # Σ_{j<i} L_j
    denoiser = chain.denoiser(clip=False)
    variance = data.model_range().double().var(0).flatten()
    points_out = [
        RatePoint(
            step=0,
            t=0.0,
            rate_bpd=nats_to_bpd(bound.total.double().mean().item(), data.dims),
            distortion_rmse=0.0,
            bits_to_recover_bpd=0.0,
            capacity_bpd=float("nan"),
        )
    ]
    for i in evaluation_steps(T, points).tolist():
        t = schedule.times(torch.tensor(i))
        log_snr = schedule.log_snr(t)
        eps = torch.randn(x.shape, generator=generator, dtype=torch.float64, device=x.device)
        x_i = q_sample(chain.q_mean(x, t.expand(x.shape[0]).to(x.device)), log_snr.to(x.device), eps)
        x0_hat = denoiser.x0_hat(x_i, t.expand(x.shape[0]).to(x.device), schedule).clamp(-1, 1)
        rate = sent[:, i] if i < T else prior
        rem = remaining[:, i] if i < T else remaining[:, -1] + per_step[:, -1]
        capacity = 0.5 * torch.log1p(math.exp(log_snr.item()) * variance).sum().item()
        points_out.append(
            RatePoint(
                step=i,
                t=t.item(),
                rate_bpd=nats_to_bpd(rate.mean().item(), data.dims),
                distortion_rmse=rmse_255(x0_hat, x).mean().item(),
                bits_to_recover_bpd=nats_to_bpd(rem.mean().item(), data.dims),
                capacity_bpd=nats_to_bpd(capacity, data.dims),
            )
        )
    # the Monte-Carlo estimate over t on the same images must agree with the exact sum of all T terms
    # (in continuous time: the estimate of the same T-step bound)
    estimator = replace(chain.default_estimator(), steps=T) if chain.continuous else None
    mc = chain.elbo(x, estimator, generator=generator, clip=True)
    diff = (mc.total.double() - bound.total.double()).mean().item()
    diff_se = mc.extras["stderr"].double().pow(2).sum().sqrt().item() / x.shape[0]
    return ChainRateDistortion(
        curve=tuple(points_out),
        n=x.shape[0],
        T=T,
        exact_bpd=nats_to_bpd(bound.total.double().mean().item(), data.dims),
        mc_minus_exact_nats=diff,
        mc_minus_exact_se_nats=diff_se,
        per_step_bpd=tuple(nats_to_bpd(per_step.mean(0), data.dims).tolist()),
    )


def forward_information_at(x: Tensor, log_snr: Tensor, draws: int, generator: torch.Generator) -> tuple[float, float]:
    """I(x_0; x_t) for x_0 uniform over the rows of x [N, D] and x_t = α x_0 + σ ε (Ho et al. 2020, eq. 4)."""
    a, s = alpha(log_snr).item(), sigma(log_snr).item()
    i = torch.randint(0, len(x), (draws,), generator=generator)
    x_t = a * x[i] + s * torch.randn((draws, x.shape[1]), generator=generator, dtype=x.dtype)
    return information_estimate(-torch.cdist(x_t, a * x).pow(2) / (2 * s * s))


def forward_information(
    x: Tensor, schedule: NoiseSchedule, points: int = 64, draws: int = 256, seed: int = 0
) -> InformationCurve:
    """I(x_0; x_t) along t on `points` evenly spaced steps of `schedule`, for the images x [N, ...] in [−1, 1]."""
    flat = x.flatten(1).double()
    generator = torch.Generator().manual_seed(seed)
    steps = sorted(set(torch.linspace(1, schedule.T, points).round().long().tolist()))
    found = [forward_information_at(flat, schedule.log_snr(schedule.times(i)), draws, generator) for i in steps]
    return InformationCurve(
        "forward process q(x_t|x_0)",
        tuple(steps),
        tuple(schedule.times(i).item() for i in steps),
        tuple(v for v, _ in found),
        tuple(se for _, se in found),
        math.log(len(flat)),
        len(flat),
        draws,
    )
