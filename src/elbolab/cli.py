"""The `elbolab` command line: train | eval | sample | interpolate | compare | report | export."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from elbolab.errors import ElbolabError, one_line_warnings
from elbolab.registry import MODEL_KINDS
from elbolab.signals import stop_on_signals

if TYPE_CHECKING:  # imported where the commands run, so that `--help` loads no torch
    from elbolab.evaluate.run import EvalResult


def _echo_json(obj: dict[str, Any]) -> None:
    from elbolab.bounds import json_ready

    click.echo(json.dumps(json_ready(obj), indent=2, sort_keys=False, default=float, allow_nan=False))


def _device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """--device is auto, cpu, cuda or cuda:N, checked before anything loads."""
    from elbolab.train.run import check_device_name

    try:
        check_device_name(value)
    except ElbolabError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _check_image_count(run_dir: str, images: int, target: Path, option: str) -> None:
    """`images` images of the run fit the output `target`: a PNG grid within the pixels image readers open
    (PIL's MAX_IMAGE_PIXELS), an .npz or a folder within the disk's free space."""
    from PIL import Image

    from elbolab.train.run import read_run_config
    from elbolab.validate import check_disk

    c, h, w = read_run_config(Path(run_dir)).shape
    if target.suffix.lower() == ".png":
        scale = max(1, 64 // w)  # as save_images enlarges small images
        pixels = images * h * w * scale * scale
        limit = Image.MAX_IMAGE_PIXELS or 2**31
        if pixels > limit:
            raise ElbolabError(
                f"{option}: a PNG grid of {images} images is {pixels:,} pixels, more than image readers open "
                f"({limit:,}); write .npz or a folder, or ask for fewer"
            )
    else:
        check_disk(target.parent if target.suffix else target, images * c * h * w)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="elbolab")
def cli() -> None:
    """Train and compare VAEs, diffusion and latent diffusion under one evidence lower bound."""


@cli.command()
@click.argument("kind", type=click.Choice(list(MODEL_KINDS)))
@click.option(
    "--data", default=None, help="Data set name, image folder or .npz file  [default: digits; on --resume: the run's]"
)
@click.option("--data-dir", default=None, help="Where named data sets live / are downloaded ($ELBOLAB_DATA).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--steps", type=int, default=None, help="Training steps (train.steps).")
@click.option(
    "--budget",
    default=None,
    metavar="BUDGET",
    help="Training compute instead of --steps: optimiser steps (1200steps), counted FLOPs (2.5e13flop) or "
    "wall-clock seconds (60s, machine-dependent); sets train.steps, max_flops and max_seconds.",
)
@click.option("--config", "config_file", default=None, help="JSON or YAML file with model.* and train.* keys.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. model.beta=0.5.")
@click.option("--seed", type=int, default=None, help="Random seed (train.seed).")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its newest good checkpoint; --set "
    "may change train.lr, steps, max_seconds, max_flops, cadences, precision (recorded in config-history.jsonl).",
)
@click.option("--autoencoder", default=None, type=click.Path(), help="latent-diffusion: reuse this trained VAE run.")
@click.option("--deterministic", is_flag=True, help="Deterministic GPU kernels (train.deterministic); slower.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.", callback=_device)
def train(
    kind: str,
    data: str | None,
    data_dir: str | None,
    out: str,
    steps: int | None,
    budget: str | None,
    config_file: str | None,
    sets: tuple[str, ...],
    seed: int | None,
    resume: bool,
    autoencoder: str | None,
    deterministic: bool,
    quiet: bool,
    device: str,
) -> None:
    """Train a model KIND on a data set into a run folder."""
    from elbolab.bounds import plus_minus
    from elbolab.config import parse_set
    from elbolab.train.api import train_run
    from elbolab.train.budget import Budget
    from elbolab.validate import validate_train

    overrides: dict[str, str] = dict(parse_set(sets))
    for key, value in (
        ("train.seed", seed),
        ("train.deterministic", deterministic or None),
        ("train.device", None if device == "auto" else device),
        ("model.autoencoder", autoencoder and str(Path(autoencoder).resolve())),
    ):
        if value is not None:
            overrides[key] = str(value)
    if steps is not None and steps < 1:
        raise ElbolabError(f"--steps {steps}: must be at least 1")
    if budget is not None:
        if steps is not None:
            raise ElbolabError("--steps and --budget both set the training length: give one of them")
        overrides.update({f"train.{k}": str(v) for k, v in Budget.parse(budget).train_keys().items()})
    options: dict[str, Any] = {
        "data_dir": data_dir,
        "overrides": overrides,
        "config_file": config_file,
        "resume": resume,
        "steps": steps,
    }
    validate_train(kind, data, out, **options)
    cfg, metrics = train_run(kind, data, out, progress=not quiet, **options)
    if "test_bpd" not in metrics:  # a torchrun process other than rank 0: rank 0 reports
        return
    n = metrics["test_n"]
    click.echo(
        f"{kind} on {cfg.data}: step {metrics['step']}, test {metrics['test_bpd']:.4f} "
        f"{plus_minus(metrics['test_bpd_ci95'], n)} bits/dim (EMA weights, {n} test image{'' if n == 1 else 's'}); "
        f"run saved in {out}"
    )


@cli.command(name="eval")
@click.argument("run_dir", type=click.Path(), required=False)
@click.option(
    "--diffusers",
    "diffusers_path",
    default=None,
    type=click.Path(),
    help="Evaluate a diffusers folder (save_pretrained: UNet2DModel + DDPM/DDIM scheduler) instead of a run.",
)
@click.option("--data", default=None, help="With --diffusers: the data set to evaluate on.")
@click.option("--data-dir", default=None, help="With --diffusers: where named data sets live ($ELBOLAB_DATA).")
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--n", type=int, default=None, help="Images for the bound (default: the whole split).")
@click.option(
    "--iwae",
    "iwae_k",
    type=int,
    default=100,
    show_default=True,
    help="VAE: importance samples for the IWAE bound (0 = skip).",
)
@click.option(
    "--exact",
    is_flag=True,
    help="Diffusion: sum all T steps instead of the Monte-Carlo estimate (the same as --estimator exact).",
)
@click.option(
    "--estimator",
    default=None,
    metavar="exact|mc[:K][:PROPOSAL][:T=STEPS]|iwae:k",
    help="How the bound is estimated (default: the model's own, see its capabilities); e.g. "
    "mc:64:importance, or exact:T=1000 for a continuous-time model's T-step bound.",
)
@click.option(
    "--proposal",
    type=click.Choice(["uniform", "stratified", "importance"]),
    default=None,
    help="Diffusion: where its Monte-Carlo bound draws t or the step (importance: fitted on a pilot "
    "pass over 64 training images, kept in the run folder; the discrete chain's default).",
)
@click.option(
    "--bpd-se",
    type=float,
    default=None,
    metavar="SE",
    help="A Monte-Carlo bound: choose the draws per image for this standard error of the mean (bits/dim).",
)
@click.option("--n-samples", type=int, default=256, show_default=True, help="Samples for quality and sharpness.")
@click.option(
    "--skip",
    multiple=True,
    type=click.Choice(["speed", "quality", "sharpness", "interpolation", "information"]),
    help="Leave a measurement out.",
)
@click.option("--only-bound", is_flag=True, help="Only the bound (skip every other measurement).")
@click.option(
    "--features",
    type=click.Choice(["builtin", "inception", "auto", "none"]),
    default="builtin",
    show_default=True,
    help="Feature network for the Fréchet distance (none: skip quality, interpolation).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.", callback=_device)
def evaluate(
    run_dir: str | None,
    diffusers_path: str | None,
    data: str | None,
    data_dir: str | None,
    split: str,
    n: int | None,
    iwae_k: int,
    exact: bool,
    estimator: str | None,
    proposal: str | None,
    bpd_se: float | None,
    n_samples: int,
    skip: tuple[str, ...],
    only_bound: bool,
    features: str,
    as_json: bool,
    seed: int,
    device: str,
) -> None:
    """Bound terms and bits/dim with 95% intervals, sample quality, sharpness, speed, information."""
    from elbolab.bounds import Estimator
    from elbolab.evaluate.run import PARTS, EvalConfig
    from elbolab.experiments.runs import evaluate_diffusers, evaluate_run
    from elbolab.validate import validate_eval

    if (run_dir is None) == (diffusers_path is None):
        raise ElbolabError("give a RUN_DIR or --diffusers PATH (one of them)")
    if diffusers_path is not None and data is None:
        raise ElbolabError("--diffusers needs --data NAME (the data set to evaluate on)")
    if run_dir is not None and (data is not None or data_dir is not None):
        raise ElbolabError("--data and --data-dir go with --diffusers; a run evaluates on its own data")
    if n is not None and n < 1 or n_samples < 2 or iwae_k < 0:
        raise ElbolabError(f"--n ({n}) must be at least 1, --n-samples ({n_samples}) at least 2, --iwae ({iwae_k}) ≥ 0")
    if exact and estimator is not None:
        raise ElbolabError("give --exact or --estimator, not both")
    if bpd_se is not None and bpd_se <= 0:
        raise ElbolabError("--bpd-se must be positive")
    chosen = Estimator("exact") if exact else (Estimator.parse(estimator) if estimator else None)
    parts = ("likelihood",) if only_bound else tuple(p for p in PARTS if p not in skip)
    if features == "none":
        parts = tuple(p for p in parts if p not in ("quality", "interpolation"))
    if run_dir is not None:
        validate_eval(run_dir, split, features, parts, chosen, proposal)
    cfg = EvalConfig(
        seed=seed,
        n_eval=n,
        estimator=chosen,
        proposal=proposal,
        bpd_se=bpd_se,
        iwae_k=iwae_k,
        n_samples=n_samples,
        parts=parts,
    )
    log = (lambda _: None) if as_json else (lambda m: click.echo(f"[eval] {m}", err=True))
    if diffusers_path is not None:
        if data is None:
            raise ElbolabError("--diffusers needs --data: the data set to evaluate on")
        result = evaluate_diffusers(
            Path(diffusers_path), data, data_dir, split=split, cfg=cfg, features_kind=features, log=log
        )
    else:
        if run_dir is None:
            raise ElbolabError("give a run folder, or --diffusers PATH --data NAME")
        result = evaluate_run(Path(run_dir), split=split, cfg=cfg, features_kind=features, log=log, device=device)
    if as_json:
        _echo_json(result.to_json())
        return
    _print_eval(result)


def _print_eval(result: EvalResult) -> None:
    """`elbolab eval`'s lines: the bound with its terms, then every other measurement the record holds."""
    from elbolab.bounds import plus_minus

    m = result.measurement
    if m.bound is not None:
        b = m.bound
        click.echo(
            f"{result.model} on {result.data} ({result.split}, n={b.n}, estimator {b.estimator}): "
            f"{b.bpd.total:.4f} {plus_minus(b.bpd.ci95, b.n)} bits/dim"
        )
        if b.mean_stderr_bpd is not None:
            passes = b.passes_per_image
            click.echo(
                f"  Monte-Carlo standard error of the mean {b.mean_stderr_bpd:.4f} bits/dim, "
                f"per-image spread {b.per_image_sd_bpd:.3f} bits/dim"
                + (f", {passes:.0f} network passes per image" if passes is not None else "")
            )
        for name, value in b.bpd.terms.items():
            click.echo(f"  {name:>16}: {value:.4f} bits/dim  ({b.nats.terms[name]:.2f} nats)")
        if m.classes is not None:
            u = m.unconditional
            click.echo(
                f"  the bound of log p(x | y) over {m.classes} classes"
                + (
                    ""
                    if u is None
                    else f"; of log p(x) (the null class) {u.bpd.total:.4f} {plus_minus(u.bpd.ci95, u.n)} bits/dim"
                )
            )
    else:
        click.echo(f"{result.model} on {result.data} ({result.split})")
    d = result.diffusers
    if d is not None and d.bound_network_passes_per_image is not None:
        click.echo(
            f"  diffusers {d.scheduler}, T = {d.T}, {d.parameterisation}, variance {d.variance}, clip {d.clip}: "
            f"{d.bound_network_passes_per_image:.0f} network passes per image for the bound"
        )
    if m.iwae is not None:
        i = m.iwae
        click.echo(f"  IWAE (k={i.k}, n={i.n}): {i.bpd:.4f} {plus_minus(i.ci95, i.n)} bits/dim")
    f = m.samples
    if f is not None and f.fd is not None and f.kid is not None and f.precision and f.recall:
        click.echo(
            f"  Fréchet distance {f.fd.value:.3f}, KID {f.kid.value:.4f}, precision {f.precision.value:.2f}, "
            f"recall {f.recall.value:.2f} ({f.n} samples, {f.feature_net})"
        )
    if f is not None:
        click.echo(
            f"  sharpness of samples (× test): Laplacian {f.laplacian_ratio.value:.2f}, "
            f"high-frequency share {f.high_frequency_ratio.value:.2f}"
        )
    if m.class_bounds is not None:
        c = m.class_bounds
        click.echo(
            "  bits/dim of the test images of each class: "
            + " ".join(f"{k}:{f.mean:.3f}" for k, f in enumerate(c.bpd))
            + f" ({' '.join(str(n) for n in c.n)} images)"
        )
    if m.class_accuracy is not None:
        a = m.class_accuracy
        click.echo(
            f"  samples given each class, classified right: {a.overall:.2f} ({a.n_per_class} per class; "
            + " ".join(f"{k}:{v:.2f}" for k, v in enumerate(a.per_class))
            + ")"
        )
    for row in m.speed:
        click.echo(f"  sampling {row.sampler:>12} NFE {row.nfe:>4}: {row.images_per_second:.1f} images/s")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option(
    "--diffusers",
    "out",
    required=True,
    type=click.Path(file_okay=False),
    help="Write a folder that diffusers' DDPMPipeline.from_pretrained loads.",
)
def export(run_dir: str, out: str) -> None:
    """Export a diffusion run whose network is a diffusers UNet (model.net=diffusers-unet2d) as a DDPMPipeline."""
    from elbolab.interop.diffusers import export_run

    path = export_run(Path(run_dir), Path(out))
    click.echo(f"wrote a DDPMPipeline folder to {path} (load it with DDPMPipeline.from_pretrained)")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--n", type=int, default=64, show_default=True)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(),
    help="A .png grid, an .npz of levels, or a folder (one PNG per sample).",
)
@click.option(
    "--sampler",
    default=None,
    help="Diffusion: ancestral | ddim | dpm-solver++ | dpm-solver++3m | euler | heun | heun-churn (a VAE: decoder).",
)
@click.option(
    "--steps", type=int, default=None, help="Diffusion: number of sampling steps (NFE; Heun's 2 per step but the last)."
)
@click.option("--eta", type=float, default=None, help="Diffusion, DDIM: η (0 deterministic, 1 ancestral).")
@click.option("--s-churn", type=float, default=None, help="Diffusion, heun-churn: EDM's S_churn (0: Heun).")
@click.option("--s-min", type=float, default=None, help="Diffusion, heun-churn: churn only at σ/α ≥ S_min.")
@click.option("--s-max", type=float, default=None, help="Diffusion, heun-churn: churn only at σ/α ≤ S_max.")
@click.option("--s-noise", type=float, default=None, help="Diffusion, heun-churn: EDM's S_noise (1: no scaling).")
@click.option(
    "--batch-size",
    type=int,
    default=1000,
    show_default=True,
    help="Samples drawn at a time; .npz and folders are written as they come, in bounded memory.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--deterministic", is_flag=True, help="Deterministic GPU kernels.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.", callback=_device)
@click.option(
    "--class",
    "classes",
    default=None,
    help="A conditional run: the class K, or a comma list (N samples of each; a .png has a row per class).",
)
@click.option(
    "--guidance",
    type=float,
    default=None,
    help="A conditional diffusion run: the classifier-free guidance scale W (1: the conditional model; 0: none).",
)
def sample(
    run_dir: str,
    n: int,
    out: str,
    sampler: str | None,
    steps: int | None,
    eta: float | None,
    s_churn: float | None,
    s_min: float | None,
    s_max: float | None,
    s_noise: float | None,
    batch_size: int,
    seed: int,
    deterministic: bool,
    device: str,
    classes: str | None,
    guidance: float | None,
) -> None:
    """Draw N samples from a trained run (N of each class with --class)."""
    import numpy as np
    import torch

    from elbolab.report.grid import save_images
    from elbolab.sampling import sample_batches, write_npz, write_png_folder
    from elbolab.train.loop import use_deterministic_algorithms
    from elbolab.train.run import load_run
    from elbolab.validate import check_output_file, check_output_folder

    if n < 1 or batch_size < 1 or (steps is not None and steps < 1):
        raise ElbolabError(f"--n ({n}), --batch-size ({batch_size}) and --steps ({steps}) must be at least 1")
    target = Path(out)
    to_folder = target.is_dir() or (target.suffix == "" and not target.exists())
    if to_folder:
        check_output_folder(target)
    else:
        check_output_file(target, (".png", ".npz"))
    _check_image_count(run_dir, n, target, f"--n {n}")
    if deterministic:
        use_deterministic_algorithms()
    cfg, model = load_run(Path(run_dir), device)
    given = {"sampler": sampler, "steps": steps, "eta": eta, "s_churn": s_churn, "s_min": s_min, "s_max": s_max}
    kwargs: dict[str, Any] = {k: v for k, v in {**given, "s_noise": s_noise}.items() if v is not None}
    chosen = class_option(classes, guidance, model)
    if guidance is not None:
        kwargs["guidance"] = guidance
    model.check_sampling(**kwargs)  # a sampler or step count the model lacks is refused before any file is written
    y = None if chosen is None else torch.tensor(chosen, dtype=torch.long).repeat_interleave(n)
    columns = int(n**0.5 + 0.999) if chosen is None else n
    n = n if chosen is None else n * len(chosen)
    batches = sample_batches(model, n, batch_size, seed, y, **kwargs)
    if to_folder:
        write_png_folder(target, batches, cfg.levels)
    elif target.suffix == ".npz":
        write_npz(target, batches, n, cfg.levels)
    else:
        images = torch.from_numpy(np.concatenate(list(batches)))
        save_images(images, cfg.levels, target, nrow=columns)
    click.echo(f"wrote {n} samples to {target}")


def class_option(classes: str | None, guidance: float | None, model: Any) -> list[int] | None:
    """`sample --class K[,K...]` as labels checked against the run (a one-line error naming the option: no such
    class, a run that is not conditional, --guidance without --class or on a model without guidance)."""
    if classes is None:
        if guidance is not None:
            raise ElbolabError("--guidance needs --class K: it scales the pull towards a class")
        return None
    count = model.capabilities.classes
    if count is None:
        raise ElbolabError(
            f"--class needs a conditional run (train with --set model.conditional=true); {model.kind} is not"
        )
    if guidance is not None and "guidance" not in model.capabilities.sample_options:
        raise ElbolabError(f"--guidance is classifier-free guidance of a diffusion model; the {model.kind} has none")
    try:
        chosen = [int(part) for part in classes.split(",")]
    except ValueError:
        raise ElbolabError(f"--class takes a class number or a comma list of them, got {classes!r}") from None
    bad = [k for k in chosen if not 0 <= k < count]
    if bad:
        raise ElbolabError(f"--class {bad[0]} is out of range: the run's classes are 0..{count - 1}")
    return chosen


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False))
@click.option("--pairs", type=int, default=6, show_default=True, help="Pairs of test images.")
@click.option("--frames", type=int, default=10, show_default=True, help="Frames per pair, ends included.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.", callback=_device)
def interpolate(run_dir: str, out: str, pairs: int, frames: int, seed: int, device: str) -> None:
    """Slerp in latent space between pairs of test images; one row per pair."""
    import torch

    from elbolab.data import load_data
    from elbolab.report.grid import save_images
    from elbolab.train.run import load_run

    if pairs < 1 or frames < 2:
        raise ElbolabError("--pairs must be ≥ 1 and --frames ≥ 2")
    _check_image_count(run_dir, pairs * frames, Path(out), f"--pairs {pairs} × --frames {frames}")
    cfg, model = load_run(Path(run_dir), device)
    data = load_data(cfg.data, "test", cfg.data_dir)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[: 2 * pairs]
    if len(idx) < 2 * pairs:
        raise ElbolabError(f"the test split has only {len(data)} images, too few for {pairs} pairs")
    x = data.model_range(idx).to(model.device)
    rows = model.interpolate(x[:pairs], x[pairs:], frames)
    path = save_images(rows.flatten(0, 1), cfg.levels, out, nrow=frames)
    click.echo(f"wrote {pairs} interpolations of {frames} frames to {path}")


def fractions_of_budget(text: str) -> tuple[float, ...]:
    """`--budget-points`: comma-separated fractions, or 'none'; anything else a one-line error."""
    if text.strip().lower() in ("none", ""):
        return ()
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ElbolabError(f"--budget-points {text!r}: write fractions of the budget, e.g. 0.25,0.5, or none") from None


@cli.command()
@click.option("--data", default="digits", show_default=True, help="Data set name, image folder or .npz file.")
@click.option("--data-dir", default=None, help="Where named data sets live / are downloaded ($ELBOLAB_DATA).")
@click.option("--out", "out", default="compare-report", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--budget",
    default=None,
    metavar="BUDGET",
    help="Training compute per model: optimiser steps (1200steps) or counted FLOPs (2.5e13flop); or wall-clock "
    "seconds (60s), whose results depend on the machine [default: the preset's: 1.75e12flop on digits, 7.5e12flop "
    "for larger images on a CPU, 500steps on a GPU].",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--seeds",
    type=int,
    default=1,
    show_default=True,
    help="Repeat the whole experiment with this many seeds; every interval folds their spread in.",
)
@click.option("--n-samples", type=int, default=256, show_default=True, help="Samples per model for quality.")
@click.option(
    "--features",
    type=click.Choice(["builtin", "inception", "auto"]),
    default="builtin",
    show_default=True,
    help="Feature network for the Fréchet distance.",
)
@click.option(
    "--design",
    type=click.Choice(["core", "full"]),
    default="core",
    show_default=True,
    help="The models trained: core (one pair per essay choice) or full (also the learned-encoder chain and more T).",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Runs trained at once on a CPU, each in its own process at one thread (the answer does not change).",
)
@click.option(
    "--budget-points",
    default=None,
    help="Fractions of the budget every pair is judged at again, from snapshots of the same runs ('none': only "
    "the whole budget); a verdict is stable if it holds at each.  [default: 0.25,0.5; with --quick 0.5]",
)
@click.option("--quick", is_flag=True, help="Small evaluation (fewer images, samples and steps): a smoke test.")
@click.option(
    "--frontier",
    is_flag=True,
    help="Sweep every sampler diffusion declares at NFE 1-100 for the speed-quality figure (minutes more).",
)
@click.option(
    "--conditional",
    is_flag=True,
    help="Also train each end class-conditionally and judge conditioning's gain against log K and guidance's "
    "precision–recall trade.",
)
@click.option("--quiet", is_flag=True, help="No progress display, only the job's log lines.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.", callback=_device)
def compare(
    data: str,
    data_dir: str | None,
    out: str,
    budget: str | None,
    seed: int,
    seeds: int,
    n_samples: int,
    features: str,
    design: str,
    jobs: int,
    budget_points: str | None,
    quick: bool,
    frontier: bool,
    conditional: bool,
    quiet: bool,
    device: str,
) -> None:
    """The main job: train every model of the design under one budget, measure, judge, attribute, report."""

    from elbolab.train.budget import Budget
    from elbolab.validate import validate_compare

    if n_samples < 2 or seeds < 1:
        raise ElbolabError(f"--n-samples ({n_samples}) must be at least 2 and --seeds ({seeds}) at least 1")
    compute = None if budget is None else Budget.parse(budget)
    side = validate_compare(data, data_dir, out, features)

    from elbolab.experiments.along import BUDGET_POINTS
    from elbolab.experiments.compare import (
        CompareConfig,
        compare_evaluation,
        estimated_seconds,
        quick_config,
        run_compare,
        with_preset,
    )
    from elbolab.report.render import write_report

    cfg = CompareConfig(
        data=data,
        data_dir=data_dir,
        budget=compute,
        seed=seed,
        seeds=seeds,
        evaluation=compare_evaluation(seed=seed, n_samples=n_samples),
        device=device,
        design=design,
        jobs=jobs,
        budget_points=fractions_of_budget(budget_points)
        if budget_points is not None
        else ((0.5,) if quick else BUDGET_POINTS),
        conditional=conditional,
    )
    cfg = quick_config(cfg) if quick else cfg
    if frontier:
        from dataclasses import replace

        from elbolab.evaluate.frontier import FRONTIER_NFE

        cfg = replace(
            cfg,
            steps=cfg.steps or FRONTIER_NFE,
            steps_samplers=None,
            evaluation=replace(cfg.evaluation, speed_samplers=None),
        )
    many = f"{seeds} seeds: " if seeds > 1 else ""
    planned = with_preset(cfg, side)
    click.echo(
        f"[compare] {many}about {estimated_seconds(cfg, side) / 60:.0f} minutes on an idle machine "
        f"(training {planned.budget} per model per seed, plus measurement"
        f"{'; a wall-clock budget: the steps, and so the answer, depend on the machine' if planned.budget and planned.budget.machine_dependent else ''})",
        err=True,
    )
    out_dir = Path(out)
    if quiet:
        results, images = run_compare(
            cfg, out_dir, log=lambda m: click.echo(f"[compare] {m}", err=True), progress=False, features_kind=features
        )
    else:
        from elbolab.report.progress import job_progress

        with job_progress() as display:
            results, images = run_compare(
                cfg, out_dir, log=display.log, progress=False, features_kind=features, watch=display
            )
    paths = write_report(results, out_dir, images, reference_images(cfg.data, cfg.data_dir))
    _print_verdicts(results)
    click.echo(f"report: {paths['markdown']} and {paths['html']}")


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(file_okay=False))
@click.option("--n-samples", type=int, default=256, show_default=True)
@click.option("--features", type=click.Choice(["builtin", "inception", "auto"]), default="builtin", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.", callback=_device)
def report(run_dirs: tuple[str, ...], out: str, n_samples: int, features: str, device: str) -> None:
    """Write the report of a compare folder from its saved results (no model is loaded), or measure trained runs
    side by side and write theirs (contrasts need a VAE and a diffusion run)."""
    from elbolab.report.render import RESULTS_FILE, read_saved, write_report

    out_dir = Path(out)
    if len(run_dirs) == 1 and (Path(run_dirs[0]) / RESULTS_FILE).is_file():
        results, images, reference = read_saved(Path(run_dirs[0]))
    else:
        from elbolab.experiments.runs import measure_runs

        results, images = measure_runs(
            [Path(r) for r in run_dirs],
            n_samples=n_samples,
            features_kind=features,
            log=lambda m: click.echo(f"[report] {m}", err=True),
            device=device,
        )
        reference = reference_images(results.config.data, results.config.data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = write_report(results, out_dir, images, reference)
    _print_verdicts(results)
    click.echo(f"report: {paths['markdown']} and {paths['html']}")


def reference_images(data: str, data_dir: str | None) -> Any:
    """Real test images shown beside the samples."""
    from elbolab.data import load_data

    return load_data(data, "test", data_dir).images[:32]


def _print_verdicts(results: Any) -> None:
    for c in results.contrasts:
        click.echo(f"{c.verdict:>14}  {c.title}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors and a non-zero exit code instead of tracebacks; warnings in one line."""
    one_line_warnings()
    stop_on_signals()
    try:
        cli.main(args=argv, prog_name="elbolab", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:  # click's form of Ctrl-C (and of SIGTERM/SIGHUP, see SignalStop)
        signum = getattr(exc.__cause__, "signum", signal.SIGINT)
        click.echo("aborted" if signum == signal.SIGINT else f"stopped ({signal.Signals(signum).name})", err=True)
        sys.exit(128 + int(signum))
    except click.ClickException as exc:  # usage errors too: one line, like every other error
        ctx = getattr(exc, "ctx", None)  # a UsageError's context; other ClickExceptions have none
        command = ctx.command_path if ctx is not None else "elbolab"
        hint = f" (see {command} --help)" if isinstance(exc, click.UsageError) else ""
        click.echo(f"error: {exc.format_message()}{hint}".replace("\n", " "), err=True)
        sys.exit(1)
    except ElbolabError as exc:
        from elbolab.train.loop import TrainingInterrupted

        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code if isinstance(exc, TrainingInterrupted) else 1)
    except OSError as exc:  # a file system fault no check foresaw: still one line
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"error: {where}{exc.strerror or exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        click.echo(f"interrupted ({signal.Signals(signum).name})", err=True)
        sys.exit(128 + int(signum))
    sys.exit(0)


if __name__ == "__main__":
    main()
