"""The hierarchical VAE's latent as a channel, level by level: rate and active units, so that posterior collapse
of a level (rate ≈ 0, no active units) shows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from elbolab.bounds import mean_ci95, nats_to_bpd, rmse_255
from elbolab.data.base import ImageData
from elbolab.hvae.bound import level_kl, posterior_draw, posterior_mean, top_down
from elbolab.records import Information, LevelRate
from elbolab.vae.information import ACTIVE_THRESHOLD, active_units, rate_record

if TYPE_CHECKING:
    from elbolab.hvae.model import HierarchicalVAE


@torch.no_grad()
def level_rates(
    model: HierarchicalVAE,
    data: ImageData,
    n: int = 1000,
    batch_size: int = 250,
    generator: torch.Generator | None = None,
    active_threshold: float = ACTIVE_THRESHOLD,
) -> Information:
    """Per level l: the rate E[KL(q(z_l|z_>l, x)‖p(z_l|z_>l))] with z_>l ~ q (the bound's KL term l, so the
    rates add up to the bound's KL) and the active units of E_q[z_l | z_>l, x] with the levels above at their
    posterior means; all levels together as one `LatentRate`, with the mean reconstruction's distortion."""
    n = min(n, len(data))
    L = len(model.blocks)
    kls: list[list[torch.Tensor]] = [[] for _ in range(L)]
    means: list[list[torch.Tensor]] = [[] for _ in range(L)]
    distortions = []
    for i in range(0, n, batch_size):
        x = data.model_range(slice(i, min(i + batch_size, n))).to(model.device)
        features, h0 = model.bottom_up(x), model.initial_state(len(x))
        _, drawn = top_down(model.blocks, h0, features, posterior_draw(generator))
        h, at_mean = top_down(model.blocks, h0, features, posterior_mean)
        for level in range(L):
            kls[level].append(level_kl(drawn[level]).flatten(1))
            means[level].append(at_mean[level].z.flatten(1))
        distortions.append(rmse_255(model.likelihood.mean(model.decoder(h)), x))
    kl = [torch.cat(k) for k in kls]
    mean = [torch.cat(m) for m in means]
    levels = []
    for index, (k, m) in enumerate(zip(kl, mean, strict=True)):
        rate, ci = mean_ci95(k.sum(1))
        levels.append(
            LevelRate(
                L - index, rate, ci, float(nats_to_bpd(rate, data.dims)), k.shape[1], active_units(m, active_threshold)
            )
        )
    together = rate_record(torch.cat(kl, 1), torch.cat(mean, 1), torch.cat(distortions), data.dims, active_threshold)
    return Information(latent=together, levels=tuple(levels))
