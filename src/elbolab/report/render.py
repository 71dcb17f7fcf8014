"""The comparison report: one self-contained HTML page (every image embedded as a data URI, no scripts,
no fonts, no network) and the same content as Markdown with its images as files beside it.

Order: the attribution table (what each design choice does to each outcome) beside the design figure, a verdict
board (one row per contrast), then each contrast with its claim, measurement, effect,
rule, verdict and the figure that shows it; then the summary table, the figures no contrast named, and
the configuration, seeds, versions and machine.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from elbolab.atomic import atomic_write_bytes, atomic_write_text
from elbolab.experiments.results import CompareResults
from elbolab.experiments.verdicts import show_figure
from elbolab.records import Contrast, Effect, Resampled
from elbolab.report.attribution import CSS as ATTRIBUTION_CSS
from elbolab.report.attribution import attribution_markdown, attribution_section
from elbolab.report.figures import colour, label
from elbolab.report.gallery import Figure, Material, draw, figure_name
from elbolab.report.markup import badge, esc, num, power_text


def effect_text(e: Effect | None) -> str:
    """An effect with its 95% interval and the test behind it, in one line."""
    if e is None:
        return "no effect size recorded"
    low, high = (num(v) if math.isfinite(v) else "unknown" for v in (e.low, e.high))
    text = f"{e.name} = {num(e.value)} (95% interval {low} to {high}; no effect: {num(e.null)})"
    if e.min_detectable is not None:
        text += f"; smallest detectable {num(e.min_detectable)}"
    return text


def first_sentence(text: str) -> str:
    """The claim's first sentence, for the verdict board."""
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def interval_text(figure: Resampled | None) -> str:
    """A bootstrapped figure as 'value [low, high]' (its 95% percentile interval); "–" where not measured."""
    return "–" if figure is None else show_figure(figure)


def summary_rows(results: CompareResults) -> list[tuple[str, list[str]]]:
    """One row per model (its kind and cells): the numbers a reader compares first."""
    rows = []
    for kind, run in results.models.items():
        r = run.measurement
        fastest = max(r.speed, key=lambda s: s.images_per_second, default=None)
        fig = r.samples
        fd, precision, recall = (None, None, None) if fig is None else (fig.fd, fig.precision, fig.recall)
        bound = f"{num(r.bound.bpd.total)} ± {num(r.bound.bpd.ci95, 2)}" if r.bound else "–"
        rows.append(
            (
                kind,
                [
                    label(kind),
                    bound,
                    num(r.parameters),
                    f"{num(run.train_steps)} ({num(run.train_images_per_s)} img/s)",
                    interval_text(fd),
                    " / ".join(interval_text(f) for f in (precision, recall)),
                    num(fig.laplacian_ratio.value if fig else None),
                    f"{num(fastest.images_per_second)} at NFE {fastest.nfe}" if fastest else "–",
                    r.objective,
                ],
            )
        )
    return rows


SUMMARY_HEADER = [
    "model",
    "−ELBO bits/dim (± 95%)",
    "parameters",
    "training steps",
    "Fréchet distance [95%]",
    "precision / recall [95%]",
    "sharpness (× test set)",
    "fastest sampling, img/s",
    "objective trained",
]


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested settings as (dotted key, value) rows."""
    if isinstance(obj, dict):
        return [row for k, v in obj.items() for row in flatten(v, f"{prefix}{k}.")]
    return [
        (
            prefix.rstrip("."),
            num(obj)
            if isinstance(obj, (int, float))
            else ", ".join(map(str, obj))
            if isinstance(obj, (list, tuple))
            else str(obj),
        )
    ]


def versions() -> list[tuple[str, str]]:
    """The package's version and its main dependencies'."""
    from importlib import metadata

    found = []
    for name in ("elbolab", "torch", "numpy", "matplotlib"):
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            found.append((name, "not installed as a package"))
    return found


def setting_rows(results: CompareResults) -> list[tuple[str, str]]:
    """Configuration, seeds, data, feature network, versions and machine as (key, value) rows."""
    d = results.data
    rows = [
        (
            "data",
            f"{d.name}: {num(d.n_test)} test images of shape {tuple(d.shape)}, {d.levels} levels, D = {num(d.dims)}",
        )
    ]
    rows += [(f"config.{k}", v) for k, v in flatten(dataclasses.asdict(results.config))]
    rows += [("config.runs", ", ".join(results.runs))] if results.runs else []
    rows += [(f"feature_net.{k}", v) for k, v in flatten(dataclasses.asdict(results.feature_net))]
    rows += [(f"version.{k}", v) for k, v in versions()]
    rows += [(f"machine.{k}", v) for k, v in flatten(dataclasses.asdict(results.machine))]
    return rows


def placed(results: CompareResults, drawn: dict[str, Figure]) -> list[tuple[Contrast, str, Figure | None]]:
    """Each contrast with its anchor and the figure drawn for it (None: it names none, or one not drawn)."""
    return [(c, f"contrast-{i + 1}", drawn.get(figure_name(c) or "")) for i, c in enumerate(results.contrasts)]


# ---------------------------------------------------------------- HTML

CSS = """
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;color:#1b1b1b;background:#fff;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",
 "Liberation Sans",Arial,sans-serif}
main{max-width:76rem;margin:0 auto;padding:1.25rem 1rem 3rem}
h1{font-size:1.7rem;line-height:1.2;margin:.2rem 0 .4rem}
h2{font-size:1.3rem;margin:2.2rem 0 .8rem;padding-bottom:.25rem;border-bottom:2px solid #222}
h3{font-size:1.1rem;margin:0;line-height:1.3}
p{margin:.35rem 0}
a{color:#0b57a4}
.lede{color:#444;max-width:60rem}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.badge{display:inline-flex;align-items:center;gap:.4em;padding:.12em .7em;border-radius:999px;border:2px solid;
 font-weight:700;font-size:.85rem;letter-spacing:.01em;white-space:nowrap;line-height:1.4}
.badge::before{content:"";display:inline-block;flex:none}
.badge.supported{background:#16692f;border-color:#16692f;color:#fff}
.badge.supported::before{width:.32em;height:.66em;border:solid currentColor;border-width:0 .17em .17em 0;
 transform:rotate(45deg) translate(-.05em,-.08em)}
.badge.not-supported{background:#fff;border-color:#a3231a;color:#a3231a}
.badge.not-supported::before{width:.72em;height:.72em;
 background:linear-gradient(45deg,transparent 40%,currentColor 40%,currentColor 60%,transparent 60%),
 linear-gradient(-45deg,transparent 40%,currentColor 40%,currentColor 60%,transparent 60%)}
.badge.inconclusive{background:#fff;border-style:dashed;border-color:#5f5f5f;color:#3d3d3d}
.badge.inconclusive::before{width:.7em;height:.17em;background:currentColor}
.board{list-style:none;margin:0;padding:0;border:1px solid #cfcfcf;border-radius:.5rem;overflow:hidden}
.board li{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,19rem) 10.5rem;gap:.4rem 1rem;align-items:center;
 padding:.65rem .9rem;border-top:1px solid #e2e2e2}
.board li:first-child{border-top:0}
.board li:nth-child(even){background:#f7f7f7}
.board .what a{font-weight:600;text-decoration:none}
.board .what a:hover{text-decoration:underline}
.board .claim{color:#4a4a4a;font-size:.9rem}
.board .effect{font-size:.88rem;color:#2b2b2b;overflow-wrap:anywhere}
.board .verdict{text-align:right}
.contrast{border:1px solid #d5d5d5;border-radius:.5rem;padding:1rem;margin:1.1rem 0;scroll-margin-top:1rem}
.contrast>header{display:flex;flex-wrap:wrap;justify-content:space-between;gap:.5rem 1rem;align-items:center;
 margin-bottom:.7rem}
.contrast .body{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1.35fr);gap:1.2rem;align-items:start}
.contrast dl{margin:0}
.contrast dt{font-weight:700;font-size:.8rem;text-transform:uppercase;letter-spacing:.04em;color:#555;margin-top:.6rem}
.contrast dt:first-child{margin-top:0}
.contrast dd{margin:.1rem 0 0;overflow-wrap:anywhere}
figure{margin:0}
.fig>figcaption{font-weight:600;margin-bottom:.4rem}
.panels{display:flex;flex-wrap:wrap;gap:.8rem}
.panel{flex:1 1 16rem;min-width:0}
.panel.grid{flex-basis:10rem}
.panel.strip{flex-basis:100%}
.panel.plot{flex-basis:100%}
.panel img{display:block;max-width:100%;height:auto;border:1px solid #e4e4e4}
.panel.grid img{image-rendering:pixelated;width:100%;max-width:24rem}
.panel figcaption{font-size:.85rem;color:#3f3f3f;margin-top:.25rem;overflow-wrap:anywhere}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.4em;vertical-align:-.05em;
 border:1px solid rgba(0,0,0,.35)}
.scroll{overflow-x:auto;max-width:100%;border:1px solid #e2e2e2;border-radius:.4rem}
table{border-collapse:collapse;font-size:.9rem;width:100%}
th,td{padding:.35rem .65rem;border-bottom:1px solid #e6e6e6;text-align:right;white-space:nowrap;vertical-align:top}
th{background:#f2f2f2;font-weight:600}
th:first-child,td:first-child{text-align:left}
table.kv th,table.kv td{white-space:normal;text-align:left;overflow-wrap:anywhere}
table.kv td:first-child{white-space:normal;overflow-wrap:anywhere;font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.82rem}
.note{color:#555;font-size:.9rem}
@media (max-width:56rem){
 .board li{grid-template-columns:minmax(0,1fr) auto}
 .board .effect{grid-column:1/-1;grid-row:2}
 .contrast .body{grid-template-columns:minmax(0,1fr)}
}
@media (max-width:30rem){
 main{padding:.8rem .7rem 2rem}
 h1{font-size:1.35rem}
 .board li{grid-template-columns:minmax(0,1fr);padding:.6rem .7rem}
 .board .verdict{text-align:left}
 .board .effect{grid-row:auto}
 .contrast{padding:.75rem}
 table.kv thead{display:none}
 table.kv tr{display:block;border-bottom:1px solid #e6e6e6;padding:.3rem 0}
 table.kv td{display:block;border:0;padding:.05rem .65rem}
}
@media print{.badge.supported{background:#fff;color:#000;border-color:#000;border-width:3px}}
"""


def data_uri(png: bytes) -> str:
    """PNG bytes as a data: URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_html(fig: Figure) -> str:
    """A figure with its panels, images embedded."""
    panels = "".join(
        f'<figure class="panel {"grid" if p.pixelated else "plot"}{" strip" if p.strip else ""}" '
        f'data-stem="{esc(p.stem)}">'
        f'<img src="{data_uri(p.png)}" alt="{esc(p.alt)}"><figcaption>'
        f"{swatch(p.kind) if p.kind else ''}{esc(p.caption)}</figcaption></figure>"
        for p in fig.panels
    )
    return (
        f'<figure class="fig" data-figure="{esc(fig.name)}"><figcaption>{esc(fig.title)}</figcaption>'
        f'<div class="panels">{panels}</div></figure>'
    )


def swatch(kind: str) -> str:
    """A small square in the model's colour."""
    return f'<span class="swatch" style="background:{colour(kind)}" aria-hidden="true"></span>'


def pair_text(c: Contrast) -> str | None:
    """'factor: a vs. b' of a contrast (one name: within that model); None where it names neither."""
    if not (c.factor or c.pair):
        return None
    pair = " vs. ".join(c.pair) if len(c.pair) > 1 else (f"within {c.pair[0]}" if c.pair else "")
    return f"{c.factor}: {pair}" if c.factor and pair else c.factor or pair


def contrast_html(c: Contrast, anchor: str, fig: Figure | None) -> str:
    """One contrast: claim, measurement, effect, rule, verdict and its figure."""
    items = [
        ("Factor and pair", pair_text(c)),
        ("Claim", c.claim),
        ("Measured", c.measured),
        ("Effect", effect_text(c.effect)),
        ("Test", c.effect.test if c.effect else None),
        ("Rule", c.rule),
        ("Per seed", ", ".join(num(v) for v in c.per_seed) if c.per_seed else None),
        ("Power", power_text(c.power) or None),
    ]
    dl = "".join(f"<dt>{name}</dt><dd>{esc(text)}</dd>" for name, text in items if text)
    dl += f"<dt>Verdict</dt><dd>{badge(c.verdict)}</dd>"
    wanted = figure_name(c)
    shown = (
        figure_html(fig)
        if fig
        else (
            f'<p class="note">Figure “{esc(wanted)}” has nothing to show in these results.</p>'
            if wanted
            else '<p class="note">No figure belongs to this contrast.</p>'
        )
    )
    return (
        f'<section class="contrast" id="{anchor}" data-figure="{esc(wanted or "")}" aria-labelledby="{anchor}-h">'
        f'<header><h3 id="{anchor}-h">{esc(c.title)}</h3>{badge(c.verdict)}</header>'
        f'<div class="body"><dl>{dl}</dl><div>{shown}</div></div></section>'
    )


def board_html(rows: list[tuple[Contrast, str, Figure | None]]) -> str:
    """The verdict board: one row per contrast."""
    items = "".join(
        f'<li data-contrast="{esc(c.title)}"><div class="what"><a href="#{anchor}">{esc(c.title)}</a>'
        f'<p class="claim">{esc(first_sentence(c.claim))}</p></div>'
        f'<div class="effect">{esc(effect_text(c.effect) if c.effect else c.rule)}</div>'
        f'<div class="verdict">{badge(c.verdict)}</div></li>'
        for c, anchor, _ in rows
    )
    return f'<ol class="board" aria-label="verdict per contrast">{items}</ol>'


def table_html(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """A table in a box that scrolls sideways on its own when it is wider than the screen."""
    head = "".join(f"<th scope=col>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return (
        f'<div class="scroll" tabindex="0"><table class="{cls}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def lede(results: CompareResults) -> str:
    """One sentence on what was compared, on what, under which budget and where."""
    d, m = results.data, results.machine
    budget = results.config.budget
    spent = "existing runs"
    if not results.runs and budget is not None:
        spent = f"a training budget of {budget} per model" + (
            " (wall-clock: the steps each model got, and so the answer, depend on the machine and its load)"
            if budget.machine_dependent
            else " (compute: the same steps on any machine, at any load)"
        )
    threads = sorted({r.train_threads for r in results.models.values() if r.train_threads is not None})
    trained = f"trained at {'/'.join(map(str, threads))} thread(s) per run, " if threads else ""
    return (
        f"{', '.join(label(k) for k in results.models)} on {d.name} ({num(d.n_test)} test images, "
        f"{'×'.join(map(str, d.shape))}, {d.levels} levels), {spent}, {trained}measured through one bound on "
        f"{m.processor} with {m.torch_threads} threads.{starved_text(results)}"
    )


#: a run trained below this share of the idle calibration's FLOP rate is reported as starved
STARVED = 0.25


def starved_text(results: CompareResults) -> str:
    """The runs that trained far below the machine's idle calibration ('' where none did)."""
    if results.calibration is None:
        return ""
    slow = {
        k: rate for k, r in results.models.items() if (rate := r.flop_rate()) and rate < STARVED * results.calibration
    }
    if not slow:
        return ""
    budget = results.config.budget
    effect = (
        "with a wall-clock budget they got fewer steps, and the answer may differ from an idle machine's"
        if budget is not None and budget.machine_dependent
        else "with a compute budget their steps, and so the answer, are unchanged; only slower"
    )
    listed = ", ".join(f"{label(k)} {num(v)} FLOP/s" for k, v in slow.items())
    return (
        f" Starved runs, trained below {STARVED:.0%} of this machine's idle calibration "
        f"({num(results.calibration)} FLOP/s per process): {listed}; {effect}."
    )


def to_html(results: CompareResults, drawn: dict[str, Figure]) -> str:
    """The whole report as one self-contained HTML page."""
    rows = placed(results, drawn)
    contrasts = (
        "".join(contrast_html(c, anchor, fig) for c, anchor, fig in rows)
        or '<p class="note">No contrast could be judged: a comparison needs a VAE and a diffusion run.</p>'
    )
    shown = {fig.name for _, _, fig in rows if fig} | {"budget"}  # the budget figure: beside the attribution table
    others = "".join(f'<div class="contrast">{figure_html(f)}</div>' for n, f in drawn.items() if n not in shown)
    summary = table_html(
        SUMMARY_HEADER, [[swatch(kind) + esc(cells[0]), *map(esc, cells[1:])] for kind, cells in summary_rows(results)]
    )
    settings = table_html(["setting", "value"], [[esc(k), esc(v)] for k, v in setting_rows(results)], "kv")
    title = f"elbolab compare — {results.data.name}"
    attribution = (
        attribution_section(
            results.attribution, results.design, figure_html(drawn["budget"]) if "budget" in drawn else ""
        )
        if results.attribution is not None and results.design is not None
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><link rel="icon" href="data:,"><style>{CSS}{ATTRIBUTION_CSS}</style></head>
<body><main>
<header><h1>{esc(title)}</h1><p class="lede">{esc(lede(results))}</p></header>
{attribution}<section aria-labelledby="verdicts-h"><h2 id="verdicts-h">Verdicts</h2>{board_html(rows)}</section>
<section aria-labelledby="contrasts-h"><h2 id="contrasts-h">The contrasts, measured</h2>{contrasts}</section>
<section aria-labelledby="summary-h"><h2 id="summary-h">Summary</h2>{summary}</section>
{f'<section aria-labelledby="more-h"><h2 id="more-h">More figures</h2>{others}</section>' if others else ""}
<section aria-labelledby="settings-h"><h2 id="settings-h">Configuration, seeds, versions and machine</h2>{settings}
<p class="note">All numbers are in results.json beside this page; the runs (weights, configs, logs) in runs/.</p>
</section></main></body></html>
"""


# ---------------------------------------------------------------- Markdown


def md_text(text: str) -> str:
    """Text shown as itself in Markdown: the HTML a renderer would obey (`<`, `>`, `&` from data paths and run
    names) escaped."""
    return html.escape(str(text), quote=False)


def md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return md_text(text).replace("|", "\\|").replace("\n", " ")


def figure_md(fig: Figure) -> list[str]:
    """A figure's panels as Markdown images (files beside the report) with their captions."""
    lines = [f"**{md_text(fig.title)}**", ""]
    for p in fig.panels:
        lines += [f"![{md_text(p.alt)}]({p.stem}.png)", "", f"*{md_text(p.caption)}*", ""]
    return lines


def to_markdown(results: CompareResults, drawn: dict[str, Figure]) -> str:
    """The same report as Markdown: images are the PNG files `write_report` puts beside it."""
    rows = placed(results, drawn)
    lines = [
        f"# elbolab compare — {md_text(results.data.name)}",
        "",
        md_text(lede(results)),
        "",
        *(
            attribution_markdown(results.attribution, results.design)
            + (figure_md(drawn["budget"]) if "budget" in drawn else [])
            if results.attribution is not None and results.design is not None
            else []
        ),
        "## Verdicts",
        "",
        "| verdict | contrast | effect (95% interval) |",
        "|---|---|---|",
    ]
    lines += [
        f"| **{c.verdict}** | [{md_cell(c.title)}](#{anchor}) | {md_cell(effect_text(c.effect))} |"
        for c, anchor, _ in rows
    ]
    lines += ["", "## The contrasts, measured", ""]
    for c, anchor, fig in rows:
        lines += [
            f'<a id="{anchor}"></a>',
            "",
            f"### {md_text(c.title)}",
            "",
            f"**Verdict: {c.verdict}**",
            "",
            *([f"*Factor and pair.* {pair_text(c)}", ""] if pair_text(c) else []),
            f"*Claim.* {c.claim}",
            "",
            f"*Measured.* {c.measured}",
            "",
            f"*Effect.* {effect_text(c.effect)}",
            "",
        ]
        if c.effect:
            lines += [f"*Test.* {c.effect.test}", ""]
        lines += [f"*Rule.* {c.rule}", ""]
        if c.per_seed:
            lines += [f"*Per seed.* {', '.join(num(v) for v in c.per_seed)}", ""]
        lines += figure_md(fig) if fig else [f"*No figure drawn ({figure_name(c) or 'none named'}).*", ""]
    lines += ["## Summary", "", "| " + " | ".join(SUMMARY_HEADER) + " |", "|" + "---|" * len(SUMMARY_HEADER)]
    lines += ["| " + " | ".join(md_cell(cell) for cell in cells) + " |" for _, cells in summary_rows(results)]
    shown = {fig.name for _, _, fig in rows if fig} | {"budget"}
    others = [f for n, f in drawn.items() if n not in shown]
    if others:
        lines += ["", "## More figures", ""]
        for f in others:
            lines += figure_md(f)
    lines += ["", "## Configuration, seeds, versions and machine", "", "| setting | value |", "|---|---|"]
    lines += [f"| `{k}` | {md_cell(v)} |" for k, v in setting_rows(results)]
    lines += ["", "All numbers: `results.json`. Runs (weights, configs, logs): `runs/`."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- files


#: the files a report is drawn again from: the typed results, and the images behind its grids
RESULTS_FILE, IMAGES_FILE = "results.json", "images.npz"
Images = dict[str, dict[str, Tensor | None]]


def save_images(path: Path, images: Images, reference: Tensor | None) -> None:
    """Each model's images (samples, reconstructions, interpolation frames) and the reference images, as arrays
    named "kind.part" and "reference" in one .npz file."""
    arrays = {
        f"{kind}.{part}": t.numpy() for kind, parts in images.items() for part, t in parts.items() if t is not None
    }
    if reference is not None:
        arrays["reference"] = reference.numpy()
    save: Any = np.savez_compressed  # numpy's stubs read **arrays as its positional flag
    save(path, **arrays)


def load_images(path: Path) -> tuple[Images, Tensor | None]:
    """The images `save_images` wrote: (each model's by part, the reference images or None)."""
    images: Images = {}
    reference = None
    with np.load(path, allow_pickle=False) as saved:
        for name in saved.files:
            if name == "reference":
                reference = torch.from_numpy(saved[name])
            else:
                kind, part = name.rsplit(".", 1)
                images.setdefault(kind, {})[part] = torch.from_numpy(saved[name])
    return images, reference


def read_saved(folder: Path) -> tuple[CompareResults, Images, Tensor | None]:
    """A written report's results and images, read back (no model is loaded)."""
    results = CompareResults.from_json(json.loads((Path(folder) / RESULTS_FILE).read_text()))
    images_file = Path(folder) / IMAGES_FILE
    images, reference = load_images(images_file) if images_file.is_file() else ({}, None)
    return results, images, reference


def write_report(
    results: CompareResults,
    out: Path,
    images: Images | None = None,
    reference: Tensor | None = None,
) -> dict[str, Path]:
    """results.json, images.npz, report.html (self-contained), report.md and its PNG files, into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    drawn = draw(Material(results, images or {}, reference))
    for fig in drawn.values():
        for p in fig.panels:
            atomic_write_bytes(out / f"{p.stem}.png", p.png)
    text = json.dumps(results.to_json(), indent=2, default=float, allow_nan=False) + "\n"
    atomic_write_text(out / RESULTS_FILE, text)
    save_images(out / IMAGES_FILE, images or {}, reference)
    atomic_write_text(out / "report.md", to_markdown(results, drawn))
    atomic_write_text(out / "report.html", to_html(results, drawn))
    return {"markdown": out / "report.md", "html": out / "report.html", "json": out / RESULTS_FILE}
