"""The continuous-time bound of Variational Diffusion Models (Kingma et al. 2021), per example in nats.

    −ELBO = KL(q(z_1|x) ‖ N(0, I))                      prior
          + ½ ∫₀¹ γ′(t) E_ε ‖ε − ε̂(z_t, t)‖² dt           diffusion (VDM, eq. 17)
          + E_{q(z_0|x)}[−log p(x|z_0)]                    reconstruction

with z_t = α_t x + σ_t ε and γ = −λ. With DiffEnc's learned mean x_φ(x, t) (`encoder.MeanEncoder`) z_t = α_t x_φ(x, t) +
σ_t ε, the prior and reconstruction take x_φ(x, 1) and x_φ(x, 0), and the diffusion term is on the predicted
mean with the encoder's velocity (`eps_target`). Its T-step form replaces ½γ′(t)dt by ½ expm1(γ(t_i) − γ(t_{i−1}))
on the grid t_i = i/T (VDM, eq. 14); it is never below the continuous one and falls towards it as T
doubles. The decoder is p(x|z_0) ∝ q(z_0|x) normalised over the data's K levels per dimension (VDM,
App. C), or, for continuous data, the density N(x; z_0/α_0, σ_0²/α_0²).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from elbolab.bounds import Bound, sum_per_example
from elbolab.diffusion.bound import prior_term
from elbolab.diffusion.encoder import MeanEncoder
from elbolab.diffusion.forward import expand, q_sample
from elbolab.diffusion.reverse import Denoiser
from elbolab.diffusion.schedule import ContinuousSchedule, alpha, sigma
from elbolab.diffusion.time_proposal import TimeProposal, draw_uniforms, mean_and_stderr
from elbolab.likelihoods import level_of, normal_log_prob

# ---------------------------------------------------------------- reconstruction

#: levels further than this many σ_0/α_0 from z_0/α_0 are left out of p(x|z_0)'s normaliser (< e^-288 of it)
WINDOW_Z = 24.0


def level_log_prob(x_0: Tensor, z_0: Tensor, log_snr_0: Tensor, levels: int | None) -> Tensor:
    """log p(x|z_0) elementwise, p(x = x_k|z_0) ∝ N(z_0; α_0 x_k, σ_0²) over the K levels (VDM, App. C);
    for levels=None the density N(x; z_0/α_0, σ_0²/α_0²)."""
    a, s = expand(alpha(log_snr_0), z_0), expand(sigma(log_snr_0), z_0)
    if levels is None:
        return normal_log_prob(x_0, z_0 / a, 2 * torch.log(s / a))
    step = 2.0 / (levels - 1)
    z, a_, s_ = z_0.unsqueeze(-1), a.unsqueeze(-1), s.unsqueeze(-1)

    def logit(k: Tensor) -> Tensor:
        return -0.5 * ((z - a_ * (k * step - 1)) / s_) ** 2

    # the normaliser: every level within WINDOW_Z standard deviations of z_0 (those beyond add < e^-(WINDOW_Z²/2)
    # of the sum, below float64's resolution), so 256 levels cost a few, not 256, terms per dimension
    half = min(levels - 1, math.ceil(WINDOW_Z * (s / (a * step)).max().item()) + 1)
    centre = level_of(z_0 / a, levels).unsqueeze(-1)
    near = centre + torch.arange(-half, half + 1, device=z_0.device)
    inside = (near >= 0) & (near < levels)
    logits = torch.where(inside, logit(near.to(z_0.dtype)), torch.full((), -math.inf, dtype=z_0.dtype))
    return logit(level_of(x_0, levels).to(z_0.dtype).unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)


def reconstruction_term(
    x_0: Tensor, schedule: ContinuousSchedule, levels: int | None, eps: Tensor, mean: Tensor | None = None
) -> Tensor:
    """−log p(x|z_0) per example at z_0 = α_0 m + σ_0 ε (one draw of z_0 per row of eps), m = x, or DiffEnc's
    x_φ(x, 0) if `mean` is given."""
    log_snr_0 = schedule.log_snr(torch.zeros((), dtype=torch.float64))
    z_0 = q_sample(x_0.double() if mean is None else mean, log_snr_0, eps.double())
    return -sum_per_example(level_log_prob(x_0.double(), z_0, log_snr_0, levels))


def encoded_prior_term(x_0: Tensor, schedule: ContinuousSchedule, encoder: MeanEncoder | None) -> Tensor:
    """KL(q(z_1|x) ‖ N(0, I)) with q's mean α_1 x, or α_1 x_φ(x, 1) (DiffEnc)."""
    return prior_term(x_0 if encoder is None else encoded_mean(encoder, x_0, 1.0, schedule), schedule)


def encoded_mean(encoder: MeanEncoder, x_0: Tensor, t: float, schedule: ContinuousSchedule) -> Tensor:
    """x_φ(x, t) at one time t for every example."""
    return encoder(x_0, torch.full((x_0.shape[0],), t, dtype=torch.float64, device=x_0.device), schedule)[0]


def eps_target(
    encoder: MeanEncoder | None, x_0: Tensor, t: Tensor, eps: Tensor, schedule: ContinuousSchedule, T: int | None
) -> tuple[Tensor, Tensor]:
    """(m_t, the target of ε̂ at z_t = α_t m_t + σ_t ε): (x, ε) for a fixed encoder; with DiffEnc's m = x_φ the KL
    of step t → s is ½ (SNR_s − SNR_t) ‖m_t − x̂ + (m_s − m_t)/r‖², r = 1 − SNR_t/SNR_s, i.e. ½ expm1(γ_t − γ_s)
    ‖ε + (α_t/σ_t)(m_t − m_s)/r − ε̂‖², whose limit is ½ γ′ ‖ε + (α_t/σ_t) ∂_t m/γ′ − ε̂‖² (continuous time)."""
    if encoder is None:
        return x_0, eps
    m_t, velocity = encoder(x_0, t, schedule)
    a_over_s = expand(torch.exp(-0.5 * schedule.gamma(t)), x_0)
    if T is None:
        return m_t, eps + a_over_s * velocity / expand(schedule.gamma_prime(t), x_0)
    s = t - 1.0 / T
    m_s, _ = encoder(x_0, s, schedule)
    r = -torch.expm1(schedule.gamma(s) - schedule.gamma(t))
    return m_t, eps + a_over_s * (m_t - m_s) / expand(r, x_0)


# ---------------------------------------------------------------- the diffusion term


def squared_error(
    denoiser: Denoiser,
    x_0: Tensor,
    t: Tensor,
    eps: Tensor,
    schedule: ContinuousSchedule,
    encoder: MeanEncoder | None = None,
    T: int | None = None,
) -> Tensor:
    """‖ε − ε̂(z_t, t)‖² per example at z_t = α_t x + σ_t ε, t a [B] tensor; with DiffEnc's `encoder`, at
    z_t = α_t x_φ(x, t) + σ_t ε against its target (`eps_target`, of the T-step form if T is given)."""
    mean, target = eps_target(encoder, x_0, t, eps, schedule, T)
    z_t = q_sample(mean, schedule.log_snr(t), eps)
    eps_hat = denoiser.denoise(z_t, t, schedule).eps_hat
    return sum_per_example((target - eps_hat) ** 2)


def step_weight(schedule: ContinuousSchedule, t: Tensor, T: int | None) -> Tensor:
    """The integrand's weight: ½ γ′(t) (continuous), or step i's ½ expm1(γ(i/T) − γ((i−1)/T)) at t = i/T."""
    if T is None:
        return 0.5 * schedule.gamma_prime(t)
    return 0.5 * torch.expm1(schedule.gamma(t) - schedule.gamma(t - 1.0 / T))


def diffusion_integrand(
    denoiser: Denoiser,
    x_0: Tensor,
    t: Tensor,
    eps: Tensor,
    schedule: ContinuousSchedule,
    T: int | None = None,
    encoder: MeanEncoder | None = None,
) -> Tensor:
    """½ γ′(t) ‖ε − ε̂‖² (continuous; VDM eq. 17), or step i's term ½ expm1(Δγ_i) ‖ε − ε̂‖² (T steps; eq. 14);
    with DiffEnc's `encoder`, ε's target moved by its velocity (`eps_target`)."""
    x_0 = x_0.double()
    error = squared_error(denoiser, x_0, t, eps.double(), schedule, encoder, T)
    return step_weight(schedule, t, T) * error


def _integrand_pairs(
    denoiser: Denoiser,
    x_0: Tensor,
    example: Tensor,
    t: Tensor,
    schedule: ContinuousSchedule,
    T: int | None,
    generator: torch.Generator | None,
    max_batch: int,
    encoder: MeanEncoder | None = None,
) -> Tensor:
    """The integrand of example `example[n]` at time t[n] for every pair n, max_batch pairs per call."""
    out = []
    for start in range(0, example.numel(), max_batch):
        x = x_0[example[start : start + max_batch]].double()
        eps = torch.randn(x.shape, generator=generator, dtype=torch.float64, device=x.device)
        at = t[start : start + max_batch]
        out.append(diffusion_integrand(denoiser, x, at, eps, schedule, T, encoder))
    return torch.cat(out)


def reconstruction_draws(
    x_0: Tensor,
    schedule: ContinuousSchedule,
    levels: int | None,
    draws: int,
    generator: torch.Generator | None,
    encoder: MeanEncoder | None = None,
) -> Tensor:
    """−log p(x|z_0) at `draws` independent z_0 ~ q(z_0|x) per example, [B, draws] (no network pass)."""
    eps = torch.randn((draws, *x_0.shape), generator=generator, dtype=torch.float64, device=x_0.device)
    mean = None if encoder is None else encoded_mean(encoder, x_0.double(), 0.0, schedule)
    return torch.stack([reconstruction_term(x_0, schedule, levels, e, mean) for e in eps], 1)


# ---------------------------------------------------------------- estimators


def exact_steps_bound(
    denoiser: Denoiser,
    x_0: Tensor,
    schedule: ContinuousSchedule,
    T: int,
    *,
    levels: int | None = None,
    generator: torch.Generator | None = None,
    max_batch: int = 1024,
    encoder: MeanEncoder | None = None,
) -> Bound:
    """The T-step bound with all T terms, one ε per term; `per_step` [B, T] holds step i's term in column i − 1
    (any T ≥ 1; with DiffEnc's `encoder`, its terms are those of the learned mean)."""
    B = x_0.shape[0]
    example = torch.arange(B, device=x_0.device).repeat(T)
    t = (torch.arange(1, T + 1, dtype=torch.float64, device=x_0.device) / T).repeat_interleave(B)
    per_step = _integrand_pairs(denoiser, x_0, example, t, schedule, T, generator, max_batch, encoder).view(T, B).T
    reconstruction = reconstruction_draws(x_0, schedule, levels, 1, generator, encoder)[:, 0]
    prior = encoded_prior_term(x_0, schedule, encoder)
    return Bound(
        {"prior": prior, "diffusion": per_step.sum(1), "reconstruction": reconstruction},
        int(x_0[0].numel()),
        per_step,
        discrete=levels is not None,
        extras={"passes": torch.full((B,), float(T), dtype=torch.float64, device=x_0.device)},
    )


def mc_bound(
    denoiser: Denoiser,
    x_0: Tensor,
    schedule: ContinuousSchedule,
    *,
    samples: int,
    proposal: TimeProposal | None = None,
    stratified: bool = True,
    T: int | None = None,
    levels: int | None = None,
    generator: torch.Generator | None = None,
    max_batch: int = 1024,
    encoder: MeanEncoder | None = None,
) -> Bound:
    """The bound with the diffusion term from K = `samples` draws of t ~ q per example (of steps i when T is
    given), each weighted by 1/q: unbiased for any q > 0; prior exact, reconstruction over K draws of z_0
    (the k-th paired with the k-th t, so the standard error covers both).

    extras: "stderr" [B], "t" and "integrand" [B, K] (the draws and g(t), unweighted), "passes" [B] = K
    network passes.
    """
    if samples < 2:
        raise ValueError(f"the Monte-Carlo bound needs samples ≥ 2 for its standard error, got {samples}")
    proposal = proposal or TimeProposal.uniform()
    B, device = x_0.shape[0], x_0.device
    u = draw_uniforms(B, samples, stratified, generator, device)
    if T is None:
        t, q = proposal.continuous(u)
    else:
        i, q = proposal.discrete(u, T)
        t = i.double() / T
    integrand = _integrand_pairs(
        denoiser,
        x_0,
        torch.arange(B, device=device).repeat_interleave(samples),
        t.flatten(),
        schedule,
        T,
        generator,
        max_batch,
        encoder,
    ).view(B, samples)
    reconstruction = reconstruction_draws(x_0, schedule, levels, samples, generator, encoder)
    _, stderr = mean_and_stderr(integrand / q + reconstruction, stratified)
    return Bound(
        {
            "prior": encoded_prior_term(x_0, schedule, encoder),
            "diffusion": (integrand / q).mean(1),
            "reconstruction": reconstruction.mean(1),
        },
        int(x_0[0].numel()),
        None,
        discrete=levels is not None,
        extras={
            "stderr": stderr,
            "t": t,
            "integrand": integrand,
            "passes": torch.full((B,), float(samples), dtype=torch.float64, device=device),
        },
    )


@torch.no_grad()
def pilot_second_moment(
    denoiser: Denoiser,
    x_0: Tensor,
    schedule: ContinuousSchedule,
    bins: int = 64,
    per_bin: int = 2,
    *,
    T: int | None = None,
    generator: torch.Generator | None = None,
    max_batch: int = 1024,
    encoder: MeanEncoder | None = None,
) -> Tensor:
    """E[g(t)²] per bin of [0, 1] from `per_bin` stratified draws per bin and image: the data for
    `TimeProposal.fit` (a pilot pass of bins × per_bin network passes per image)."""
    B, device = x_0.shape[0], x_0.device
    k = bins * per_bin
    u = (
        torch.arange(k, device=device) // per_bin
        + torch.rand(B, k, generator=generator, dtype=torch.float64, device=device)
    ) / bins
    t = u if T is None else (u * T).ceil().clamp(1, T) / T
    g = _integrand_pairs(
        denoiser,
        x_0,
        torch.arange(B, device=device).repeat_interleave(k),
        t.flatten(),
        schedule,
        T,
        generator,
        max_batch,
        encoder,
    ).view(B, bins, per_bin)
    return g.pow(2).mean((0, 2))
