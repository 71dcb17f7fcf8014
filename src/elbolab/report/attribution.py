"""The top of the report: the attribution table (factor × outcome, each cell the effect of switching that factor
with its 95% interval and, where the essay makes a claim, the verdict) and the design figure (every model of the
design against its level of each factor), as self-contained HTML (CSS only, no scripts) and as Markdown.
"""

from __future__ import annotations

import math
from itertools import groupby

from elbolab.experiments.attribution import Attribution, Cell, Row
from elbolab.experiments.design import FACTORS, Design, profile
from elbolab.report.markup import badge, esc, fraction_text, num, power_text

#: the styles of both sections, added to the report's own; the table's box is `held` (positioned) so that the
#: badges' screen-reader text, positioned absolutely, scrolls with it instead of widening the page
CSS = """
.scroll.held{position:relative}
table.attribution td,table.attribution th{white-space:normal;text-align:left;min-width:7rem}
table.attribution th[scope=row]{background:#f7f7f7;font-weight:700}
table.attribution .pair{font-size:.82rem;color:#444}
table.attribution .cell{font-variant-numeric:tabular-nums}
table.attribution .claim,table.attribution .along,table.attribution .power{display:block;font-size:.78rem;
color:#555;margin-top:.2rem}
table.attribution .along[data-stability="changes with budget"]{color:#8a3b00;font-weight:600}
table.attribution td.not-judged{color:#555;font-style:italic}
table.design td{text-align:center}
table.design td.level{font-size:.85rem}
table.design td.level[data-level="learned"],table.design td.level[data-level="bottleneck"],
table.design td.level[data-level="1"]{background:#e3eef9}
table.design td.level[data-level="fixed"],table.design td.level[data-level="full"],
table.design td.level[data-level="∞"]{background:#fbe7dc}
table.design td.level[data-level="learned, then fixed"]{background:#dcf2ea}
"""


def cell_text(c: Cell) -> str:
    """An effect as 'value [low, high]', or why there is none."""
    if c.effect is None:
        return f"– ({c.why_not})" if c.why_not else "–"
    e = c.effect
    low, high = (num(v) if math.isfinite(v) else "unknown" for v in (e.low, e.high))
    return f"{num(e.value)} [{low}, {high}]"


def pair_text(r: Row) -> str:
    """'a → b (level → level)', or the factors a merged pair differs in."""
    p = r.pairing
    if p.pair is None:
        return ""
    a, b = p.pair
    if p.factor not in FACTORS:
        return f"{a} → {b} (differ in {', '.join(p.differs)})"
    return f"{a} → {b} ({p.switch[0]} → {p.switch[1]})"


def along_text(c: Cell) -> str:
    """The cell's effects at the budget points and its verdict's stability, in one line ('' with none)."""
    if not c.along:
        return "judged at the whole budget only" if c.stability == "not tracked" else ""
    parts = []
    for b in c.along:
        value = cell_text(Cell(c.outcome, b.effect, why_not=b.why_not or "not measured at this point"))
        parts.append(f"{fraction_text(b.fraction)}: {value}{f' {b.verdict}' if b.verdict else ''}")
    tail = f" — {c.stability}" if c.stability else ""
    return f"along the budget: {'; '.join(parts)}{tail}"


def cell_html(c: Cell) -> str:
    """One cell: the effect, its verdict badge where a claim is made, the claim, the effects along the budget
    with the verdict's stability, and what the design could detect."""
    verdict = f" {badge(c.verdict)}" if c.verdict else ""
    claim = f'<span class="claim">claim: {esc(c.claim)}</span>' if c.claim else ""
    along = f'<span class="along" data-stability="{esc(c.stability or "")}">{esc(along_text(c))}</span>'
    power = f'<span class="power">{esc(power_text(c.power))}</span>' if c.power else ""
    return (
        f'<td class="cell" data-outcome="{esc(c.outcome)}">{esc(cell_text(c))}{verdict}{claim}'
        f"{along if c.along or c.stability else ''}{power}</td>"
    )


def row_html(r: Row, columns: int) -> str:
    """A pairing's cells, or one cell saying why it is not judged."""
    head = f'<td>{esc(r.pairing.title)}<div class="pair">{esc(pair_text(r))}</div></td>'
    if not r.pairing.judged:
        return f'{head}<td class="not-judged" colspan="{columns}">{esc(r.pairing.why_not)}</td>'
    return head + "".join(cell_html(c) for c in r.cells)


def attribution_html(table: Attribution) -> str:
    """The factor × outcome table: the rows of each factor together under its name."""
    head = "".join(f"<th scope=col>{esc(o.title)}</th>" for o in table.outcomes)
    body = []
    for factor, rows in groupby(table.rows, key=lambda r: r.pairing.factor):
        group = list(rows)
        for i, r in enumerate(group):
            name = f'<th scope=row rowspan="{len(group)}">{esc(factor)}</th>' if i == 0 else ""
            body.append(f'<tr data-factor="{esc(factor)}">{name}{row_html(r, len(table.outcomes))}</tr>')
    notes = "".join(f"<li><b>{esc(o.title)}</b>: {esc(o.effect)}</li>" for o in table.outcomes)
    return (
        '<div class="scroll held" tabindex="0"><table class="attribution"><thead><tr><th scope=col>factor</th>'
        f"<th scope=col>contrast (pair a → b)</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        f'<ul class="note">{notes}<li>Each cell: the effect of the switch a → b with its 95% interval.</li></ul>'
    )


def design_html(design: Design) -> str:
    """The design figure: one row per model, its level of each factor, its budget and the contrasts it serves;
    then the points that could not be built."""
    serves: dict[str, list[str]] = {}
    for p in design.pairings:
        for name in p.pair or ():
            serves.setdefault(name, []).append(p.contrast)
    head = "".join(f"<th scope=col>{esc(f)}</th>" for f in FACTORS)
    rows = []
    for placed in design.placed:
        levels = profile(placed.levels)
        cells = "".join(f'<td class="level" data-level="{esc(levels[f])}">{esc(levels[f])}</td>' for f in FACTORS)
        point = placed.point
        rows.append(
            f'<tr data-point="{esc(point.name)}"><th scope=row>{esc(point.name)}</th>{cells}'
            f"<td>{point.budget:g}</td><td>{esc(', '.join(serves.get(point.name, [])) or '–')}</td></tr>"
        )
    absent = "".join(f"<li><b>{esc(name)}</b>: {esc(why)}</li>" for name, why in design.absent)
    return (
        f'<div class="scroll" tabindex="0"><table class="design"><thead><tr><th scope=col>model</th>{head}'
        "<th scope=col>budget (× per model)</th><th scope=col>contrasts</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
        + (f'<p class="note">Not in this run:</p><ul class="note">{absent}</ul>' if absent else "")
    )


def attribution_section(table: Attribution, design: Design, along: str = "") -> str:
    """The report's first section: the attribution table, the design figure beside it, and `along` (the
    figure of the effects along the budget, as HTML) below."""
    return (
        '<section aria-labelledby="attribution-h"><h2 id="attribution-h">What each design choice does</h2>'
        f"{attribution_html(table)}"
        f'<figure class="fig" data-figure="design"><figcaption>The design ({esc(design.name)}): each model\'s '
        f"level of each factor</figcaption>{design_html(design)}</figure>{along}</section>"
    )


def md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def attribution_markdown(table: Attribution, design: Design) -> list[str]:
    """The same section as Markdown lines: the table (one line per pairing) and the design."""
    header = ["factor", "contrast (pair a → b)", *(o.title for o in table.outcomes)]
    lines = ["## What each design choice does", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in table.rows:
        cells = (
            [
                f"{cell_text(c)}{f' **{c.verdict}**' if c.verdict else ''}"
                + "".join(f" ({t})" for t in (along_text(c), power_text(c.power)) if t)
                for c in r.cells
            ]
            if r.pairing.judged
            else [r.pairing.why_not] + [""] * (len(table.outcomes) - 1)
        )
        first = [r.pairing.factor, f"{r.pairing.title} {pair_text(r)}".strip()]
        lines.append("| " + " | ".join(md_cell(c) for c in first + cells) + " |")
    lines += ["", f"**The design ({design.name})**", "", "| model | " + " | ".join(FACTORS) + " | budget |"]
    lines.append("|" + "---|" * (len(FACTORS) + 2))
    for placed in design.placed:
        levels = profile(placed.levels)
        cells = [placed.point.name, *(levels[f] for f in FACTORS), f"{placed.point.budget:g}"]
        lines.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    lines += [f"- not in this run: {name}: {why}" for name, why in design.absent]
    return [*lines, ""]
