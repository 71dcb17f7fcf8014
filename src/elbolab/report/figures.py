"""The report's plots, each drawn from typed results into PNG bytes: one colour per model in every plot,
axis labels with their units, log axes where the data span decades."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from elbolab.evaluate.floors import Floors
from elbolab.evaluate.frontier import point_nfe, with_points
from elbolab.evaluate.run import Measurement
from elbolab.evaluate.steps import StepsPoint
from elbolab.records import RatePoint, Resampled, SampleFigures, SpeedRow, SweepPoint
from elbolab.registry import LABELS, MODEL_KINDS

#: the colours of the first registered kinds, in registry order (Okabe–Ito, readable by colour-blind readers); other
#: models take the rest in turn
PALETTE = ("#0072B2", "#D55E00", "#009E73")
SPARE_COLOURS = ("#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
COLOURS: dict[str, str] = {}
#: the colours of a learned code and of a fixed chain, in the figures about one or the other
LEARNED, FIXED = PALETTE[0], PALETTE[1]
#: one marker and line style per sampler, the same in every plot
SAMPLER_STYLE = {
    "decoder": ("*", "-"),
    "ddim": ("o", "-"),
    "dpm-solver++": ("^", "--"),
    "dpm-solver++3m": ("v", "--"),
    "ancestral": ("s", ":"),
    "euler": ("D", "-."),
    "heun": ("P", "-"),
    "heun-churn": ("X", ":"),
}
DECADES_FOR_LOG = 1.5  # a positive axis whose data span more than this many decades is drawn on a log scale
#: which figure of a sample set a plot shows
Pick = Callable[[SampleFigures], Resampled | None]


def colour(name: str) -> str:
    """The colour of a model in every figure and table of the report: a registered kind's by its place in the
    registry, any other the next spare one."""
    if name not in COLOURS:
        kinds = list(MODEL_KINDS)[: len(PALETTE)]
        spare = sum(c in SPARE_COLOURS for c in COLOURS.values())
        COLOURS[name] = PALETTE[kinds.index(name)] if name in kinds else SPARE_COLOURS[spare % len(SPARE_COLOURS)]
    return COLOURS[name]


def label(name: str) -> str:
    """A model as readers name it: a registered kind's label, else its name."""
    return LABELS.get(name, name)


def png(fig: Any) -> bytes:
    """A finished figure as PNG bytes (the figure is closed)."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def log_if_decades(ax: Any, axis: str, values: Iterable[float | None]) -> None:
    """Put `axis` ("x" or "y") on a log scale when its positive values span more than DECADES_FOR_LOG decades."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if vals and min(vals) > 0 and math.log10(max(vals) / min(vals)) > DECADES_FOR_LOG:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def bound_terms(models: dict[str, Measurement]) -> bytes:
    """Stacked bars: each model's −ELBO split into its named terms, bits/dim, with the 95% interval."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for i, (kind, res) in enumerate(models.items()):
        bottom = 0.0
        for j, (name, value) in enumerate(res.bounded.bpd.terms.items()):
            ax.bar(
                i,
                value,
                bottom=bottom,
                color=colour(kind),
                alpha=0.45 + 0.25 * (j % 2),
                edgecolor="black",
                linewidth=0.5,
            )
            if abs(value) > 0.06 * res.bounded.bpd.total:
                ax.text(i, bottom + value / 2, name, ha="center", va="center", fontsize=7)
            bottom += value
        ax.errorbar(i, res.bounded.bpd.total, yerr=res.bounded.bpd.ci95, color="black", capsize=4)
    ax.set_xticks(range(len(models)), [label(k) for k in models])
    ax.set_ylabel("−ELBO (bits/dim), lower is better")
    ax.set_title("One bound, its terms per model (bar: 95% interval)")
    return png(fig)


def per_step_terms(per_step_bpd: Sequence[float]) -> bytes:
    """Diffusion's bound along the chain: L_{t−1} for t = 1..T (log scale)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    ax.semilogy(range(1, len(per_step_bpd) + 1), [max(v, 1e-12) for v in per_step_bpd], color=FIXED)
    ax.set_xlabel("step t (of T)")
    ax.set_ylabel(r"$L_{t-1}$ (bits/dim)")
    ax.set_title("Diffusion: the bound is a sum of small per-step KLs")
    return png(fig)


def rate_distortion(diffusion_curve: Sequence[RatePoint], vae_points: Sequence[SweepPoint]) -> bytes:
    """Diffusion's progressive-coding curve and the VAE β-sweep on the same axes."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    if diffusion_curve:
        ax.plot(
            [r.rate_bpd for r in diffusion_curve],
            [r.distortion_rmse for r in diffusion_curve],
            "o-",
            ms=3,
            color=FIXED,
            label="diffusion: progressive coding along t",
        )
    for p in vae_points:
        ax.plot(p.rate_bpd, p.distortion_rmse, "s", ms=7, color=LEARNED)
        ax.annotate(
            f"β={p.beta:g}", (p.rate_bpd, p.distortion_rmse), fontsize=8, xytext=(5, 4), textcoords="offset points"
        )
    if vae_points:
        ax.plot([], [], "s", color=LEARNED, label="VAE β-sweep: rate KL(q‖p) vs reconstruction")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("rate (bits/dim, symmetric log scale)")
    ax.set_ylabel("distortion: RMSE (0–255 scale)")
    ax.set_title("Rate–distortion: the reconstruction–KL tug-of-war")
    ax.legend(fontsize=7)
    return png(fig)


def information_curve(curve: Sequence[RatePoint], latent_rates: dict[str, float]) -> bytes:
    """How much information x_t keeps about x_0 along t, against each learned latent's rate (a bottleneck)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    rows = [r for r in curve if r.step > 0]
    ts = [r.t for r in rows]
    ax.plot(
        ts,
        [r.capacity_bpd for r in rows],
        color=FIXED,
        label="ceiling on I(x_0; x_t): Σ ½ log(1 + SNR·Var x_0)",
    )
    ax.plot(
        ts,
        [r.bits_to_recover_bpd for r in rows],
        "--",
        color=FIXED,
        label="bits still needed to recover x_0 from x_t",
    )
    for i, (kind, rate) in enumerate(latent_rates.items()):
        ax.axhline(
            rate,
            color=colour(kind),
            linestyle=("-", "-.", ":")[i % 3],
            label=f"{label(kind)}: rate KL(q(z|x)‖p(z)) ≥ I(x; z)",
        )
    values = [r.capacity_bpd for r in rows] + [r.bits_to_recover_bpd for r in rows] + list(latent_rates.values())
    log_if_decades(ax, "y", values)
    if ax.get_yscale() == "log":  # the last steps' vanishing ceiling would squash the rest
        ax.set_ylim(bottom=max(min(values), max(values) * 1e-4))
    ax.set_xlabel("diffusion time t (0: data, 1: noise)")
    ax.set_ylabel("information (bits/dim)")
    ax.set_title("Information destroyed gradually vs. a one-step bottleneck")
    ax.legend(fontsize=7)
    return png(fig)


def _nfe_axis(ax: Any, nfes: list[float]) -> None:
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xlabel("network evaluations per image (NFE, log scale)")
    ax.set_xlim(0.7, max(nfes + [2]) * 1.5)
    ticks: list[int] = []
    for n in sorted({int(n) for n in nfes}, reverse=True):
        if not ticks or 1.25 * n < ticks[0]:  # of neighbours such as Heun's 15 and 16, the larger, not both
            ticks.insert(0, n)
    ax.set_xticks(ticks, [str(n) for n in ticks])  # the NFEs measured, as plain numbers
    ax.xaxis.set_minor_formatter(NullFormatter())
    entries = len(ax.get_legend_handles_labels()[0])
    if entries > 5:  # many samplers: the legend beside the axes, not over the points
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    elif entries:
        ax.legend(fontsize=7)


def quality_points(models: dict[str, Measurement]) -> list[StepsPoint]:
    """Each model's quality samples as a point of the frontier: the sampler and NFE `compare` measures it with."""
    return [StepsPoint.of(m) for m in models.values() if m.quality_samples and m.samples]


def frontier_quality(points: Sequence[StepsPoint], used: Sequence[StepsPoint], floors: Floors | None = None) -> bytes:
    """Fréchet distance (95% bootstrap interval) against NFE for every sampler and NFE of the steps sweep `points`
    and the points `used` (each model's quality samples, the VAE's one pass: ringed), the real-data floor beside."""
    fig, ax = plt.subplots(figsize=(8.0, 3.8))
    groups: dict[tuple[str, str], list[StepsPoint]] = {}
    for p in with_points(points, used):
        if p.figures.fd is not None:
            groups.setdefault((p.model, p.sampler), []).append(p)
    nfes: list[float] = []
    for (model, sampler), rows in groups.items():
        rows = sorted(rows, key=point_nfe)
        x, fds = [point_nfe(p) for p in rows], [p.figures.fd for p in rows if p.figures.fd is not None]
        marker, line = SAMPLER_STYLE.get(sampler, ("o", "-"))
        ax.errorbar(
            x,
            [fd.value for fd in fds],
            yerr=_bars(fds),
            marker=marker,
            linestyle=line if len(rows) > 1 else "none",
            ms=5 if len(rows) > 1 else 8,
            capsize=2,
            color=colour(model),
            label=f"{label(model)} {sampler}",
        )
        nfes += x
    ringed = [(point_nfe(p), p.figures.fd.value) for p in used if p.figures.fd is not None]
    if ringed:
        ax.plot(*zip(*ringed), "o", ms=14, mfc="none", mec="black", label="the sampler and NFE compare uses")
    real = None if floors is None else floors.real.fd
    if floors is not None and real is not None:
        ax.axhline(real.value, color="black", ls=":", label=f"real held-out {floors.real_source}")
    _nfe_axis(ax, nfes)
    log_if_decades(ax, "y", [p.figures.fd.value for rows in groups.values() for p in rows if p.figures.fd])
    ax.set_ylabel("Fréchet distance (lower is better)")
    ax.set_title("Quality against network evaluations: every sampler")
    return png(fig)


def _bars(figures: Sequence[Resampled]) -> list[list[float]]:
    """Error bars from each figure to its percentile interval, never negative (a percentile interval need not hold
    the figure itself: bootstrap bias)."""
    spans = [f.interval() for f in figures]
    return [
        [max(f.value - lo, 0.0) for f, (lo, _) in zip(figures, spans)],
        [max(hi - f.value, 0.0) for f, (_, hi) in zip(figures, spans)],
    ]


def frontier_speed(models: dict[str, Measurement]) -> bytes:
    """Sampling throughput against NFE, per model and sampler."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    nfes: list[float] = []
    for kind, m in models.items():
        by_sampler: dict[str, list[SpeedRow]] = {}
        for row in m.speed:
            by_sampler.setdefault(row.sampler, []).append(row)
        for sampler, rows in by_sampler.items():
            rows = sorted(rows, key=lambda r: r.nfe)
            marker, line = SAMPLER_STYLE.get(sampler, ("o", "-"))
            ax.plot(
                [r.nfe for r in rows],
                [r.images_per_second for r in rows],
                marker=marker,
                linestyle=line,
                ms=9 if len(rows) == 1 else 5,
                color=colour(kind),
                label=f"{label(kind)} {sampler}",
            )
            nfes += [r.nfe for r in rows]
    _nfe_axis(ax, nfes)
    ax.set_yscale("log")
    ax.set_ylabel("images per second (log scale)")
    ax.set_title("Sampling speed against network evaluations")
    return png(fig)


def information_curves(curves: tuple[Any, ...]) -> bytes:
    """I(x_0; x_t) of the forward process along t (± 1.96 Monte-Carlo errors) and each one-step code's I(x; z)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for c in curves:
        if len(c.steps) > 1:
            lo = [v - 1.96 * s for v, s in zip(c.nats, c.stderr_nats)]
            hi = [v + 1.96 * s for v, s in zip(c.nats, c.stderr_nats)]
            ax.plot(c.steps, c.nats, color=FIXED, label=f"{c.name}: I(x_0; x_t)")
            ax.fill_between(c.steps, lo, hi, color=FIXED, alpha=0.25)
        else:
            ax.axhline(c.nats[0], color=LEARNED, label=f"{c.name}: I(x; z), one step")
    if curves:
        ax.axhline(curves[0].max_nats, color="grey", ls=":", label=f"log N (N = {curves[0].n_images})")
    ax.set_xlabel("forward step t")
    ax.set_ylabel("nats")
    ax.set_title("Information about the image: lost gradually vs. in one step")
    ax.legend(fontsize=7)
    return png(fig)


def steps_curves(points: Sequence[StepsPoint], floors: Floors | None, pick: Pick, axis_label: str) -> bytes:
    """The sample figure `pick` reads (95% bootstrap interval) against the NFE of each model and sampler's points,
    with the floors."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    groups: dict[tuple[str, str], list[tuple[int, Resampled]]] = {}
    for p in points:
        found = pick(p.figures)
        if found is not None:
            groups.setdefault((p.model, p.sampler), []).append((point_nfe(p), found))
    for (model, sampler), rows in groups.items():
        rows = sorted(rows, key=lambda row: row[0])
        values = [r.value for _, r in rows]
        spans = [r.interval() for _, r in rows]
        # a percentile interval need not hold the figure itself (bootstrap bias): bars never go negative
        err = [
            [max(v - lo, 0.0) for v, (lo, _) in zip(values, spans)],
            [max(hi - v, 0.0) for v, (_, hi) in zip(values, spans)],
        ]
        ax.errorbar(
            [evaluations for evaluations, _ in rows],
            values,
            yerr=err,
            fmt="o-" if len(rows) > 1 else "*",
            ms=4,
            capsize=2,
            color=colour(model),
            alpha=1.0 if sampler != "ddim" else 0.6,
            label=f"{label(model)} {sampler}",
        )
    real, blurred = (None, None) if floors is None else (pick(floors.real), pick(floors.blurred))
    if floors is not None and real is not None and blurred is not None:
        ax.axhline(real.value, color="black", ls=":", label=f"real held-out {floors.real_source}")
        ax.axhline(blurred.value, color="grey", ls="--", label=f"test blurred σ={floors.blur_sigma:g} px")
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations per image (NFE; Heun's k steps: 2k − 1)")
    ax.set_ylabel(axis_label)
    ax.set_title(f"{axis_label} against steps")
    ax.legend(fontsize=6)
    return png(fig)


def beta_sweep(points: Sequence[SweepPoint]) -> bytes:
    """The β-sweep VAEs: Fréchet distance of prior samples and of reconstructions, and sample sharpness, by β."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    betas = [p.beta for p in points]
    for sets, style, name in (
        ([p.sample_figures for p in points], "o-", "prior samples"),
        ([p.reconstruction_figures for p in points], "s--", "reconstructions"),
    ):
        values = [f.fd.value if f is not None and f.fd is not None else float("nan") for f in sets]
        left.plot(betas, values, style, color=LEARNED, label=name)
    left.set_xscale("log")
    left.set_xlabel("β")
    left.set_ylabel("Fréchet distance")
    left.legend(fontsize=7)
    right.plot(
        betas,
        [p.sample_figures.laplacian_ratio.value if p.sample_figures else float("nan") for p in points],
        "o-",
        color=LEARNED,
    )
    right.axhline(1.0, color="black", ls=":")
    right.set_xscale("log")
    right.set_xlabel("β")
    right.set_ylabel("sample sharpness (× test set)")
    fig.suptitle("The tug-of-war as the essay states it")
    return png(fig)


#: a series of effects along the budget: its label, and (fraction, value, low, high) at each point it has
BudgetSeries = tuple[str, tuple[tuple[float, float, float, float], ...]]


def effects_along_budget(panels: Sequence[tuple[str, Sequence[BudgetSeries]]]) -> bytes:
    """One panel per outcome: each pair's effect (b − a) against the fraction of the training budget, with its
    95% interval, and the line of no effect."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    styles = ("o-", "s--", "^-.", "D:", "v-", "P--", "X-.", "*:")
    for ax, (title, series) in zip(axes[0], panels, strict=True):
        for i, (name, points) in enumerate(series):
            f, v, lo, hi = (list(c) for c in zip(*points, strict=True))
            offset = [x * (1 + 0.02 * (i - len(series) / 2)) for x in f]  # side by side, not on top of each other
            ax.errorbar(
                offset,
                v,
                yerr=[[a - b for a, b in zip(v, lo, strict=True)], [b - a for a, b in zip(v, hi, strict=True)]],
                fmt=styles[i % len(styles)],
                color=(PALETTE + SPARE_COLOURS)[i % (len(PALETTE) + len(SPARE_COLOURS))],
                capsize=2,
                label=name,
                ms=4,
            )
        ax.axhline(0.0, color="black", ls=":", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks([0.25, 0.5, 1.0], ["¼", "½", "1"])
        ax.set_xlabel("fraction of the training budget")
        ax.set_ylabel(f"{title}, b − a")
        ax.set_title(title, fontsize=9)
    axes[0][0].legend(fontsize=6, loc="best")
    fig.suptitle("Effects along the budget (95% intervals; from snapshots of the same runs)")
    return png(fig)
