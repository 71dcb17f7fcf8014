"""The comparison report as Markdown and HTML, with its figures and image grids beside it."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from elbolab.experiments.results import CompareResults
from elbolab.report import figures
from elbolab.report.figures import LABELS

VERDICT_MARK = {"supported": "✅ supported", "not supported": "❌ not supported", "inconclusive": "➖ inconclusive"}


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:
            return "–"
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


def draw_figures(results: CompareResults, out: Path) -> dict[str, str]:
    """Every figure the results support, as {name: relative path}."""
    models = results.measured()
    made = {"bound_terms": figures.bound_terms({k: m for k, m in models.items() if m.bound}, out / "bound_terms.png")}
    chains = [m.information.chain for m in models.values() if m.information and m.information.chain]
    rates = {kind: m.information.latent.rate_bpd for kind, m in models.items() if m.information and m.information.latent}
    chain = chains[0] if chains else None
    if chain:
        made["per_step"] = figures.per_step_terms(chain.per_step_bpd, out / "per_step.png")
        made["information"] = figures.information_curve(chain.curve, rates, out / "information.png")
    if chain or results.beta_sweep:
        made["rate_distortion"] = figures.rate_distortion(chain.curve if chain else (), results.beta_sweep,
                                                          out / "rate_distortion.png")
    made["speed"] = figures.speed(models, out / "speed.png")
    first = results.seeds[0] if results.seeds else None
    if first is not None:
        if first.information:
            made["information_curves"] = figures.information_curves(first.information, out / "information_curves.png")
        if first.steps:
            made["steps_sharpness"] = figures.steps_curves(first.steps, first.floors, "laplacian_ratio",
                                                           "sharpness (× test set)", out / "steps_sharpness.png")
            if "fd" in first.steps[0].figures:
                made["steps_fd"] = figures.steps_curves(first.steps, first.floors, "fd", "Fréchet distance",
                                                        out / "steps_fd.png")
        if results.beta_sweep and results.beta_sweep[0].sample_figures:
            made["beta_sweep"] = figures.beta_sweep(results.beta_sweep, out / "beta_sweep.png")
    return {k: Path(v).name for k, v in made.items()}


def summary_rows(results: CompareResults) -> list[list[str]]:
    """One row per model: the numbers a reader compares first."""
    rows = []
    for kind, run in results.models.items():
        r = run.measurement
        b = r.bound.bpd
        fastest = max(r.speed, key=lambda s: s.images_per_second, default=None)
        q = r.quality or {}
        sharp = (r.sharpness or {}).get("samples", {})
        rows.append([LABELS.get(kind, kind), f"{_f(b.total)} ± {_f(b.ci95)}", _f(r.parameters),
                     f"{_f(run.train_steps)} ({_f(run.train_images_per_s, 0)} img/s)",
                     _f(q.get("fd"), 2), _f(sharp.get("laplacian_variance_ratio"), 2),
                     f"{_f(fastest.images_per_second if fastest else None, 1)} @ NFE "
                     f"{fastest.nfe if fastest else '–'}"])
    return rows


SUMMARY_HEADER = ["model", "−ELBO bits/dim (95% CI)", "parameters", "training steps", "Fréchet distance",
                  "sharpness (×test)", "fastest sampling img/s"]


def markdown(results: CompareResults, figs: dict[str, str], grids: dict[str, str]) -> str:
    """The report as Markdown."""
    d = results.data
    lines = [f"# elbolab compare — {d.name}", "",
             f"{d.n_test} test images of shape {tuple(d.shape)}, {d.levels} levels "
             f"(D = {d.dims}); training budget {_f(results.config['budget'], 0)} s per model on "
             f"{results.machine.get('processor', '?')} ({results.machine.get('torch_threads')} threads).", "",
             "## Summary", "", "| " + " | ".join(SUMMARY_HEADER) + " |", "|" + "---|" * len(SUMMARY_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(results)]
    lines += ["", "Objectives trained: " + "; ".join(f"{LABELS.get(k, k)}: {r.measurement.objective}"
                                                    for k, r in results.models.items()), "",
              "## The contrasts, measured", ""]
    for c in results.contrasts:
        lines += [f"### {c.title}", "", f"*Claim.* {c.claim}", "",
                  f"*Measured.* {c.measured}", "", f"*Rule.* {c.rule}", "",
                  f"**Verdict: {VERDICT_MARK.get(c.verdict, c.verdict)}**", ""]
    lines += ["## Figures", ""]
    lines += [f"![{name}]({path})" for name, path in figs.items()]
    lines += ["", "## Samples and interpolations", ""]
    lines += [f"**{name}**\n\n![{name}]({path})\n" for name, path in grids.items()]
    lines += ["", "All numbers: `results.json`. Runs (weights, configs, logs): `runs/`."]
    return "\n".join(lines) + "\n"


def to_html(md_results: CompareResults, figs: dict[str, str], grids: dict[str, str]) -> str:
    """The same report as a self-contained HTML page (images referenced beside it)."""
    r = md_results
    esc = html.escape
    rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in summary_rows(r))
    head = "".join(f"<th>{esc(h)}</th>" for h in SUMMARY_HEADER)
    contrasts = "".join(
        f"<section><h3>{esc(c.title)}</h3><p><em>Claim.</em> {esc(c.claim)}</p>"
        f"<p><em>Measured.</em> {esc(c.measured)}</p><p><em>Rule.</em> {esc(c.rule)}</p>"
        f"<p class='v {c.verdict.replace(' ', '-')}'>Verdict: {esc(VERDICT_MARK.get(c.verdict, c.verdict))}"
        f"</p></section>" for c in r.contrasts)
    imgs = "".join(f"<figure><img src='{esc(p)}' alt='{esc(n)}'><figcaption>{esc(n)}</figcaption></figure>"
                   for n, p in {**figs, **grids}.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>elbolab compare — {esc(r.data.name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}}
th{{background:#f3f3f3}}figure{{display:inline-block;margin:.5rem}}img{{max-width:28rem;image-rendering:pixelated}}
.v{{font-weight:bold}}.supported{{color:#176e2a}}.not-supported{{color:#a11}}.inconclusive{{color:#555}}</style>
</head><body><h1>elbolab compare — {esc(r.data.name)}</h1>
<table><tr>{head}</tr>{rows}</table><h2>The contrasts, measured</h2>{contrasts}<h2>Figures</h2>{imgs}
</body></html>"""


def write_report(results: CompareResults, out: Path, grids: dict[str, str]) -> dict[str, Path]:
    """results.json, report.md, report.html and the figures, into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    figs = draw_figures(results, out)
    (out / "results.json").write_text(json.dumps(results.to_json(), indent=2, default=float, allow_nan=False) + "\n")
    (out / "report.md").write_text(markdown(results, figs, grids))
    (out / "report.html").write_text(to_html(results, figs, grids))
    return {"markdown": out / "report.md", "html": out / "report.html", "json": out / "results.json"}


def save_grids(images: dict[str, dict[str, Any]], levels: int, out: Path) -> dict[str, str]:
    """Samples, reconstructions and interpolations of each model as PNG grids; {caption: file name}."""
    from elbolab.report.grid import save_images

    grids = {}
    for kind, imgs in images.items():
        label = LABELS.get(kind, kind)
        if imgs.get("samples") is not None:
            name = f"samples_{kind}.png"
            save_images(imgs["samples"][:64], levels, out / name, nrow=8)
            grids[f"{label}: samples"] = name
        if imgs.get("reconstructions") is not None:
            name = f"reconstructions_{kind}.png"
            save_images(imgs["reconstructions"][:32], levels, out / name, nrow=8)
            grids[f"{label}: encode → decode of test images"] = name
        if imgs.get("interpolation") is not None:
            frames = imgs["interpolation"]
            name = f"interpolation_{kind}.png"
            save_images(frames.flatten(0, 1), levels, out / name, nrow=frames.shape[1])
            grids[f"{label}: slerp interpolation"] = name
    return grids
