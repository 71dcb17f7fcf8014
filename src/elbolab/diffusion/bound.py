"""The variational bound of the T-step chain (Ho et al. 2020, eq. 5), per example in nats.

    −ELBO = L_T + Σ_{i=2..T} L_{i−1} + L_0,
    L_T = KL(q(x_T|x_0) ‖ N(0, I)),  L_{i−1} = KL(q(x_{i−1}|x_i, x_0) ‖ p_θ(x_{i−1}|x_i)),
    L_0 = −log p_θ(x_0|x_1).

It works on x_0 of any shape [B, ...]. The decoder p_θ(x_0|x_1) is a Gaussian binned over
the data's `levels`, or, with levels=None, a Gaussian density for continuous data (latents,
the tests' oracles). Terms are computed in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

from elbolab.bounds import Bound, sum_per_example
from elbolab.diffusion.forward import expand, posterior_coefficients, q_marginal, q_sample, radial_noise
from elbolab.diffusion.reverse import Denoised, Denoiser, denoise, reverse_log_variance, small_log_variance
from elbolab.diffusion.schedule import Schedule
from elbolab.diffusion.time_proposal import draw_uniforms, latin_partner, mean_and_stderr, replicates_for
from elbolab.likelihoods import discretized_gaussian_log_prob, normal_kl, normal_log_prob


def prior_term(x_0: Tensor, schedule: Schedule) -> Tensor:
    """L_T = KL(q(x_T|x_0) ‖ N(0, I)) per example (Ho et al. 2020, eq. 5)."""
    x_0 = x_0.double()
    mean, var = q_marginal(x_0, schedule.log_snr(torch.ones((), dtype=torch.float64)))
    return sum_per_example(normal_kl(mean, torch.log(var).expand_as(mean)))


def decoder_log_prob(x_0: Tensor, mean: Tensor, log_var: Tensor, levels: int | None) -> Tensor:
    """log p_θ(x_0|x_1) elementwise: binned Gaussian over `levels` (Ho et al. 2020, eq. 13), or a density if None."""
    if levels is None:
        return normal_log_prob(x_0, mean, log_var)
    return discretized_gaussian_log_prob(x_0, mean, 0.5 * log_var, levels)


def vlb_term(x_0: Tensor, denoised: Denoised, i: Tensor, schedule: Schedule, variance: str,
             levels: int | None, stop_mean_grad: bool = False) -> Tensor:
    """L_{i−1} per example for steps i ∈ {1..T}: the KL of step i for i ≥ 2, −log p_θ(x_0|x_1) for i = 1.

    Both means are a x_t + b x̂_0 (posterior form; Ho et al. 2020, eq. 7), so the KL is taken
    from their difference b (x_0 − x̂_0) without cancellation. `stop_mean_grad` detaches the
    mean, leaving only the variance trainable (Nichol & Dhariwal 2021, §3.1).
    """
    x_0 = x_0.double()
    x0_hat = denoised.x0_hat.double()
    if stop_mean_grad:
        x0_hat = x0_hat.detach()
    var_interp = None if denoised.var_interp is None else denoised.var_interp.double()
    t, s = schedule.times(i.to(x_0.device)), schedule.times(i.to(x_0.device) - 1)
    _, b = posterior_coefficients(schedule.log_snr(t), schedule.log_snr(s))
    log_var = reverse_log_variance(schedule, t, s, variance, x_0, var_interp)
    kl = normal_kl(expand(b, x_0) * (x_0 - x0_hat), expand(small_log_variance(schedule, t, s), x_0), 0.0, log_var)
    nll = -decoder_log_prob(x_0, x0_hat, log_var, levels)
    first = (i == 1).to(x_0.device).view(-1, *(1,) * (x_0.ndim - 1))
    return sum_per_example(torch.where(first, nll, kl))


def step_terms(denoiser: Denoiser, x_0: Tensor, i: Tensor, eps: Tensor, schedule: Schedule, *,
               parameterisation: str = "eps", variance: str = "small", levels: int | None = None) -> Tensor:
    """L_{i−1} per example at x_i = α_i x_0 + σ_i ε (one draw of x_i per term)."""
    x_0 = x_0.double()
    t = schedule.times(i.to(x_0.device))
    x_t = q_sample(x_0, schedule.log_snr(t), eps.double())
    return vlb_term(x_0, denoise(denoiser, x_t, t, schedule, parameterisation), i, schedule, variance, levels)


def _terms_for_pairs(denoiser: Denoiser, x_0: Tensor, example: Tensor, i: Tensor, schedule: Schedule,
                     eps: Tensor | None, generator: torch.Generator | None, max_batch: int,
                     radius: Tensor | None = None, **kw) -> Tensor:
    """L_{i_n − 1} of example `example[n]` for every pair n, max_batch pairs per denoiser call; the noise is
    `eps[example]`, or drawn, with ‖ε‖² at the quantile `radius[n]` if given (`forward.radial_noise`)."""
    out = []
    for start in range(0, example.numel(), max_batch):
        idx = example[start:start + max_batch]
        x = x_0[idx]
        if eps is not None:
            noise = eps[idx]
        elif radius is not None:
            noise = radial_noise(x.shape, radius[start:start + max_batch], generator, x.device)
        else:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float64)
        out.append(step_terms(denoiser, x, i[start:start + max_batch], noise, schedule, **kw))
    return torch.cat(out)


def exact_bound(denoiser: Denoiser, x_0: Tensor, schedule: Schedule, *, parameterisation: str = "eps",
                variance: str = "small", levels: int | None = None, eps: Tensor | None = None,
                generator: torch.Generator | None = None, max_batch: int = 1024) -> Bound:
    """−ELBO with all T terms, one draw of x_i per term (`eps`, if given, is shared by every step).

    `per_step` [B, T] holds L_0 … L_{T−1}; per_step.sum(1) + prior = total.
    """
    B, T = x_0.shape[0], schedule.T
    device = x_0.device
    example = torch.arange(B, device=device).repeat(T)
    i = torch.arange(1, T + 1, device=device).repeat_interleave(B)
    terms = _terms_for_pairs(denoiser, x_0, example, i, schedule, eps, generator, max_batch,
                             parameterisation=parameterisation, variance=variance, levels=levels)
    per_step = terms.view(T, B).T
    return Bound({"prior": prior_term(x_0, schedule), "diffusion": per_step[:, 1:].sum(1),
                  "reconstruction": per_step[:, 0]}, _dims(x_0), per_step, discrete=levels is not None,
                 extras={"passes": _passes(x_0, T)})


def mc_bound(denoiser: Denoiser, x_0: Tensor, schedule: Schedule, *, samples: int, proposal: Tensor | None = None,
             stratified: bool = False, parameterisation: str = "eps", variance: str = "small",
             levels: int | None = None, generator: torch.Generator | None = None, max_batch: int = 1024) -> Bound:
    """−ELBO from K = `samples` estimates per example, each L_T + L_0 + L_{i−1}/q(i), i ~ q on {2..T}.

    L_T is exact; L_0 is kept out of the draw over steps (a draw would rarely reach it) and computed with
    its own x_1 once in each of the R independent replicates (R = K for iid draws; see `time_proposal`), so
    the replicates' spread holds its noise too: K + R network passes. The weighted term is unbiased for any
    q > 0 (importance sampling; Nichol & Dhariwal 2021, §3.3). `proposal` [T] over steps 1..T is renormalised
    over 2..T (uniform if None). Steps are drawn by the inverse CDF of u, iid or `stratified`; stratified
    draws also stratify ‖ε‖² of each x_i (Latin hypercube; `time_proposal.latin_partner`).
    extras["stderr"] [B]: the standard error of the mean of the K estimates.
    """
    if samples < 2:
        raise ValueError(f"the Monte-Carlo bound needs samples ≥ 2 for its standard error, got {samples}")
    B, T = x_0.shape[0], schedule.T
    device = x_0.device
    q = torch.ones(T - 1, dtype=torch.float64, device=device) if proposal is None else \
        proposal.to(device=device, dtype=torch.float64)[1:]
    q = q / q.sum()
    R = replicates_for(samples) if stratified else samples
    u = draw_uniforms(B, samples, stratified, generator, device)  # [B, K], column c in replicate c % R
    i = torch.searchsorted(torch.cumsum(q, 0), u.T.contiguous().flatten()).clamp(max=T - 2) + 2
    example = torch.arange(B, device=device).repeat(samples + R)
    steps = torch.cat([i, torch.ones(B * R, dtype=i.dtype, device=device)])
    radius = None
    if stratified:  # ‖ε‖² stratified too, paired with the steps' strata at random (Latin hypercube)
        radius = torch.cat([latin_partner(u, generator).T.flatten(),
                            torch.rand(B * R, generator=generator, dtype=torch.float64, device=device)])
    terms = _terms_for_pairs(denoiser, x_0, example, steps, schedule, None, generator, max_batch, radius,
                             parameterisation=parameterisation, variance=variance, levels=levels)
    diffusion = (terms[:B * samples] / q[i - 2]).view(samples, B)
    reconstruction = terms[B * samples:].view(R, B).repeat(samples // R, 1)  # row c holds replicate c % R's L_0
    _, stderr = mean_and_stderr((diffusion + reconstruction).T, stratified)
    return Bound({"prior": prior_term(x_0, schedule), "diffusion": diffusion.mean(0),
                  "reconstruction": reconstruction.mean(0)}, _dims(x_0), None, discrete=levels is not None,
                 extras={"stderr": stderr, "passes": _passes(x_0, samples + R)})


@torch.no_grad()
def pilot_step_second_moment(denoiser: Denoiser, x_0: Tensor, schedule: Schedule, edges: Tensor,
                             per_bin: int = 2, *, parameterisation: str = "eps", variance: str = "small",
                             levels: int | None = None, generator: torch.Generator | None = None,
                             max_batch: int = 1024) -> Tensor:
    """E[L_{i−1}²] per bin of whole steps (`edges` in t, e.g. `time_proposal.step_edges`) from `per_bin`
    stratified steps per bin and image (a pilot pass of bins × per_bin network passes per image), for
    `TimeProposal.fit`."""
    B, T, device = x_0.shape[0], schedule.T, x_0.device
    ends = (edges.to(device) * T).round().long()  # bin k holds steps ends[k] + 1 .. ends[k + 1]
    bins = ends.numel() - 1
    k = bins * per_bin
    u = (torch.arange(k, device=device) % per_bin + torch.rand(B, k, generator=generator, dtype=torch.float64,
                                                              device=device)) / per_bin
    low, width = ends[:-1].repeat_interleave(per_bin), (ends[1:] - ends[:-1]).repeat_interleave(per_bin)
    i = low + 1 + torch.minimum((u * width).floor().long(), width - 1)
    terms = _terms_for_pairs(denoiser, x_0, torch.arange(B, device=device).repeat_interleave(k), i.flatten(),
                             schedule, None, generator, max_batch, parameterisation=parameterisation,
                             variance=variance, levels=levels)
    return terms.view(B, bins, per_bin).pow(2).mean((0, 2))


def _passes(x: Tensor, passes: int) -> Tensor:
    """Network passes per example, [B] (a record for `BoundSummary`)."""
    return torch.full((x.shape[0],), float(passes), dtype=torch.float64, device=x.device)


def _dims(x: Tensor) -> int:
    return int(x[0].numel())
