"""`GaussianDiffusion`: the Gaussian chain with a network, over tensors of any shape [B, ...].

It owns the schedule, the network net(x_t, t) and the timestep resampler, and provides the
training loss, the bound and the samplers. Nothing here knows about images: the image model
(`DiffusionModel`) and latent diffusion both wrap it, passing `levels` for discrete data or
None for continuous data.
"""

from __future__ import annotations


import torch
from torch import Tensor, nn

from elbolab.bounds import Bound, Estimator, nats_to_bpd
from elbolab.diffusion.bound import exact_bound, mc_bound, vlb_term
from elbolab.diffusion.config import DiffusionConfig
from elbolab.diffusion.forward import expand, q_sample
from elbolab.diffusion.parameterisation import x0_and_eps
from elbolab.diffusion.reverse import Denoiser, denoise
from elbolab.diffusion.samplers import ddim, ddim_invert, run_sampler
from elbolab.diffusion.schedule import Schedule, alpha, sigma, time_grid
from elbolab.diffusion.timesteps import LossSecondMomentResampler, draw_steps
from elbolab.errors import ConfigError
from elbolab.nets.unet import UNet


def build_net(config: DiffusionConfig, channels: int, size: int) -> nn.Module:
    """The network net(x_t, t) for data of `channels` channels and side `size`, with C more output
    channels for a learned variance."""
    return UNet(channels, 2 * channels if config.variance == "learned" else channels, config.unet, image_size=size)


class GaussianDiffusion(nn.Module):
    """A T-step variance-preserving diffusion model p_θ(x_{0:T}) around a network net(x_t, t).

    The network maps (x_t [B, C, ...], t [B] ∈ [0, 1]) to the output named by
    `config.parameterisation`, with C more channels (dim 1) for a learned variance.
    """

    def __init__(self, config: DiffusionConfig, net: nn.Module, levels: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.schedule = Schedule(config.schedule, config.T)
        self.net = net
        self.levels = levels
        self.resampler = LossSecondMomentResampler(config.T)

    # ---- the network as a denoiser
    def denoiser(self, clip: bool = False) -> tuple[Denoiser, str]:
        """(denoiser, its parameterisation): the network's raw output, or, with `clip`, x̂_0 clipped to [−1, 1]."""
        cfg = self.config
        dtype = next(self.net.parameters()).dtype

        def raw(x_t: Tensor, t: Tensor) -> Tensor | tuple[Tensor, Tensor]:
            out = self.net(x_t.to(dtype), t.to(dtype)).to(x_t.dtype)
            if cfg.variance != "learned":
                return out
            output, var_out = out.chunk(2, dim=1)
            return output, (var_out + 1) / 2  # Nichol & Dhariwal 2021's v ∈ [−1, 1] ↦ var_interp ∈ [0, 1]

        if not clip:
            return raw, cfg.parameterisation

        def clipped(x_t: Tensor, t: Tensor) -> Tensor | tuple[Tensor, Tensor]:
            out = raw(x_t, t)
            output, var_interp = out if isinstance(out, tuple) else (out, None)
            log_snr = self.schedule.log_snr(t)
            x0_hat, _ = x0_and_eps(output, cfg.parameterisation, x_t, expand(alpha(log_snr), x_t),
                                   expand(sigma(log_snr), x_t))
            x0_hat = x0_hat.clamp(-1, 1)
            return x0_hat if var_interp is None else (x0_hat, var_interp)

        return clipped, "x0"

    # ---- training
    def loss(self, x_0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The per-example objective at one step i per example, reweighted by 1/(T p_i) (unbiased for any p):
        L_simple = mean ‖ε − ε̂‖² (Ho et al. 2020, eq. 14), L_vlb = T·L_{i−1} in bits/dim, or
        L_simple + λ L_vlb with the mean frozen in L_vlb (Nichol & Dhariwal 2021, eq. 16). L_T is left out (constant).
        L_simple runs in float32 (coefficients from the float64 schedule); the objectives with bound terms in float64.
        """
        cfg, T = self.config, self.config.T
        importance = cfg.timesteps == "importance"
        probs = self.resampler.probabilities() if importance else \
            torch.full((T,), 1.0 / T, dtype=torch.float64, device=self.resampler.seen.device)
        i, p_i = draw_steps(x_0.shape[0], probs, generator)
        # L_simple is an MSE of network outputs: float32 loses nothing; the bound's terms keep float64
        x_0 = x_0.float() if cfg.loss == "simple" else x_0.double()
        eps = torch.randn(x_0.shape, generator=generator, device=x_0.device, dtype=x_0.dtype)
        t = self.schedule.times(i)
        x_t = q_sample(x_0, self.schedule.log_snr(t), eps)
        raw, parameterisation = self.denoiser()
        d = denoise(raw, x_t, t, self.schedule, parameterisation)
        mse = (eps - d.eps_hat).pow(2).flatten(1).mean(1)
        if cfg.loss == "simple":
            term = mse
        else:
            nats = vlb_term(x_0, d, i, self.schedule, cfg.variance, self.levels, stop_mean_grad=cfg.loss == "hybrid")
            vlb = T * nats_to_bpd(nats, x_0[0].numel())
            term = vlb if cfg.loss == "vlb" else mse + cfg.hybrid_weight * vlb
        if importance and self.training:
            self.resampler.update(i, term)
        return (term / (T * p_i)).float()

    # ---- the bound
    def default_estimator(self) -> Estimator:
        """The config's estimator: Monte Carlo over t with `elbo_samples` draws, or all T steps."""
        cfg = self.config
        return Estimator("exact") if cfg.elbo_method == "exact" else Estimator("mc", cfg.elbo_samples)

    def elbo(self, x_0: Tensor, estimator: Estimator | None = None, discrete: bool = True,
             generator: torch.Generator | None = None, clip: bool = False) -> Bound:
        """−ELBO per example in nats: "exact" (all T terms) or "mc" (Monte Carlo over t, importance-sampled
        once the resampler has a history) — see `bound.exact_bound` / `bound.mc_bound`. With `clip` the
        reverse process is the one `sample(clip=True)` draws from (x̂_0 clipped to [−1, 1])."""
        cfg = self.config
        estimator = estimator or self.default_estimator()
        denoiser, parameterisation = self.denoiser(clip)
        kw = dict(parameterisation=parameterisation, variance=cfg.variance, levels=self.levels if discrete else None,
                  generator=generator, max_batch=cfg.max_batch)
        if estimator.method == "exact":
            return exact_bound(denoiser, x_0, self.schedule, **kw)
        if estimator.method == "mc":
            proposal = self.resampler.probabilities() if self.resampler.ready() else None
            return mc_bound(denoiser, x_0, self.schedule, samples=estimator.samples or cfg.elbo_samples,
                            proposal=proposal, **kw)
        raise ConfigError(f"the diffusion chain has no {estimator.method!r} bound; it offers exact and mc")

    # ---- sampling
    def sample(self, shape: tuple[int, ...], sampler: str | None = None, steps: int | None = None,
               eta: float | None = None, variance: str | None = None, clip: bool = False,
               generator: torch.Generator | None = None, device: torch.device | str | None = None) -> Tensor:
        """x_T ~ N(0, I) of `shape`, then the sampler over `steps` (None: the config's) steps → x_0."""
        cfg = self.config
        device = device if device is not None else next(self.net.parameters()).device
        x_T = torch.randn(shape, generator=generator, device=device)
        denoiser, parameterisation = self.denoiser(clip)
        steps = steps if steps is not None else cfg.sample_steps
        return run_sampler(sampler or cfg.sampler, denoiser, x_T, time_grid(cfg.T, steps), self.schedule,
                           parameterisation=parameterisation, variance=variance or cfg.variance,
                           eta=cfg.eta if eta is None else eta, generator=generator)

    def encode(self, x_0: Tensor, steps: int | None = None, clip: bool = False,
               fixed_point: int | None = None) -> Tensor:
        """x_0 → x_T by DDIM inversion over `steps`, each refined `fixed_point` times (None: the config's)."""
        denoiser, parameterisation = self.denoiser(clip)
        fixed_point = self.config.encode_fixed_point if fixed_point is None else fixed_point
        return ddim_invert(denoiser, x_0, self._encode_grid(steps), self.schedule, parameterisation=parameterisation,
                           fixed_point=fixed_point)

    def decode(self, x_T: Tensor, steps: int | None = None, clip: bool = False) -> Tensor:
        """x_T → x_0 by DDIM with η = 0 over `steps` (None: the config's encode_steps)."""
        denoiser, parameterisation = self.denoiser(clip)
        return ddim(denoiser, x_T, self._encode_grid(steps), self.schedule, parameterisation=parameterisation)

    def _encode_grid(self, steps: int | None) -> Tensor:
        return time_grid(self.config.T, steps if steps is not None else min(self.config.encode_steps, self.config.T))
