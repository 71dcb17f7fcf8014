"""Every figure the report can draw, by name: the names a `records.Contrast.figure` may give.

A figure is one or more panels (a plot, or an image grid per model) with a caption each. The
names are the interface to the verdict code: a contrast that names a figure gets it drawn right
beside it; a contrast that names none gets the figure its title points to (`FALLBACK`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import fmean

from torch import Tensor

from elbolab.evaluate.interpolation import PathStats
from elbolab.experiments.results import CompareResults, SeedResult
from elbolab.records import ChainRateDistortion, Contrast
from elbolab.report import figures
from elbolab.report.figures import label
from elbolab.report.grid import grid_png


@dataclass(frozen=True)
class Panel:
    """One image of a figure: PNG bytes, a caption, a text alternative and a file stem for the Markdown copy."""

    stem: str
    caption: str
    alt: str
    png: bytes
    kind: str | None = None  # the model it shows, where it shows one
    pixelated: bool = False  # an image grid (enlarged pixels), not a plot
    strip: bool = False  # a grid read along its rows (interpolation): a whole row of the figure


@dataclass(frozen=True)
class Figure:
    """A named figure: its title and panels."""

    name: str
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Material:
    """What figures are drawn from: the typed results, each model's images (samples, reconstructions,
    interpolation frames [P, T, C, H, W]) and, where given, real test images for reference."""

    results: CompareResults
    images: dict[str, dict[str, Tensor | None]] = field(default_factory=dict)
    reference: Tensor | None = None

    def chain(self) -> ChainRateDistortion | None:
        """The first diffusion chain's rate–distortion record among the models, if any."""
        return next(
            (m.information.chain for m in self.results.measured().values() if m.information and m.information.chain),
            None,
        )

    def grids(self, part: str) -> dict[str, Tensor]:
        """Each model's images of one part ("samples", "reconstructions", "interpolation") that exist."""
        found = {kind: imgs.get(part) for kind, imgs in self.images.items()}
        return {kind: grid for kind, grid in found.items() if grid is not None}


def _plot(name: str, caption: str, png: bytes) -> Panel:
    return Panel(name, caption, caption, png)


def draw_bound_terms(m: Material) -> tuple[Panel, ...]:
    """Each model's bound split into its terms."""
    bounded = {k: r for k, r in m.results.measured().items() if r.bound}
    if not bounded:
        return ()
    return (
        _plot(
            "bound_terms",
            "The negative ELBO of each model on held-out images, split into its named terms, "
            "in bits per dimension, with its 95% interval.",
            figures.bound_terms(bounded),
        ),
    )


def draw_per_step(m: Material) -> tuple[Panel, ...]:
    """Diffusion's per-step KL terms."""
    chain = m.chain()
    if chain is None or not chain.per_step_bpd:
        return ()
    return (
        _plot(
            "per_step",
            f"Diffusion's bound as the sum of its {chain.T} per-step terms L_(t−1).",
            figures.per_step_terms(chain.per_step_bpd),
        ),
    )


def draw_rate_distortion(m: Material) -> tuple[Panel, ...]:
    """Diffusion's progressive coding curve and the VAE β-sweep."""
    chain = m.chain()
    if chain is None and not m.results.beta_sweep:
        return ()
    return (
        _plot(
            "rate_distortion",
            "Rate against distortion: diffusion decoding progressively along t, and VAEs "
            "trained at several β (each square one VAE).",
            figures.rate_distortion(chain.curve if chain else (), m.results.beta_sweep),
        ),
    )


def draw_information(m: Material) -> tuple[Panel, ...]:
    """Information along t against the learned latents' rates."""
    chain = m.chain()
    if chain is None:
        return ()
    rates = {
        kind: r.information.latent.rate_bpd
        for kind, r in m.results.measured().items()
        if r.information and r.information.latent
    }
    return (
        _plot(
            "information",
            "How much x_t can still say about x_0 along the diffusion, against the rate of "
            "each learned one-step latent.",
            figures.information_curve(chain.curve, rates),
        ),
    )


def draw_frontier(m: Material) -> tuple[Panel, ...]:
    """Fréchet distance and throughput against NFE, per model and sampler."""
    models = m.results.measured()
    seed = _first_seed(m)
    panels = []
    if any(r.samples and r.samples.fd and r.quality_samples for r in models.values()):
        panels.append(
            _plot(
                "frontier_quality",
                "Sample quality against the number of network evaluations per image for every sampler swept "
                "(95% bootstrap intervals; Heun's k steps take 2k − 1); the VAE decodes in one; the sampler "
                "and NFE compare measures each model with ringed.",
                figures.frontier_quality(
                    seed.steps if seed else (), figures.quality_points(models), seed.floors if seed else None
                ),
            )
        )
    if any(r.speed for r in models.values()):
        panels.append(
            _plot(
                "frontier_speed",
                "Images per second against the number of network evaluations per "
                "image: what each step of quality costs.",
                figures.frontier_speed(models),
            )
        )
    return tuple(panels)


def _grid_panels(m: Material, part: str, limit: int, caption: Callable[[str, Tensor], str]) -> tuple[Panel, ...]:
    levels = m.results.data.levels
    return tuple(
        Panel(
            f"{part}_{kind}",
            caption(kind, imgs),
            f"{label(kind)}: {part}",
            grid_png(imgs[:limit], levels, nrow=8),
            kind,
            pixelated=True,
        )
        for kind, imgs in m.grids(part).items()
    )


def draw_samples(m: Material) -> tuple[Panel, ...]:
    """Each model's samples side by side, beside real test images."""
    quality = {k: r.quality_samples for k, r in m.results.measured().items()}

    def caption(kind: str, imgs: Tensor) -> str:
        q = quality.get(kind)
        how = f" ({q.sampler}, {q.steps} step{'s' if q.steps != 1 else ''})" if q else ""
        return f"{label(kind)}: samples{how}"

    panels = _grid_panels(m, "samples", 32, caption)
    if m.reference is not None and panels:
        panels = (
            Panel(
                "samples_data",
                f"{m.results.data.name}: real test images",
                "real test images",
                grid_png(m.reference[:32], m.results.data.levels, nrow=8),
                pixelated=True,
            ),
        ) + panels
    return panels


def draw_reconstructions(m: Material) -> tuple[Panel, ...]:
    """Each encoding model's decode(encode(x)) of test images."""
    rmse = {k: r.reconstruction_rmse for k, r in m.results.measured().items()}

    def caption(kind: str, imgs: Tensor) -> str:
        value = rmse.get(kind)
        return f"{label(kind)}: decode(encode(x)) of test images" + (
            f", RMSE {value:.1f} (0–255 scale)" if value is not None else ""
        )

    return _grid_panels(m, "reconstructions", 32, caption)


def smoothness_text(found: PathStats | None) -> str:
    """Interpolation smoothness as a reader reads it: means over the paths."""
    if found is None or not found.step_mean:
        return "smoothness not measured"
    return (
        f"neighbour-frame distance {fmean(found.step_mean):.3g} on average ({found.feature_net} features); "
        f"unevenness (std/mean per path) {fmean(found.step_cv):.2f}; largest step {fmean(found.max_step_ratio):.2f}× "
        f"the mean (an even path: 0 and 1×)"
    )


def draw_interpolation(m: Material) -> tuple[Panel, ...]:
    """Each model's interpolation strips (one row per pair of test images) with their smoothness numbers."""
    levels = m.results.data.levels
    smooth = {k: r.interpolation for k, r in m.results.measured().items()}
    return tuple(
        Panel(
            f"interpolation_{kind}",
            f"{label(kind)}: {smoothness_text(smooth.get(kind))}",
            f"{label(kind)}: interpolation between pairs of test images",
            grid_png(frames[:6].flatten(0, 1), levels, nrow=frames.shape[1]),
            kind,
            pixelated=True,
            strip=True,
        )
        for kind, frames in m.grids("interpolation").items()
    )


def _first_seed(m: Material) -> SeedResult | None:
    """The first seed's evidence (information curves, steps sweep, floors), where the comparison gathered it."""
    return m.results.seeds[0] if m.results.seeds else None


def draw_information_curves(m: Material) -> tuple[Panel, ...]:
    """I(x_0; x_t) of the forward process along t against the one-step codes' I(x; z)."""
    seed = _first_seed(m)
    if seed is None or not seed.information:
        return ()
    return (
        _plot(
            "information_curves",
            "Mutual information between an image and diffusion's x_t along the forward "
            "process (no model: the data's own posterior), with its Monte-Carlo interval, against the VAE's "
            "I(x; z) through its one-step code.",
            figures.information_curves(seed.information),
        ),
    )


def _steps_panel(m: Material, pick: figures.Pick, axis_label: str, stem: str) -> tuple[Panel, ...]:
    seed = _first_seed(m)
    if seed is None or not seed.steps or pick(seed.steps[0].figures) is None:
        return ()
    return (
        _plot(
            stem,
            f"{axis_label} of samples against the number of sampling steps (95% bootstrap intervals), "
            "the VAE's single pass beside, with real and blurred reference floors.",
            figures.steps_curves(seed.steps, seed.floors, pick, axis_label),
        ),
    )


def draw_steps_sharpness(m: Material) -> tuple[Panel, ...]:
    """Sample sharpness against the number of steps."""
    return _steps_panel(m, lambda f: f.laplacian_ratio, "sharpness (× test set)", "steps_sharpness")


def draw_steps_fd(m: Material) -> tuple[Panel, ...]:
    """Sample Fréchet distance against the number of steps."""
    return _steps_panel(m, lambda f: f.fd, "Fréchet distance", "steps_fd")


def draw_beta_sweep(m: Material) -> tuple[Panel, ...]:
    """The β-sweep VAEs' sample quality and sharpness."""
    sweep = m.results.beta_sweep
    if not sweep or sweep[0].sample_figures is None:
        return ()
    return (
        _plot(
            "beta_sweep",
            "VAEs trained at several β: Fréchet distance of prior samples and of "
            "reconstructions, and sample sharpness.",
            figures.beta_sweep(sweep),
        ),
    )


def draw_budget(m: Material) -> tuple[Panel, ...]:
    """The attribution table's effects against the fraction of the budget, one panel per outcome measured along
    it, one series per judged pairing (its budget points and the whole budget)."""
    table = m.results.attribution
    if table is None:
        return ()
    panels = []
    for outcome in table.outcomes:
        series = []
        for r in table.rows:
            c = next((c for c in r.cells if c.outcome == outcome.name), None)
            measured = [(b.fraction, b.effect) for b in (c.along if c else ()) if b.effect is not None]
            if c is None or c.effect is None or not measured:
                continue
            points = [*measured, (1.0, c.effect)]
            series.append((f"{r.pairing.contrast}: {' → '.join(r.pairing.pair or ())}", points))
        if series:
            panels.append(
                (outcome.title, tuple((n, tuple((f, e.value, e.low, e.high) for f, e in pts)) for n, pts in series))
            )
    if not panels:
        return ()
    caption = (
        "Each pair's effect on each outcome at fractions of the training budget (from the weights its runs kept "
        "there) and at the whole budget, with 95% intervals: a verdict is stable if it holds at every point."
    )
    return (_plot("budget", caption, figures.effects_along_budget(panels)),)


#: name → (title, how it is drawn); a contrast's `figure` names one of these
FIGURES: dict[str, tuple[str, Callable[[Material], tuple[Panel, ...]]]] = {
    "samples": ("Samples side by side", draw_samples),
    "rate_distortion": ("Rate–distortion", draw_rate_distortion),
    "information": ("Information along the chain", draw_information),
    "frontier": ("Speed–quality frontier", draw_frontier),
    "interpolation": ("Interpolation strips", draw_interpolation),
    "bound_terms": ("The bound, term by term", draw_bound_terms),
    "per_step": ("Diffusion's per-step terms", draw_per_step),
    "reconstructions": ("Reconstructions", draw_reconstructions),
    "information_curves": ("Information lost along the forward process", draw_information_curves),
    "steps_sharpness": ("Sharpness against sampling steps", draw_steps_sharpness),
    "steps_fd": ("Quality against sampling steps", draw_steps_fd),
    "beta_sweep": ("The β tug-of-war", draw_beta_sweep),
    "budget": ("Effects along the budget", draw_budget),
}

#: for contrasts that name no figure: the first key found in the lower-cased title picks one
FALLBACK = (
    ("interpolat", "interpolation"),
    ("sharp", "samples"),
    ("blurry", "samples"),
    ("tug-of-war", "rate_distortion"),
    ("rate", "rate_distortion"),
    ("bottleneck", "information"),
    ("information", "information"),
    ("speed", "frontier"),
    ("quality", "frontier"),
    ("steps", "frontier"),
    ("forward process", "reconstructions"),
    ("encoder", "reconstructions"),
    ("likelihood", "bound_terms"),
    ("latent diffusion", "bound_terms"),
    ("bound", "bound_terms"),
)


def figure_name(contrast: Contrast) -> str | None:
    """The figure that shows a contrast: the one it names, else the one its title points to (None: none fits)."""
    if contrast.figure:
        return contrast.figure
    title = contrast.title.lower()
    return next((name for key, name in FALLBACK if key in title), None)


def draw(material: Material) -> dict[str, Figure]:
    """Every figure the material supports, by name (figures with nothing to show are left out)."""
    drawn = {}
    for name, (title, how) in FIGURES.items():
        panels = how(material)
        if panels:
            drawn[name] = Figure(name, title, panels)
    return drawn
