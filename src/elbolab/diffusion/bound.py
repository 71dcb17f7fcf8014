"""The variational bound of the T-step chain (Ho et al. 2020, eq. 5), per example in nats.

    −ELBO = L_T + Σ_{i=2..T} L_{i−1} + L_0,
    L_T = KL(q(x_T|x_0) ‖ N(0, I)),  L_{i−1} = KL(q(x_{i−1}|x_i, x_0) ‖ p_θ(x_{i−1}|x_i)),
    L_0 = −log p_θ(x_0|x_1).

It works on x_0 of any shape [B, ...]. The decoder p_θ(x_0|x_1) is a Gaussian binned over
the data's `levels`, or, with levels=None, a Gaussian density for continuous data (latents,
the tests' oracles). Terms are computed in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from elbolab.bounds import Bound, sum_per_example
from elbolab.diffusion.forward import expand, posterior_coefficients, q_marginal, q_sample
from elbolab.diffusion.noise_control import (
    FEATURES,
    control_features,
    control_value,
    coordinate_classes,
    fit_slopes,
    latin_normal,
)
from elbolab.diffusion.reverse import Denoised, Denoiser, reverse_log_variance, small_log_variance
from elbolab.diffusion.schedule import NoiseSchedule
from elbolab.diffusion.time_proposal import bin_ends, draw_uniforms, mean_and_stderr, replicates_for
from elbolab.likelihoods import discretized_gaussian_log_prob, normal_kl, normal_log_prob


def prior_term(x_0: Tensor, schedule: NoiseSchedule) -> Tensor:
    """L_T = KL(q(x_T|x_0) ‖ N(0, I)) per example (Ho et al. 2020, eq. 5)."""
    x_0 = x_0.double()
    mean, var = q_marginal(x_0, schedule.log_snr(torch.ones((), dtype=torch.float64)))
    return sum_per_example(normal_kl(mean, torch.log(var).expand_as(mean)))


def decoder_log_prob(x_0: Tensor, mean: Tensor, log_var: Tensor, levels: int | None) -> Tensor:
    """log p_θ(x_0|x_1) elementwise: binned Gaussian over `levels` (Ho et al. 2020, eq. 13), or a density if None."""
    if levels is None:
        return normal_log_prob(x_0, mean, log_var)
    return discretized_gaussian_log_prob(x_0, mean, 0.5 * log_var, levels)


def vlb_term(
    x_0: Tensor,
    denoised: Denoised,
    i: Tensor,
    schedule: NoiseSchedule,
    variance: str,
    levels: int | None,
    stop_mean_grad: bool = False,
) -> Tensor:
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


def step_terms(
    denoiser: Denoiser,
    x_0: Tensor,
    i: Tensor,
    eps: Tensor,
    schedule: NoiseSchedule,
    *,
    variance: str = "small",
    levels: int | None = None,
) -> Tensor:
    """L_{i−1} per example at x_i = α_i x_0 + σ_i ε (one draw of x_i per term)."""
    x_0 = x_0.double()
    t = schedule.times(i.to(x_0.device))
    x_t = q_sample(x_0, schedule.log_snr(t), eps.double())
    return vlb_term(x_0, denoiser.denoise(x_t, t, schedule), i, schedule, variance, levels)


def _terms_for_pairs(
    denoiser: Denoiser,
    x_0: Tensor,
    example: Tensor,
    i: Tensor,
    schedule: NoiseSchedule,
    noise: Callable[[int, int], Tensor],
    max_batch: int,
    control: Tensor | None = None,
    classes: Tensor | None = None,
    *,
    variance: str = "small",
    levels: int | None = None,
) -> Tensor:
    """L_{i_n − 1} of example `example[n]` for every pair n, at most max_batch pairs per denoiser call; the ε of
    pairs start..stop−1 is `noise(start, stop)` (drawn chunk by chunk, so no more than max_batch are held).
    With `control` [T, FEATURES] (and `classes` [B, D], `noise_control.coordinate_classes` of x_0) each term has
    its control variate subtracted (`noise_control.control_value`, mean zero)."""
    if control is not None and classes is None:
        raise ValueError("a control variate needs the coordinate classes of x_0 (noise_control.coordinate_classes)")
    out = []
    for start in range(0, example.numel(), max_batch):
        stop = min(start + max_batch, example.numel())
        idx, at, eps = example[start:stop], i[start:stop], noise(start, stop)
        terms = step_terms(denoiser, x_0[idx], at, eps, schedule, variance=variance, levels=levels)
        if control is not None and classes is not None:
            terms = terms - control_value(eps, classes[idx], control[at - 1])
        out.append(terms)
    return torch.cat(out)


def _normal(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Callable[[int, int], Tensor]:
    """`noise` for `_terms_for_pairs`: fresh iid N(0, I) ε of one example's `shape` for each pair."""
    return lambda start, stop: torch.randn(
        (stop - start, *shape), generator=generator, device=device, dtype=torch.float64
    )


def _slices(eps: Tensor) -> Callable[[int, int], Tensor]:
    """`noise` for `_terms_for_pairs`: the pairs' ε drawn beforehand, rows start..stop−1."""
    return lambda start, stop: eps[start:stop]


def exact_bound(
    denoiser: Denoiser,
    x_0: Tensor,
    schedule: NoiseSchedule,
    *,
    variance: str = "small",
    levels: int | None = None,
    eps: Tensor | None = None,
    generator: torch.Generator | None = None,
    max_batch: int = 1024,
) -> Bound:
    """−ELBO with all T terms, one draw of x_i per term (`eps`, if given, is shared by every step).

    `per_step` [B, T] holds L_0 … L_{T−1}; per_step.sum(1) + prior = total.
    """
    B, T = x_0.shape[0], schedule.T
    device = x_0.device
    example = torch.arange(B, device=device).repeat(T)
    i = torch.arange(1, T + 1, device=device).repeat_interleave(B)
    noise = (
        (lambda start, stop: eps[example[start:stop]])
        if eps is not None
        else _normal(tuple(x_0.shape[1:]), generator, device)
    )
    terms = _terms_for_pairs(
        denoiser,
        x_0,
        example,
        i,
        schedule,
        noise,
        max_batch,
        variance=variance,
        levels=levels,
    )
    per_step = terms.view(T, B).T
    return Bound(
        {"prior": prior_term(x_0, schedule), "diffusion": per_step[:, 1:].sum(1), "reconstruction": per_step[:, 0]},
        _dims(x_0),
        per_step,
        discrete=levels is not None,
        extras={"passes": _passes(x_0, T)},
    )


def mc_bound(
    denoiser: Denoiser,
    x_0: Tensor,
    schedule: NoiseSchedule,
    *,
    samples: int,
    proposal: Tensor | None = None,
    stratified: bool = False,
    latin: bool = True,
    control: Tensor | None = None,
    variance: str = "small",
    levels: int | None = None,
    generator: torch.Generator | None = None,
    max_batch: int = 1024,
) -> Bound:
    """−ELBO from K = `samples` estimates per example, each L_T + L_0 + L_{i−1}/q(i), i ~ q on {2..T}.

    L_T is exact; L_0 is kept out of the draw over steps (a draw would rarely reach it) and computed with
    its own x_1 once in each of the R independent replicates (R = K for iid draws; see `time_proposal`), so
    the replicates' spread holds its noise too: K + R network passes. The weighted term is unbiased for any
    q > 0 (importance sampling; Nichol & Dhariwal 2021, §3.3). `proposal` [T] over steps 1..T is renormalised
    over 2..T (uniform if None). Steps are drawn by the inverse CDF of u, iid or `stratified`.

    Stratified (and `latin`), the ε of a replicate's K/R + 1 terms (its steps and its L_0) form a Latin
    hypercube, every coordinate stratified over them (`noise_control.latin_normal`): each term's ε is still
    N(0, I), and the additive part of the ε-noise, nearly all of it at the first steps, largely cancels;
    otherwise ε is iid. `control` [T, FEATURES] (slopes per step, from `pilot_step_fit`) subtracts from each
    term, L_0 too, the control variate `noise_control.control_value` of its ε, of mean zero: the estimate's
    expectation is unchanged. A one-step chain (T = 1) has no step to draw: its K estimates are L_T + L_0 at K
    independent x_1 (`one_step_bound`).
    extras["stderr"], shape [B]: the standard error of the mean of the K estimates.
    """
    if samples < 2:
        raise ValueError(f"the Monte-Carlo bound needs samples ≥ 2 for its standard error, got {samples}")
    B, T = x_0.shape[0], schedule.T
    device = x_0.device
    if T == 1:
        return one_step_bound(
            denoiser,
            x_0,
            schedule,
            samples=samples,
            variance=variance,
            levels=levels,
            generator=generator,
            max_batch=max_batch,
        )
    q = (
        torch.ones(T - 1, dtype=torch.float64, device=device)
        if proposal is None
        else proposal.to(device=device, dtype=torch.float64)[1:]
    )
    q = q / q.sum()
    R = replicates_for(samples) if stratified else samples
    m = samples // R
    u = draw_uniforms(B, samples, stratified, generator, device)  # [B, K], column c in replicate c % R
    i = torch.searchsorted(torch.cumsum(q, 0), u.contiguous()).clamp(max=T - 2) + 2
    # per example: its K drawn steps (column c in replicate c % R), then L_0 of each replicate
    steps = torch.cat([i, torch.ones(B, R, dtype=i.dtype, device=device)], 1)
    pairs = samples + R
    classes = None if control is None else coordinate_classes(x_0, levels)
    control = None if control is None else control.to(device=device, dtype=torch.float64)
    per_chunk = max(1, max_batch // pairs)  # images whose ε is drawn together (at least one)
    chunks = []
    for start in range(0, B, per_chunk):
        x = x_0[start : start + per_chunk]
        n, shape = x.shape[0], tuple(x.shape[1:])
        if stratified and latin:  # replicate r: Latin-hypercube ε over its m steps (columns s·R + r) and its L_0
            sets = latin_normal(n * R, m + 1, shape, generator, device).view(n, R, m + 1, *shape)
            eps = torch.cat([sets[:, :, :m].transpose(1, 2).reshape(n, samples, *shape), sets[:, :, m]], 1)
        else:
            eps = torch.randn((n, pairs, *shape), generator=generator, dtype=torch.float64, device=device)
        eps = eps.flatten(0, 1)
        chunk = _terms_for_pairs(
            denoiser,
            x,
            torch.arange(n, device=device).repeat_interleave(pairs),
            steps[start : start + n].flatten(),
            schedule,
            _slices(eps),
            max_batch,
            control,
            None if classes is None else classes[start : start + n],
            variance=variance,
            levels=levels,
        )
        chunks.append(chunk.view(n, pairs))
    terms = torch.cat(chunks)
    diffusion = terms[:, :samples] / q[i - 2]  # [B, K]
    reconstruction = terms[:, samples:].repeat(1, m)  # column c holds replicate c % R's L_0
    _, stderr = mean_and_stderr(diffusion + reconstruction, stratified)
    return Bound(
        {"prior": prior_term(x_0, schedule), "diffusion": diffusion.mean(1), "reconstruction": reconstruction.mean(1)},
        _dims(x_0),
        None,
        discrete=levels is not None,
        extras={"stderr": stderr, "passes": _passes(x_0, samples + R)},
    )


def one_step_bound(
    denoiser: Denoiser,
    x_0: Tensor,
    schedule: NoiseSchedule,
    *,
    samples: int,
    variance: str = "small",
    levels: int | None = None,
    generator: torch.Generator | None = None,
    max_batch: int = 1024,
) -> Bound:
    """−ELBO of the one-step chain, L_T + L_0 with L_0 = E_{q(x_1|x_0)}[−log p_θ(x_0|x_1)] from K = `samples` iid
    x_1 per example (K network passes); "diffusion" is zero, there being no step between."""
    B, K, device = x_0.shape[0], samples, x_0.device
    terms = _terms_for_pairs(
        denoiser,
        x_0,
        torch.arange(B, device=device).repeat_interleave(K),
        torch.ones(B * K, dtype=torch.long, device=device),
        schedule,
        _normal(tuple(x_0.shape[1:]), generator, device),
        max_batch,
        variance=variance,
        levels=levels,
    ).view(B, K)
    _, stderr = mean_and_stderr(terms, False)
    prior = prior_term(x_0, schedule)
    return Bound(
        {"prior": prior, "diffusion": torch.zeros_like(prior), "reconstruction": terms.mean(1)},
        _dims(x_0),
        None,
        discrete=levels is not None,
        extras={"stderr": stderr, "passes": _passes(x_0, K)},
    )


@torch.no_grad()
def pilot_step_fit(
    denoiser: Denoiser,
    x_0: Tensor,
    schedule: NoiseSchedule,
    edges: Tensor,
    *,
    variance: str = "small",
    levels: int | None = None,
    generator: torch.Generator | None = None,
    max_batch: int = 1024,
) -> tuple[Tensor, Tensor]:
    """A pilot pass over bins of whole steps (`edges` in t, e.g. `time_proposal.step_edges`): per image and bin,
    one step drawn uniformly in the bin, its term at two independent ε (2 × bins network passes per image).

    Returns (slopes [bins, FEATURES] of the control variate, `noise_control.fit_slopes`; E[(L_{i−1} − control)²]
    per bin, the second moment of what `mc_bound` then weights, for `TimeProposal.fit`)."""
    B, T, device = x_0.shape[0], schedule.T, x_0.device
    ends = bin_ends(edges.to(device), T)
    bins = ends.numel() - 1
    low, width = ends[:-1], ends[1:] - ends[:-1]
    u = torch.rand(B, bins, generator=generator, dtype=torch.float64, device=device)
    i = (low + 1 + torch.minimum((u * width).floor().long(), width - 1)).repeat_interleave(2, 1)  # [B, bins·2]
    example = torch.arange(B, device=device).repeat_interleave(2 * bins)
    classes, kept = coordinate_classes(x_0, levels), []
    draw = _normal(tuple(x_0.shape[1:]), generator, device)

    def noise(start: int, stop: int) -> Tensor:  # each chunk's ε, and the features kept (not the ε)
        eps = draw(start, stop)
        kept.append(control_features(eps, classes[example[start:stop]]))
        return eps

    terms = _terms_for_pairs(
        denoiser,
        x_0,
        example,
        i.flatten(),
        schedule,
        noise,
        max_batch,
        variance=variance,
        levels=levels,
    ).view(B, bins, 2)
    features = torch.cat(kept).view(B, bins, 2, FEATURES)
    slopes = fit_slopes(terms, features)
    residual = terms - (features * slopes[None, :, None]).sum(-1)
    return slopes, residual.pow(2).mean((0, 2))


def _passes(x: Tensor, passes: int) -> Tensor:
    """Network passes per example, [B] (a record for `BoundSummary`)."""
    return torch.full((x.shape[0],), float(passes), dtype=torch.float64, device=x.device)


def _dims(x: Tensor) -> int:
    return int(x[0].numel())
