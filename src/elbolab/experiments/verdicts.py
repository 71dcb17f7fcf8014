"""The verdicts: one function per contrast, each a rule over measured numbers that could come out either way.

Each reads the typed measurements (`evaluate.run.Measurement`) and returns a `records.Contrast`
that states its claim, what was measured, the rule it applied and the verdict.
"""

from __future__ import annotations

from elbolab.evaluate.run import Measurement
from elbolab.experiments.results import RunResult
from elbolab.records import Contrast, SweepPoint

Measured = dict[str, Measurement]


def _verdict(ok: bool | None) -> str:
    return "inconclusive" if ok is None else ("supported" if ok else "not supported")


def sweep_point(run: RunResult) -> SweepPoint:
    """A trained VAE on the rate–distortion axes, at the β its run was trained with."""
    latent = run.measurement.information.latent
    return SweepPoint(beta=float(run.model_config["beta"]), rate_bpd=latent.rate_bpd,
                      distortion_rmse=latent.distortion_rmse, budget_seconds=run.train_seconds)


def contrast_encoder(m: Measured) -> Contrast:
    """A learned one-step encoder against a fixed T-step chain (whose inversion costs T-ish passes)."""
    vae, dif = m["vae"], m["diffusion"]
    ratio = dif.encode_seconds_per_image / vae.encode_seconds_per_image
    return Contrast(
        "Forward process: learned one-step encoder vs. fixed multi-step noising",
        "The VAE encodes with one pass of a learned network; diffusion's forward process has no parameters, "
        "and mapping an image to its latent x_T deterministically (DDIM inversion) takes many network passes.",
        f"VAE encoder: {vae.encoder_parameters:,} learned parameters, {vae.encode_passes} pass, "
        f"{vae.encode_seconds_per_image * 1e3:.3f} ms per image. Diffusion forward process: "
        f"{dif.encoder_parameters} parameters (q(x_t|x_0) in closed form); DDIM inversion with {dif.encode_passes} "
        f"network passes: {dif.encode_seconds_per_image * 1e3:.3f} ms per image ({ratio:.0f}× the VAE).",
        "supported if encoding an image costs diffusion at least 10× the VAE's time",
        _verdict(ratio >= 10), {"ratio": ratio})


def contrast_bottleneck(m: Measured, dims: int) -> Contrast:
    """A low-dimensional bottleneck against same-size latents that lose information gradually."""
    info_v, info_d = m["vae"].information.latent, m["diffusion"].information.chain
    curve = [r for r in info_d.curve if r.step > 0]
    largest_share = max(info_d.per_step_bpd[1:]) / max(sum(info_d.per_step_bpd), 1e-12)
    first_capacity = curve[0].capacity_bpd
    ok = info_v.latent_dims < dims and info_v.rate_bpd < first_capacity and largest_share < 0.1
    return Contrast(
        "Latent: a bottleneck vs. same-size latents with information destroyed gradually",
        "The VAE squeezes x through a low-dimensional z in one step; diffusion's latents x_t have x's size and "
        "lose their information about x_0 a little at every step.",
        f"VAE: {info_v.latent_dims} latent dimensions for D = {dims}, {info_v.active_units} active; rate "
        f"KL(q‖p) = {info_v.rate_nats:.1f} nats = {info_v.rate_bpd:.3f} bits/dim (an upper bound on I(x; z)). "
        f"Diffusion: at the first step x_t can carry up to {first_capacity:.2f} bits/dim, and the bits still "
        f"needed to recover x_0 grow along t; the largest single KL step (t ≥ 2) holds "
        f"{100 * largest_share:.1f}% of the bound.",
        "supported if the VAE's latent is smaller than x and its rate below what x_1 can carry, and diffusion's "
        "information loss is spread out: no single step t ≥ 2 holds 10% of the bound or more",
        _verdict(ok), {"largest_step_share": largest_share, "vae_rate_bpd": info_v.rate_bpd})


def contrast_speed(m: Measured, nfe: int) -> Contrast:
    """One decoder pass against a chain of NFE network passes."""
    vae_ips = max(r.images_per_second for r in m["vae"].speed)
    dif_ips = max(r.images_per_second for r in m["diffusion"].speed if r.nfe == nfe)
    ratio = vae_ips / dif_ips
    return Contrast(
        "Decoder speed: one pass vs. a chain of small steps",
        "The VAE samples with one decoder pass; diffusion needs one network pass per step.",
        f"VAE: {vae_ips:,.0f} images/s (1 pass). Diffusion at NFE {nfe} (its fastest sampler): {dif_ips:,.1f} "
        f"images/s. Ratio {ratio:,.0f}×.",
        "supported if the VAE samples at least 10× faster than diffusion at the NFE used for its quality samples",
        _verdict(ratio >= 10), {"ratio": ratio})


def contrast_bound_in_loss(m: Measured, sweep: tuple[SweepPoint, ...]) -> Contrast:
    """The VAE's reconstruction–KL trade-off (β) against diffusion's sum of per-step KLs."""
    title = "The bound in the loss: a reconstruction–KL tug-of-war vs. a sum of per-step KLs"
    points = sorted(sweep, key=lambda p: p.beta)
    if len(points) < 2:
        return Contrast(title, "Reconstruction and KL pull against each other as β moves the balance.",
                        "no β-sweep in these runs", "needs VAEs at two or more β", "inconclusive")
    rates = [p.rate_bpd for p in points]
    dists = [p.distortion_rmse for p in points]
    tug = all(a > b for a, b in zip(rates, rates[1:])) and all(a < b for a, b in zip(dists, dists[1:]))
    info = m["diffusion"].information.chain
    diff, se = info.mc_minus_exact_nats, info.mc_minus_exact_se_nats
    agrees = abs(diff) <= 3 * se
    sweep_txt = ", ".join(f"β={p.beta:g}: rate {p.rate_bpd:.3f} bits/dim, RMSE {p.distortion_rmse:.1f}"
                          for p in points)
    return Contrast(
        title,
        "In the VAE, reconstruction and KL pull against each other (β moves the balance); diffusion's bound is a "
        "sum of per-step Gaussian KLs, each a weighted ε-prediction error, so a few random steps per image "
        "estimate the whole bound without bias, and training on ‖ε − ε̂‖² (L_simple) pushes every term down.",
        f"VAE β-sweep: {sweep_txt}. Diffusion on {info.n} test images: exact sum of all {info.T} terms "
        f"{info.exact_bpd:.3f} bits/dim; Monte-Carlo estimate over t minus exact = {diff:.2f} ± {se:.2f} nats "
        f"(standard error); trained objective: {m['diffusion'].objective}.",
        "supported if raising β lowers the VAE's rate and raises its distortion at every step of the sweep, and "
        "diffusion's Monte-Carlo bound agrees with the exact per-step sum within 3 standard errors",
        _verdict(tug and agrees), {"monotone_tradeoff": tug, "mc_minus_exact_z": diff / se if se > 0 else None})


def contrast_likelihood(m: Measured) -> Contrast:
    """Whose bound is tighter on held-out data, within the 95% intervals."""
    v, d = m["vae"].bound.bpd, m["diffusion"].bound.bpd
    gap = v.total - d.total
    separated = abs(gap) > v.ci95 + d.ci95
    return Contrast(
        "Likelihood: the same bound, on held-out data",
        "Both optimise the same kind of bound; with enough steps diffusion's is the tighter (VDM, iDDPM).",
        f"VAE {v.total:.3f} ± {v.ci95:.3f} bits/dim, diffusion {d.total:.3f} ± {d.ci95:.3f} "
        f"bits/dim (diffusion {'lower' if gap > 0 else 'higher'} by {abs(gap):.3f}).",
        "supported if diffusion's bound is lower and the 95% intervals do not overlap; not supported if the "
        "VAE's is lower and they do not overlap; inconclusive otherwise",
        _verdict(None if not separated else gap > 0), {"gap_bpd": gap})


def contrast_sharpness(m: Measured) -> Contrast:
    """Blurry one-pass samples against sharp many-step samples, relative to real test images."""
    v, d = m["vae"].sharpness["samples"], m["diffusion"].sharpness["samples"]
    ok = v["laplacian_variance_ratio"] < d["laplacian_variance_ratio"] and \
        v["high_frequency_share_ratio"] < d["high_frequency_share_ratio"]
    return Contrast(
        "Samples: blurry vs. sharp",
        "The VAE's decoder mean averages over everything z leaves open, so its samples are blurry; diffusion's "
        "chain of small Gaussian steps commits to detail, so its samples are as sharp as real images.",
        f"Laplacian variance (× test set): VAE {v['laplacian_variance_ratio']:.2f}, diffusion "
        f"{d['laplacian_variance_ratio']:.2f}; high-frequency power share (× test set): VAE "
        f"{v['high_frequency_share_ratio']:.2f}, diffusion {d['high_frequency_share_ratio']:.2f}.",
        "supported if the VAE's samples are below diffusion's on both sharpness measures",
        _verdict(ok))


def contrast_quality(m: Measured) -> Contrast:
    """Sample quality in the feature space of the data set's classifier."""
    v, d = m["vae"].quality, m["diffusion"].quality
    return Contrast(
        "Sample quality",
        "Diffusion's samples are closer to the data than the VAE's.",
        f"Fréchet distance ({v['feature_net']} features, {v['n_samples']} samples vs. {v['reference']}): VAE "
        f"{v['fd']:.2f}, diffusion {d['fd']:.2f}; precision/recall: VAE {v['precision']:.2f}/{v['recall']:.2f}, "
        f"diffusion {d['precision']:.2f}/{d['recall']:.2f}.",
        "supported if diffusion's Fréchet distance is lower than the VAE's",
        _verdict(d["fd"] < v["fd"]))


def contrast_latent(m: Measured) -> Contrast:
    """Latent diffusion: the autoencoder's z modelled by a diffusion model."""
    ld = m["latent-diffusion"]
    own, ae = ld.bound.bpd, ld.components["autoencoder"].bpd
    nfe_rows = {r.nfe: r.images_per_second for r in ld.speed if r.sampler == "ddim"}
    pix_rows = {r.nfe: r.images_per_second for r in m["diffusion"].speed if r.sampler == "ddim"}
    ratios = {n: nfe_rows[n] / pix_rows[n] for n in sorted(set(nfe_rows) & set(pix_rows))}
    tighter = own.total + own.ci95 < ae.total - ae.ci95
    faster = bool(ratios) and all(r > 1 for r in ratios.values())
    ratio_txt = ", ".join(f"NFE {n}: {r:.1f}×" for n, r in ratios.items())
    return Contrast(
        "Merged: latent diffusion",
        "Modelling a VAE's latents with a diffusion model keeps the autoencoder's fast decoder and replaces its "
        "N(0, I) prior by a far better one: a tighter bound than the VAE's own, and faster sampling than "
        "diffusion in pixel space at the same number of steps.",
        f"Same frozen autoencoder: its own ELBO {ae.total:.3f} ± {ae.ci95:.3f} bits/dim, with the latent "
        f"diffusion prior {own.total:.3f} ± {own.ci95:.3f} bits/dim. DDIM sampling speed against pixel "
        f"diffusion: {ratio_txt}.",
        "supported if the latent diffusion bound is below its autoencoder's ELBO with non-overlapping 95% "
        "intervals, and it samples faster than pixel-space diffusion at every NFE timed",
        _verdict(tighter and faster), {"speed_ratios": ratios})


def judge(measured: Measured, sweep: tuple[SweepPoint, ...], dims: int, nfe: int) -> tuple[Contrast, ...]:
    """Every contrast whose models were measured."""
    out: list[Contrast] = []
    if {"vae", "diffusion"} <= set(measured):
        out += [contrast_encoder(measured), contrast_bottleneck(measured, dims), contrast_speed(measured, nfe),
                contrast_sharpness(measured), contrast_quality(measured),
                contrast_bound_in_loss(measured, sweep), contrast_likelihood(measured)]
    if {"latent-diffusion", "diffusion"} <= set(measured):
        out.append(contrast_latent(measured))
    return tuple(out)
