"""The `elbolab` command line: train | eval | sample | interpolate | compare | report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from elbolab.errors import ElbolabError
from elbolab.registry import MODEL_KINDS


def _echo_json(obj: dict) -> None:
    from elbolab.bounds import json_ready

    click.echo(json.dumps(json_ready(obj), indent=2, sort_keys=False, default=float, allow_nan=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="elbolab")
def cli() -> None:
    """Train and compare VAEs, diffusion and latent diffusion under one evidence lower bound."""


@cli.command()
@click.argument("kind", type=click.Choice(list(MODEL_KINDS)))
@click.option("--data", default="digits", show_default=True, help="Data set name, image folder or .npz file.")
@click.option("--data-dir", default=None, help="Where named data sets live / are downloaded ($ELBOLAB_DATA).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--steps", type=int, default=None, help="Training steps (train.steps).")
@click.option("--config", "config_file", default=None, help="JSON or YAML file with model.* and train.* keys.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. model.beta=0.5.")
@click.option("--seed", type=int, default=None, help="Random seed (train.seed).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--autoencoder", default=None, type=click.Path(), help="latent-diffusion: reuse this trained VAE run.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.")
def train(kind: str, data: str, data_dir: str | None, out: str, steps: int | None, config_file: str | None,
          sets: tuple[str, ...], seed: int | None, resume: bool, autoencoder: str | None, quiet: bool,
          device: str) -> None:
    """Train a model KIND on a data set into a run folder."""
    from elbolab.config import parse_set
    from elbolab.train.api import train_run

    overrides: dict[str, str] = dict(parse_set(sets))
    if seed is not None:
        overrides["train.seed"] = str(seed)
    if device != "auto":
        overrides["train.device"] = device
    if autoencoder is not None:
        overrides["model.autoencoder"] = str(Path(autoencoder).resolve())
    cfg, metrics = train_run(kind, data, out, data_dir=data_dir, overrides=overrides, config_file=config_file,
                             resume=resume, steps=steps, progress=not quiet)
    if "test_bpd" not in metrics:  # a torchrun process other than rank 0: rank 0 reports
        return
    click.echo(f"{kind} on {cfg.data}: step {metrics['step']}, test {metrics['test_bpd']:.4f} "
               f"± {metrics['test_bpd_ci95']:.4f} bits/dim (EMA weights, {cfg.train.eval_n} test images); "
               f"run saved in {out}")


@cli.command(name="eval")
@click.argument("run_dir", type=click.Path())
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
@click.option("--n", type=int, default=None, help="Images for the bound (default: the whole split).")
@click.option("--iwae", "iwae_k", type=int, default=100, show_default=True,
              help="VAE: importance samples for the IWAE bound (0 = skip).")
@click.option("--exact", is_flag=True, help="Diffusion: sum all T steps instead of the Monte-Carlo estimate "
              "(the same as --estimator exact).")
@click.option("--estimator", default=None, metavar="exact|mc[:K]|iwae:k",
              help="How the bound is estimated (default: the model's own, see its capabilities).")
@click.option("--n-samples", type=int, default=256, show_default=True, help="Samples for quality and sharpness.")
@click.option("--skip", multiple=True, type=click.Choice(["speed", "quality", "sharpness", "interpolation",
                                                          "information"]), help="Leave a measurement out.")
@click.option("--only-bound", is_flag=True, help="Only the bound (skip every other measurement).")
@click.option("--features", type=click.Choice(["builtin", "inception", "auto"]), default="builtin",
              show_default=True, help="Feature network for the Fréchet distance.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.")
def evaluate(run_dir: str, split: str, n: int | None, iwae_k: int, exact: bool, estimator: str | None, n_samples: int,
             skip: tuple[str, ...], only_bound: bool, features: str, as_json: bool, seed: int, device: str) -> None:
    """Bound terms and bits/dim with 95% intervals, sample quality, sharpness, speed, information."""
    from elbolab.bounds import Estimator
    from elbolab.evaluate.run import PARTS, EvalConfig
    from elbolab.experiments.runs import evaluate_run

    if n is not None and n < 1 or n_samples < 2:
        raise ElbolabError("--n must be at least 1 and --n-samples at least 2")
    if exact and estimator is not None:
        raise ElbolabError("give --exact or --estimator, not both")
    chosen = Estimator("exact") if exact else (Estimator.parse(estimator) if estimator else None)
    parts = ("likelihood",) if only_bound else tuple(p for p in PARTS if p not in skip)
    cfg = EvalConfig(seed=seed, n_eval=n, estimator=chosen, iwae_k=iwae_k, n_samples=n_samples, parts=parts)
    log = (lambda _: None) if as_json else (lambda m: click.echo(f"[eval] {m}", err=True))
    result = evaluate_run(Path(run_dir), split=split, cfg=cfg, features_kind=features, log=log, device=device)
    if as_json:
        _echo_json(result)
        return
    b = result["bpd"]
    click.echo(f"{result['model']} on {result['data']} ({split}, n={result['n']}, estimator {result['estimator']}): "
               f"{b['total']:.4f} ± {b['ci95']:.4f} bits/dim")
    for name, value in b["terms"].items():
        click.echo(f"  {name:>16}: {value:.4f} bits/dim  ({result['nats']['terms'][name]:.2f} nats)")
    if "iwae" in result:
        i = result["iwae"]
        click.echo(f"  IWAE (k={i['k']}, n={i['n']}): {i['bpd']:.4f} ± {i['ci95']:.4f} bits/dim")
    if "quality" in result:
        q = result["quality"]
        click.echo(f"  Fréchet distance {q['fd']:.3f}, KID {q['kid']:.4f}, precision {q['precision']:.2f}, "
                   f"recall {q['recall']:.2f} ({q['n_samples']} samples, {q['feature_net']})")
    if "sharpness" in result:
        s = result["sharpness"]["samples"]
        click.echo(f"  sharpness of samples (× test): Laplacian {s['laplacian_variance_ratio']:.2f}, "
                   f"high-frequency share {s['high_frequency_share_ratio']:.2f}")
    for row in result.get("speed", []):
        click.echo(f"  sampling {row['sampler']:>12} NFE {row['nfe']:>4}: {row['images_per_second']:.1f} images/s")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--n", type=int, default=64, show_default=True)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="A .png grid or an .npz of levels.")
@click.option("--sampler", default=None, help="Diffusion: ancestral | ddim | dpm-solver++ (a VAE: decoder).")
@click.option("--steps", type=int, default=None, help="Diffusion: number of sampling steps (NFE).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.")
def sample(run_dir: str, n: int, out: str, sampler: str | None, steps: int | None, seed: int, device: str) -> None:
    """Draw N samples from a trained run."""
    import torch

    from elbolab.report.grid import save_images
    from elbolab.train.run import load_run

    if n < 1:
        raise ElbolabError("--n must be at least 1")
    cfg, model = load_run(Path(run_dir), device)
    generator = torch.Generator(model.device).manual_seed(seed)
    images = model.sample(n, generator=generator, sampler=sampler, steps=steps)
    path = save_images(images, cfg.levels, out, nrow=int(n ** 0.5 + 0.999))
    click.echo(f"wrote {n} samples to {path}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False))
@click.option("--pairs", type=int, default=6, show_default=True, help="Pairs of test images.")
@click.option("--frames", type=int, default=10, show_default=True, help="Frames per pair, ends included.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.")
def interpolate(run_dir: str, out: str, pairs: int, frames: int, seed: int, device: str) -> None:
    """Slerp in latent space between pairs of test images; one row per pair."""
    import torch

    from elbolab.data import load_data
    from elbolab.report.grid import save_images
    from elbolab.train.run import load_run

    if pairs < 1 or frames < 2:
        raise ElbolabError("--pairs must be ≥ 1 and --frames ≥ 2")
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


@cli.command()
@click.option("--data", default="digits", show_default=True, help="Data set name, image folder or .npz file.")
@click.option("--data-dir", default=None, help="Where named data sets live / are downloaded ($ELBOLAB_DATA).")
@click.option("--out", "out", default="compare-report", show_default=True, type=click.Path(file_okay=False))
@click.option("--budget", type=float, default=60.0, show_default=True, help="Training seconds per model.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--n-samples", type=int, default=256, show_default=True, help="Samples per model for quality.")
@click.option("--features", type=click.Choice(["builtin", "inception", "auto"]), default="builtin",
              show_default=True, help="Feature network for the Fréchet distance.")
@click.option("--quick", is_flag=True, help="Small evaluation (fewer images, samples and steps): a smoke test.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.")
def compare(data: str, data_dir: str | None, out: str, budget: float, seed: int, n_samples: int, features: str,
            quick: bool, quiet: bool, device: str) -> None:
    """The main job: train a VAE, diffusion and latent diffusion under one budget, measure, judge, report."""
    from elbolab.evaluate.run import EvalConfig
    from elbolab.experiments.compare import KINDS, CompareConfig, run_compare
    from elbolab.report.render import save_grids, write_report

    if budget <= 0 or n_samples < 2:
        raise ElbolabError("--budget must be positive and --n-samples at least 2")
    evaluation = EvalConfig(seed=seed, n_samples=n_samples)
    if quick:
        evaluation = EvalConfig(seed=seed, n_eval=100, iwae_n=50, n_samples=min(n_samples, 32), speed_n=8,
                                nfe=(5, 10), quality_steps=10)
    cfg = CompareConfig(data=data, data_dir=data_dir, budget=budget, seed=seed, evaluation=evaluation,
                        beta_sweep=(4.0,) if quick else CompareConfig.beta_sweep, device=device)
    out_dir = Path(out)
    click.echo(f"[compare] this takes about {cfg.training_seconds() / 60:.1f} min of training ({len(KINDS)} models × "
               f"{budget:.0f} s and {len(cfg.beta_sweep)} β-sweep VAEs × {budget * cfg.sweep_budget_fraction:.0f} s), "
               f"then the measurements", err=True)
    results, images = run_compare(cfg, out_dir, log=lambda m: click.echo(f"[compare] {m}", err=True),
                                  progress=not quiet, features_kind=features)
    grids = save_grids(images, results.data.levels, out_dir)
    paths = write_report(results, out_dir, grids)
    _print_verdicts(results)
    click.echo(f"report: {paths['markdown']} and {paths['html']}")


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(file_okay=False))
@click.option("--n-samples", type=int, default=256, show_default=True)
@click.option("--features", type=click.Choice(["builtin", "inception", "auto"]), default="builtin",
              show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.")
def report(run_dirs: tuple[str, ...], out: str, n_samples: int, features: str, device: str) -> None:
    """Measure trained runs side by side and write the report (contrasts need a VAE and a diffusion run)."""
    from elbolab.experiments.runs import measure_runs
    from elbolab.report.render import save_grids, write_report

    results, images = measure_runs([Path(r) for r in run_dirs], n_samples=n_samples, features_kind=features,
                                   log=lambda m: click.echo(f"[report] {m}", err=True), device=device)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = write_report(results, out_dir, save_grids(images, results.data.levels, out_dir))
    _print_verdicts(results)
    click.echo(f"report: {paths['markdown']} and {paths['html']}")


def _print_verdicts(results) -> None:
    for c in results.contrasts:
        click.echo(f"{c.verdict:>14}  {c.title}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors and a non-zero exit code instead of tracebacks."""
    try:
        cli.main(args=argv, prog_name="elbolab", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ElbolabError as exc:
        from elbolab.train.loop import TrainingInterrupted

        click.echo(f"error: {exc}", err=True)
        sys.exit(130 if isinstance(exc, TrainingInterrupted) else 1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(0)


if __name__ == "__main__":
    main()
