"""`elbolab compare`: a VAE, a diffusion model and a latent diffusion model, trained under one
wall-clock budget on one data set, measured through the same contract, with a verdict per contrast.

Every number in the results is measured here; each verdict is a rule over those numbers that
could come out either way, and states the rule it applied.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from elbolab.data import load_data
from elbolab.data.base import ImageData
from elbolab.evaluate.information import vae_information
from elbolab.evaluate.run import EvalConfig, Log, measure
from elbolab.machine import machine_info
from elbolab.train.api import train_run
from elbolab.train.checkpoint import atomic_write_json
from elbolab.train.run import CHECKPOINT_FILE, METRICS_FILE, load_run

KINDS = ("vae", "diffusion", "latent-diffusion")


@dataclass(frozen=True)
class CompareConfig:
    """What `compare` trains, and how it measures (`evaluation`)."""

    data: str = "digits"
    data_dir: str | None = None
    budget: float = 60.0                       # training seconds per model
    seed: int = 0
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    beta_sweep: tuple[float, ...] = (0.25, 4.0)  # extra VAEs placed on the rate–distortion axes
    sweep_budget_fraction: float = 0.25        # of `budget`, per β-sweep VAE
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per kind: extra --set keys


def default_overrides(side: int, cfg: CompareConfig) -> dict[str, dict[str, Any]]:
    """Per-model settings for a budgeted run: the budget, a seed, no periodic evaluation; for small
    images (≤ 16 px, e.g. digits) the tiny UNet, whose size (~0.18M) is near the VAE's (~0.3M)."""
    common = {"train.max_seconds": cfg.budget, "train.steps": 1_000_000, "train.seed": cfg.seed,
              "train.eval_every": 0, "train.checkpoint_every": 500}
    out = {kind: dict(common) for kind in KINDS}
    # latent diffusion spends the one budget on two stages: stage 1 (the autoencoder) takes budget·a/(a + s)
    # for step caps a and s, stage 2 what is left; equal caps split it in half
    out["latent-diffusion"]["model.autoencoder_steps"] = common["train.steps"]
    if side <= 16:
        out["diffusion"]["model.unet.preset"] = "tiny"
        out["latent-diffusion"]["model.diffusion.unet.preset"] = "tiny"
    for kind, extra in cfg.overrides.items():
        out.setdefault(kind, dict(common)).update(extra)
    return out


def check_settings(run_dir: Path, kind: str, overrides: dict[str, Any]) -> None:
    """Refuse to reuse a run in `run_dir` that was trained with other settings than these."""
    from elbolab.errors import ElbolabError
    from elbolab.train.run import CONFIG_FILE, read_run_config, resolve_configs

    if not (run_dir / CONFIG_FILE).is_file():
        return
    saved = read_run_config(run_dir)
    model_cfg, train_cfg = resolve_configs(kind, None, {k: v for k, v in overrides.items()})
    if saved.model != model_cfg or saved.train != train_cfg:
        raise ElbolabError(f"{run_dir} holds a {kind} run trained with other settings (budget, seed or model); "
                           f"choose another --out or delete it")


def train_models(cfg: CompareConfig, out: Path, log: Log, progress: bool) -> dict[str, Path]:
    """Train (or pick up) the three runs; a finished run is reused, an interrupted one resumed."""
    runs = {}
    side = load_data(cfg.data, "test", cfg.data_dir).shape[-1]
    for kind, overrides in default_overrides(side, cfg).items():
        run_dir = out / "runs" / kind
        runs[kind] = run_dir
        check_settings(run_dir, kind, overrides)
        if (run_dir / METRICS_FILE).is_file():
            log(f"{kind}: reusing the finished run in {run_dir}")
            continue
        resume = (run_dir / CHECKPOINT_FILE).is_file()
        log(f"{kind}: {'resuming' if resume else 'training'} for {cfg.budget:.0f} s")
        train_run(kind, cfg.data, run_dir, data_dir=cfg.data_dir, overrides=overrides, resume=resume,
                  progress=progress)
    return runs


def measure_run(kind: str, run_dir: Path, cfg: CompareConfig, test: ImageData, features: Any,
                log: Log) -> dict[str, Any]:
    """`evaluate.measure` on a trained run, with its training figures beside."""
    _, model = load_run(run_dir)
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    result, images = measure(kind, model, test, cfg.evaluation, features, log)
    result.update({"train_steps": metrics["step"], "train_images_per_s": metrics["train_images_per_s"],
                   "train_seconds": metrics["train_seconds"]})
    return {"result": result, "images": images}


def beta_sweep(cfg: CompareConfig, out: Path, test: ImageData, log: Log, progress: bool) -> list[dict[str, Any]]:
    """Extra VAEs at other β, each on a share of the budget, placed on the rate–distortion axes."""
    points = []
    for beta in cfg.beta_sweep:
        run_dir = out / "runs" / f"vae-beta{beta:g}"
        overrides = {**default_overrides(test.shape[-1], cfg)["vae"], "model.beta": beta,
                     "train.max_seconds": cfg.budget * cfg.sweep_budget_fraction}
        check_settings(run_dir, "vae", overrides)
        if not (run_dir / METRICS_FILE).is_file():
            log(f"β-sweep: VAE with β = {beta:g} for {overrides['train.max_seconds']:.0f} s")
            train_run("vae", cfg.data, run_dir, data_dir=cfg.data_dir, overrides=overrides,
                      resume=(run_dir / CHECKPOINT_FILE).is_file(), progress=progress)
        _, model = load_run(run_dir)
        info = vae_information(model, test)
        points.append({"beta": beta, "rate_bpd": info["rate_bpd"], "distortion_rmse": info["distortion_rmse"],
                       "budget_seconds": overrides["train.max_seconds"]})
    return points


def run_compare(cfg: CompareConfig, out: Path, log: Log = print, progress: bool = True,
                features_kind: str = "builtin") -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Train, measure and judge; returns the results and each model's images."""
    from elbolab.evaluate.features import select_features

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "compare-config.json", asdict(cfg))
    test = load_data(cfg.data, "test", cfg.data_dir)
    runs = train_models(cfg, out, log, progress)
    log("feature network for sample quality")
    features, why_not = select_features(cfg.data, features_kind, data_dir=cfg.data_dir)
    measured, images = {}, {}
    for kind, run_dir in runs.items():
        m = measure_run(kind, run_dir, cfg, test, features, log)
        measured[kind], images[kind] = m["result"], m["images"]
    sweep = beta_sweep(cfg, out, test, log, progress)
    vae_info = measured["vae"]["information"]
    sweep_all = sweep + [{"beta": 1.0, "rate_bpd": vae_info["rate_bpd"],
                          "distortion_rmse": vae_info["distortion_rmse"]}]
    contrasts = judge(measured, sweep_all, test.dims, cfg.evaluation.quality_steps)
    results = {"config": asdict(cfg), "machine": machine_info(),
               "data": {"name": cfg.data, "shape": list(test.shape), "levels": test.levels, "dims": test.dims,
                        "n_test": len(test)},
               "feature_net": {"name": features.name, "inception_unavailable_because": why_not},
               "models": measured, "beta_sweep": sweep, "vae_beta": 1.0, "contrasts": contrasts}
    return results, images
# ---------------------------------------------------------------- verdicts

def _contrast(title: str, claim: str, measured: str, rule: str, verdict: str, **numbers: Any) -> dict[str, Any]:
    return {"title": title, "claim": claim, "measured": measured, "rule": rule, "verdict": verdict,
            "numbers": numbers}


def _verdict(ok: bool | None) -> str:
    return "inconclusive" if ok is None else ("supported" if ok else "not supported")


def contrast_encoder(m: dict[str, Any]) -> dict[str, Any]:
    """A learned one-step encoder against a fixed T-step chain (whose inversion costs T-ish passes)."""
    vae, dif = m["vae"], m["diffusion"]
    ratio = dif["encode_seconds_per_image"] / vae["encode_seconds_per_image"]
    return _contrast(
        "Forward process: learned one-step encoder vs. fixed multi-step noising",
        "The VAE encodes with one pass of a learned network; diffusion's forward process has no parameters, "
        "and mapping an image to its latent x_T deterministically (DDIM inversion) takes many network passes.",
        f"VAE encoder: {vae['encoder_parameters']:,} learned parameters, {vae['encode_seconds_per_image'] * 1e3:.3f} "
        f"ms per image. Diffusion forward process: 0 parameters (q(x_t|x_0) in closed form); DDIM inversion over "
        f"{dif['encode_steps']} steps: {dif['encode_seconds_per_image'] * 1e3:.3f} ms per image ({ratio:.0f}× the VAE).",
        "supported if encoding an image costs diffusion at least 10× the VAE's time",
        _verdict(ratio >= 10), ratio=ratio)


def contrast_bottleneck(m: dict[str, Any], dims: int) -> dict[str, Any]:
    """A low-dimensional bottleneck against same-size latents that lose information gradually."""
    info_v, info_d = m["vae"]["information"], m["diffusion"]["information"]
    curve = [r for r in info_d["curve"] if r["step"] > 0]
    kl_steps = info_d["per_step_bpd"][1:]
    largest_share = max(kl_steps) / max(sum(info_d["per_step_bpd"]), 1e-12)
    first_capacity = curve[0]["capacity_bpd"]
    ok = info_v["latent_dims"] < dims and info_v["rate_bpd"] < first_capacity and largest_share < 0.1
    return _contrast(
        "Latent: a bottleneck vs. same-size latents with information destroyed gradually",
        "The VAE squeezes x through a low-dimensional z in one step; diffusion's latents x_t have x's size and "
        "lose their information about x_0 a little at every step.",
        f"VAE: {info_v['latent_dims']} latent dimensions for D = {dims}, {info_v['active_units']} active; rate "
        f"KL(q‖p) = {info_v['rate_nats']:.1f} nats = {info_v['rate_bpd']:.3f} bits/dim (an upper bound on I(x; z)). "
        f"Diffusion: at the first step x_t can carry up to {first_capacity:.2f} bits/dim, and the bits still "
        f"needed to recover x_0 grow along t; the largest single KL step (t ≥ 2) holds "
        f"{100 * largest_share:.1f}% of the bound.",
        "supported if the VAE's latent is smaller than x and its rate below what x_1 can carry, and diffusion's "
        "information loss is spread out: no single step t ≥ 2 holds 10% of the bound or more",
        _verdict(ok), largest_step_share=largest_share, vae_rate_bpd=info_v["rate_bpd"])


def contrast_speed(m: dict[str, Any], nfe: int) -> dict[str, Any]:
    """One decoder pass against a chain of NFE network passes."""
    vae_ips = m["vae"]["speed"][0]["images_per_second"]
    rows = [r for r in m["diffusion"]["speed"] if r["nfe"] == nfe]
    dif_ips = max(r["images_per_second"] for r in rows)
    ratio = vae_ips / dif_ips
    return _contrast(
        "Decoder speed: one pass vs. a chain of small steps",
        "The VAE samples with one decoder pass; diffusion needs one network pass per step.",
        f"VAE: {vae_ips:,.0f} images/s (1 pass). Diffusion at NFE {nfe} (its fastest sampler): {dif_ips:,.1f} "
        f"images/s. Ratio {ratio:,.0f}×.",
        "supported if the VAE samples at least 10× faster than diffusion at the NFE used for its quality samples",
        _verdict(ratio >= 10), ratio=ratio)


def contrast_bound_in_loss(m: dict[str, Any], sweep: list[dict[str, Any]]) -> dict[str, Any]:
    """The VAE's reconstruction–KL trade-off (β) against diffusion's sum of per-step KLs."""
    title = "The bound in the loss: a reconstruction–KL tug-of-war vs. a sum of per-step KLs"
    points = sorted(sweep, key=lambda p: p["beta"])
    if len(points) < 2:
        return _contrast(title, "Reconstruction and KL pull against each other as β moves the balance.",
                         "no β-sweep in these runs", "needs VAEs at two or more β", "inconclusive")
    rates = [p["rate_bpd"] for p in points]
    dists = [p["distortion_rmse"] for p in points]
    tug = all(a > b for a, b in zip(rates, rates[1:])) and all(a < b for a, b in zip(dists, dists[1:]))
    info = m["diffusion"]["information"]
    diff, se = info["mc_minus_exact_nats"], info["mc_minus_exact_se_nats"]
    agrees = abs(diff) <= 3 * se
    sweep_txt = ", ".join(f"β={p['beta']:g}: rate {p['rate_bpd']:.3f} bits/dim, RMSE {p['distortion_rmse']:.1f}"
                          for p in points)
    return _contrast(
        title,
        "In the VAE, reconstruction and KL pull against each other (β moves the balance); diffusion's bound is a "
        "sum of per-step Gaussian KLs, each a weighted ε-prediction error, so a few random steps per image "
        "estimate the whole bound without bias, and training on ‖ε − ε̂‖² (L_simple) pushes every term down.",
        f"VAE β-sweep: {sweep_txt}. Diffusion on {info['n']} test images: exact sum of all {info['T']} terms "
        f"{info['exact_bpd']:.3f} bits/dim; Monte-Carlo estimate over t minus exact = {diff:.2f} ± {se:.2f} nats "
        f"(standard error); trained objective: {m['diffusion']['objective']}.",
        "supported if raising β lowers the VAE's rate and raises its distortion at every step of the sweep, and "
        "diffusion's Monte-Carlo bound agrees with the exact per-step sum within 3 standard errors",
        _verdict(tug and agrees), monotone_tradeoff=tug, mc_minus_exact_z=diff / se if se > 0 else None)


def contrast_likelihood(m: dict[str, Any]) -> dict[str, Any]:
    """Whose bound is tighter on held-out data, within the 95% intervals."""
    v, d = m["vae"]["bound"]["bpd"], m["diffusion"]["bound"]["bpd"]
    gap = v["total"] - d["total"]
    separated = abs(gap) > v["ci95"] + d["ci95"]
    return _contrast(
        "Likelihood: the same bound, on held-out data",
        "Both optimise the same kind of bound; with enough steps diffusion's is the tighter (VDM, iDDPM).",
        f"VAE {v['total']:.3f} ± {v['ci95']:.3f} bits/dim, diffusion {d['total']:.3f} ± {d['ci95']:.3f} "
        f"bits/dim (diffusion {'lower' if gap > 0 else 'higher'} by {abs(gap):.3f}).",
        "supported if diffusion's bound is lower and the 95% intervals do not overlap; not supported if the "
        "VAE's is lower and they do not overlap; inconclusive otherwise",
        _verdict(None if not separated else gap > 0), gap_bpd=gap)


def contrast_sharpness(m: dict[str, Any]) -> dict[str, Any]:
    """Blurry one-pass samples against sharp many-step samples, relative to real test images."""
    v, d = m["vae"]["sharpness"]["samples"], m["diffusion"]["sharpness"]["samples"]
    ok = v["laplacian_variance_ratio"] < d["laplacian_variance_ratio"] and \
        v["high_frequency_share_ratio"] < d["high_frequency_share_ratio"]
    return _contrast(
        "Samples: blurry vs. sharp",
        "The VAE's decoder mean averages over everything z leaves open, so its samples are blurry; diffusion's "
        "chain of small Gaussian steps commits to detail, so its samples are as sharp as real images.",
        f"Laplacian variance (× test set): VAE {v['laplacian_variance_ratio']:.2f}, diffusion "
        f"{d['laplacian_variance_ratio']:.2f}; high-frequency power share (× test set): VAE "
        f"{v['high_frequency_share_ratio']:.2f}, diffusion {d['high_frequency_share_ratio']:.2f}.",
        "supported if the VAE's samples are below diffusion's on both sharpness measures",
        _verdict(ok))


def contrast_quality(m: dict[str, Any]) -> dict[str, Any]:
    """Sample quality in the feature space of the data set's classifier."""
    v, d = m["vae"]["quality"], m["diffusion"]["quality"]
    return _contrast(
        "Sample quality",
        "Diffusion's samples are closer to the data than the VAE's.",
        f"Fréchet distance ({v['feature_net']} features, {v['n_samples']} samples vs. {v['reference']}): VAE "
        f"{v['fd']:.2f}, diffusion {d['fd']:.2f}; precision/recall: VAE {v['precision']:.2f}/{v['recall']:.2f}, "
        f"diffusion {d['precision']:.2f}/{d['recall']:.2f}.",
        "supported if diffusion's Fréchet distance is lower than the VAE's",
        _verdict(d["fd"] < v["fd"]))


def contrast_latent(m: dict[str, Any]) -> dict[str, Any]:
    """Latent diffusion: the autoencoder's z modelled by a diffusion model."""
    ld = m["latent-diffusion"]
    own, ae = ld["bound"]["bpd"], ld["autoencoder_bound"]["bpd"]
    nfe_rows = {r["nfe"]: r["images_per_second"] for r in ld["speed"] if r["sampler"] == "ddim"}
    pix_rows = {r["nfe"]: r["images_per_second"] for r in m["diffusion"]["speed"] if r["sampler"] == "ddim"}
    common = sorted(set(nfe_rows) & set(pix_rows))
    ratios = {n: nfe_rows[n] / pix_rows[n] for n in common}
    tighter = own["total"] + own["ci95"] < ae["total"] - ae["ci95"]
    faster = bool(ratios) and all(r > 1 for r in ratios.values())
    ratio_txt = ", ".join(f"NFE {n}: {r:.1f}×" for n, r in ratios.items())
    return _contrast(
        "Merged: latent diffusion",
        "Modelling a VAE's latents with a diffusion model keeps the autoencoder's fast decoder and replaces its "
        "N(0, I) prior by a far better one: a tighter bound than the VAE's own, and faster sampling than "
        "diffusion in pixel space at the same number of steps.",
        f"Same frozen autoencoder: its own ELBO {ae['total']:.3f} ± {ae['ci95']:.3f} bits/dim, with the latent "
        f"diffusion prior {own['total']:.3f} ± {own['ci95']:.3f} bits/dim. DDIM sampling speed against pixel "
        f"diffusion: {ratio_txt}.",
        "supported if the latent diffusion bound is below its autoencoder's ELBO with non-overlapping 95% "
        "intervals, and it samples faster than pixel-space diffusion at every NFE timed",
        _verdict(tighter and faster), speed_ratios=ratios)


def judge(measured: dict[str, Any], sweep: list[dict[str, Any]], dims: int, nfe: int) -> list[dict[str, Any]]:
    """Every contrast whose models were measured."""
    have = set(measured)
    pair = {"vae", "diffusion"} <= have
    out = []
    if pair:
        out += [contrast_encoder(measured), contrast_bottleneck(measured, dims), contrast_speed(measured, nfe),
                contrast_sharpness(measured), contrast_quality(measured),
                contrast_bound_in_loss(measured, sweep), contrast_likelihood(measured)]
    if "latent-diffusion" in have and "diffusion" in have:
        out.append(contrast_latent(measured))
    return out


def measure_runs(run_dirs: list[Path], n_samples: int = 256, features_kind: str = "builtin",
                 log: Log = print) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """`elbolab report`: measure existing runs (one per kind, same data) and judge what they allow."""
    from elbolab.evaluate.features import select_features
    from elbolab.errors import ElbolabError
    from elbolab.train.run import read_run_config

    if len({Path(r).resolve() for r in run_dirs}) != len(run_dirs):
        raise ElbolabError("the same run folder was given twice")
    configs = {Path(r): read_run_config(Path(r)) for r in run_dirs}
    kinds = [c.kind for c in configs.values()]
    if len(set(kinds)) != len(kinds):
        raise ElbolabError(f"give at most one run of each kind, got {', '.join(kinds)}")
    datas = {(c.data, c.data_dir) for c in configs.values()}
    if len(datas) != 1:
        raise ElbolabError("the runs were trained on different data sets; a report compares runs on one data set")
    data, data_dir = datas.pop()
    cfg = CompareConfig(data=data, data_dir=data_dir, beta_sweep=(), evaluation=EvalConfig(n_samples=n_samples))
    test = load_data(data, "test", data_dir)
    features, why_not = select_features(data, features_kind, data_dir=data_dir)
    measured, images = {}, {}
    for run_dir, run_cfg in configs.items():
        m = measure_run(run_cfg.kind, run_dir, cfg, test, features, log)
        measured[run_cfg.kind], images[run_cfg.kind] = m["result"], m["images"]
    sweep = []
    if "vae" in measured:
        info = measured["vae"]["information"]
        sweep = [{"beta": 1.0, "rate_bpd": info["rate_bpd"], "distortion_rmse": info["distortion_rmse"]}]
    results = {"config": {**asdict(cfg), "budget": float("nan")}, "machine": machine_info(),
               "data": {"name": data, "shape": list(test.shape), "levels": test.levels, "dims": test.dims,
                        "n_test": len(test)},
               "feature_net": {"name": features.name, "inception_unavailable_because": why_not},
               "models": measured, "beta_sweep": [], "vae_beta": 1.0,
               "contrasts": judge(measured, sweep, test.dims, cfg.evaluation.quality_steps)}
    return results, images


def evaluate_run(run_dir: Path, split: str = "test", cfg: EvalConfig = EvalConfig(), features_kind: str = "builtin",
                 log: Log = lambda _: None) -> dict[str, Any]:
    """`elbolab eval`: the run's measurements with the bound's nats/bpd at the top level."""
    from elbolab.evaluate.features import select_features

    run_cfg, model = load_run(run_dir)
    data = load_data(run_cfg.data, split, run_cfg.data_dir)
    features = None
    if set(cfg.parts) & {"quality", "interpolation"}:
        features, why_not = select_features(run_cfg.data, features_kind, data_dir=run_cfg.data_dir)
    result, _ = measure(run_cfg.kind, model, data, cfg, features, log)
    bound = result.pop("bound", {})
    return {"model": run_cfg.kind, "data": run_cfg.data, "split": split, "n": bound.get("n"), "dims": data.dims,
            "levels": run_cfg.levels, **bound, **result}
