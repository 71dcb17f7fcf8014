"""The report's figures, each drawn from the typed results of `compare` (or `report`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from elbolab.evaluate.run import Measurement  # noqa: E402
from elbolab.records import RatePoint, SpeedRow, SweepPoint  # noqa: E402

COLOURS = {"vae": "#1f77b4", "diffusion": "#d62728", "latent-diffusion": "#2ca02c"}
LABELS = {"vae": "VAE", "diffusion": "diffusion", "latent-diffusion": "latent diffusion"}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bound_terms(models: dict[str, Measurement], path: Path) -> Path:
    """Stacked bars: each model's −ELBO split into its named terms, bits/dim, with the 95% interval."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for i, (kind, res) in enumerate(models.items()):
        bottom = 0.0
        for name, value in res.bound.bpd.terms.items():
            ax.bar(i, value, bottom=bottom, color=COLOURS.get(kind), alpha=0.35 + 0.2 * (bottom > 0),
                   edgecolor="black", linewidth=0.5)
            if abs(value) > 0.04 * res.bound.bpd.total:
                ax.text(i, bottom + value / 2, name, ha="center", va="center", fontsize=7)
            bottom += value
        ax.errorbar(i, res.bound.bpd.total, yerr=res.bound.bpd.ci95, color="black", capsize=4)
    ax.set_xticks(range(len(models)), [LABELS.get(k, k) for k in models])
    ax.set_ylabel("−ELBO, bits/dim (lower is better)")
    ax.set_title("One bound, its terms per model")
    return _save(fig, path)


def per_step_terms(per_step_bpd: tuple[float, ...], path: Path) -> Path:
    """Diffusion's bound along the chain: L_{t−1} for t = 1..T (log scale)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ax.semilogy(range(1, len(per_step_bpd) + 1), [max(v, 1e-12) for v in per_step_bpd], color=COLOURS["diffusion"])
    ax.set_xlabel("step t")
    ax.set_ylabel("L_{t−1}, bits/dim")
    ax.set_title("Diffusion: the bound is a sum of small per-step KLs")
    return _save(fig, path)


def rate_distortion(diffusion_curve: tuple[RatePoint, ...], vae_points: tuple[SweepPoint, ...], path: Path) -> Path:
    """Diffusion's progressive-coding curve and the VAE β-sweep on the same axes."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    if diffusion_curve:
        ax.plot([r.rate_bpd for r in diffusion_curve], [r.distortion_rmse for r in diffusion_curve],
                "o-", ms=3, color=COLOURS["diffusion"], label="diffusion, progressive coding along t")
    for p in vae_points:
        ax.plot(p.rate_bpd, p.distortion_rmse, "s", color=COLOURS["vae"])
        ax.annotate(f"β={p.beta:g}", (p.rate_bpd, p.distortion_rmse), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    if vae_points:
        ax.plot([], [], "s", color=COLOURS["vae"], label="VAE, rate KL(q‖p) vs reconstruction")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("rate, bits/dim")
    ax.set_ylabel("distortion, RMSE (0–255)")
    ax.set_title("Rate–distortion")
    ax.legend(fontsize=7)
    return _save(fig, path)


def information_curve(curve: tuple[RatePoint, ...], latent_rates: dict[str, float], path: Path) -> Path:
    """How much information x_t keeps about x_0 along t, against each learned latent's rate (a bottleneck)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    rows = [r for r in curve if r.step > 0]
    ts = [r.t for r in rows]
    ax.plot(ts, [r.capacity_bpd for r in rows], color=COLOURS["diffusion"],
            label="ceiling on I(x_0; x_t): Σ ½ log(1 + SNR·Var x_0)")
    ax.plot(ts, [r.bits_to_recover_bpd for r in rows], "--", color=COLOURS["diffusion"],
            label="bits still needed to recover x_0 from x_t")
    for kind, rate in latent_rates.items():
        ax.axhline(rate, color=COLOURS.get(kind), label=f"{LABELS.get(kind, kind)} rate KL(q(z|x)‖p(z)) ≥ I(x; z)")
    ax.set_xlabel("t")
    ax.set_ylabel("bits/dim")
    ax.set_title("Information destroyed gradually vs. a one-step bottleneck")
    ax.legend(fontsize=7)
    return _save(fig, path)


def speed(models: dict[str, Measurement], path: Path) -> Path:
    """Sampling images/s against NFE, per model and sampler."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for kind, res in models.items():
        by_sampler: dict[str, list[SpeedRow]] = {}
        for row in res.speed:
            by_sampler.setdefault(row.sampler, []).append(row)
        for sampler, rows in by_sampler.items():
            style = {"ddim": "o-", "dpm-solver++": "^-", "ancestral": "s:", "decoder": "*"}.get(sampler, "o-")
            ax.loglog([r.nfe for r in rows], [r.images_per_second for r in rows], style, color=COLOURS.get(kind),
                      ms=8 if sampler == "decoder" else 4, label=f"{LABELS.get(kind, kind)} {sampler}")
    ax.set_xlabel("network evaluations per image (NFE)")
    ax.set_ylabel("images / s")
    ax.set_title("Sampling speed")
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def information_curves(curves: tuple, path: Path) -> Path:
    """I(x_0; x_t) of the forward process along t (± 1.96 Monte-Carlo errors) and each one-step code's I(x; z)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for c in curves:
        if len(c.steps) > 1:
            lo = [v - 1.96 * s for v, s in zip(c.nats, c.stderr_nats)]
            hi = [v + 1.96 * s for v, s in zip(c.nats, c.stderr_nats)]
            ax.plot(c.steps, c.nats, color=COLOURS["diffusion"], label=f"{c.name}: I(x_0; x_t)")
            ax.fill_between(c.steps, lo, hi, color=COLOURS["diffusion"], alpha=0.25)
        else:
            ax.axhline(c.nats[0], color=COLOURS["vae"], label=f"{c.name}: I(x; z), one step")
    if curves:
        ax.axhline(curves[0].max_nats, color="grey", ls=":", label=f"log N (N = {curves[0].n_images})")
    ax.set_xlabel("forward step t")
    ax.set_ylabel("nats")
    ax.set_title("Information about the image: lost gradually vs. in one step")
    ax.legend(fontsize=7)
    return _save(fig, path)


def steps_curves(points: tuple, floors, key: str, label: str, path: Path) -> Path:
    """A sample figure (95% bootstrap interval) against sampling steps per model and sampler, with the floors."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    groups: dict[tuple[str, str], list] = {}
    for p in points:
        groups.setdefault((p.model, p.sampler), []).append(p)
    for (model, sampler), rows in groups.items():
        rows = sorted(rows, key=lambda p: p.steps)
        values = [p.figures[key].value for p in rows]
        spans = [p.figures[key].interval() for p in rows]
        # a percentile interval need not hold the figure itself (bootstrap bias): bars never go negative
        err = [[max(v - lo, 0.0) for v, (lo, _) in zip(values, spans)],
               [max(hi - v, 0.0) for v, (_, hi) in zip(values, spans)]]
        ax.errorbar([p.steps for p in rows], values, yerr=err, fmt="o-" if len(rows) > 1 else "*", ms=4,
                    capsize=2, color=COLOURS.get(model), alpha=1.0 if sampler != "ddim" else 0.6,
                    label=f"{LABELS.get(model, model)} {sampler}")
    if floors is not None and key in floors.real:
        ax.axhline(floors.real[key].value, color="black", ls=":", label=f"real held-out {floors.real_source}")
        ax.axhline(floors.blurred[key].value, color="grey", ls="--", label=f"test blurred σ={floors.blur_sigma:g} px")
    ax.set_xscale("log")
    ax.set_xlabel("sampling steps (network evaluations)")
    ax.set_ylabel(label)
    ax.set_title(f"{label} against steps")
    ax.legend(fontsize=6)
    return _save(fig, path)


def beta_sweep(points: tuple, path: Path) -> Path:
    """The β-sweep VAEs: Fréchet distance of prior samples and of reconstructions, and sample sharpness, by β."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    betas = [p.beta for p in points]
    for key, style, name in (("sample_figures", "o-", "prior samples"), ("reconstruction_figures", "s--",
                                                                         "reconstructions")):
        values = [getattr(p, key)["fd"].value if "fd" in getattr(p, key) else float("nan") for p in points]
        left.plot(betas, values, style, color=COLOURS["vae"], label=name)
    left.set_xscale("log")
    left.set_xlabel("β")
    left.set_ylabel("Fréchet distance")
    left.legend(fontsize=7)
    right.plot(betas, [p.sample_figures["laplacian_ratio"].value if "laplacian_ratio" in p.sample_figures
                       else float("nan") for p in points], "o-", color=COLOURS["vae"])
    right.axhline(1.0, color="black", ls=":")
    right.set_xscale("log")
    right.set_xlabel("β")
    right.set_ylabel("sample sharpness (× test set)")
    fig.suptitle("The tug-of-war as the essay states it")
    return _save(fig, path)
