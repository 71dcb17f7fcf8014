"""The design of `compare` as data: points placed by the levels their models declare, one-factor pairs found by
those levels alone (a model registered here, in this module, joins the design with no other change), a wanted
contrast without a pair reported not judged, and the attribution table built and rendered from its effects."""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from elbolab.bounds import Bound, Estimator
from elbolab.data.base import ImageData
from elbolab.errors import ConfigError
from elbolab.evaluate.run import Measurement
from elbolab.experiments import design as D
from elbolab.experiments.attribution import (
    CLAIMS,
    OUTCOMES,
    Attribution,
    Cell,
    PairEvidence,
    Row,
    attribution,
    fold_tables,
)
from elbolab.model import DECODER, Capabilities, DesignLevels, Encoding, GenerativeModel
from elbolab.records import BoundSummary, Effect, Information, Resampled, SampleFigures, UnitSummary
from elbolab.registry import MODEL_KINDS
from elbolab.report.attribution import attribution_markdown, attribution_section

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- a small extra model, registered only here


@dataclass(frozen=True)
class TinyConfig:
    """The pixel model's settings: none but its declared steps (to place it at another level in a test)."""

    steps: int = 1

    @classmethod
    def sized_for(cls, side: int, device: str = "cpu") -> TinyConfig:
        return cls()


class Tiny(GenerativeModel):
    """Independent categorical pixels: the identity as a fixed one-step encoder onto a latent of x's size, the
    categorical as its prior and an exact decoder, so the ELBO is log p(x) itself."""

    kind = "tiny"
    objective = "ELBO"

    def __init__(self, config: TinyConfig, shape: tuple[int, int, int], levels: int) -> None:
        super().__init__(config, shape, levels)
        self.logits = nn.Parameter(torch.zeros(self.dims, levels))

    @property
    def capabilities(self) -> Capabilities:
        steps = self.config.steps
        return Capabilities(
            samplers=(DECODER,),
            max_steps=1,
            sample_options=(),
            estimators=("exact",),
            default_estimator=Estimator("exact"),
            encoding=Encoding(0, 0),
            design=DesignLevels("fixed", steps, 1.0, steps, "ELBO"),
        )

    def _elbo(self, x: Tensor, estimator: Estimator, generator: torch.Generator | None) -> Bound:
        """−log p(x) = −Σ_i log softmax(θ_i)[x_i]."""
        k = self.to_levels(x).flatten(1).long()
        log_p = torch.log_softmax(self.logits, -1).gather(1, k.T).T
        return Bound({"prior": -log_p.sum(1)}, self.dims)

    def loss(self, x: Tensor, step: int = 0, total_steps: int | None = None) -> Tensor:
        return self._elbo(x, Estimator("exact"), None).total

    def _sample(self, n: int, generator: torch.Generator | None, sampler: Any, steps: Any, **options: Any) -> Tensor:
        probs = torch.softmax(self.logits, -1)
        k = torch.multinomial(probs, n, replacement=True, generator=generator).T
        return k.reshape(n, *self.shape).to(torch.uint8)

    def encode(self, x: Tensor) -> Tensor:
        return x

    def decode(self, z: Tensor) -> Tensor:
        return self.to_levels(z)

    def information(self, data: ImageData, n: int = 1000, generator: torch.Generator | None = None) -> Information:
        return Information()


@pytest.fixture
def tiny_registered(monkeypatch):
    """The registry with the tiny model's one line added."""
    monkeypatch.setitem(MODEL_KINDS, "tiny", (__name__, "TinyConfig", "Tiny"))


@pytest.fixture
def only_tiny(monkeypatch, tiny_registered):
    """A registry holding the tiny model alone."""
    for kind in [k for k in MODEL_KINDS if k != "tiny"]:
        monkeypatch.delitem(MODEL_KINDS, kind)


# ---------------------------------------------------------------- points and pairs


def levels(encoder="learned", steps=1, fraction=0.25, objective="ELBO") -> DesignLevels:
    return DesignLevels(encoder, steps, fraction, steps, objective)


def synthetic(points: dict[str, tuple[DesignLevels, float]], name: str = "full") -> D.Design:
    """A design of points of the tiny kind whose levels are given, not built."""
    design_points = tuple(D.DesignPoint(n, "tiny", {}, budget) for n, (_, budget) in points.items())
    return D.place(name, design_points, lambda p: points[p.name][0])


def pairs_of(design: D.Design, contrast: str) -> list[tuple[str, str] | None]:
    return [p.pair for p in design.pairings if p.contrast == contrast]


def test_levels_read_as_factors():
    assert D.profile(levels("fixed", None, 1.0, "weighted")) == {
        "encoder": "fixed",
        "latent": "full",
        "steps": "∞",
        "objective": "weighted",
    }
    assert D.level(DesignLevels("learned", 1, 2.0, 4, "ELBO"), "steps") == "1/4"
    assert D.differing(levels(), levels(fraction=0.5)) == ()  # both bottlenecks: the same level
    assert D.differing(levels(), levels("fixed", 3, 1.0)) == ("encoder", "latent", "steps")


def test_pairs_are_found_by_levels_alone(tiny_registered):
    design = synthetic(
        {
            "small": (levels(), 1.0),
            "wide": (levels(fraction=1.0), 1.0),
            "noised": (levels("fixed", 1, 1.0), 1.0),
            "chain": (levels("fixed", None, 1.0), 1.0),
            "deep": (levels(steps=4), 1.0),
            "chain-simple": (levels("fixed", None, 1.0, "weighted"), 0.5),
            "chain-short": (levels("fixed", None, 1.0), 0.5),
            "learned-chain": (levels("learned", None, 1.0), 1.0),
            "merged": (levels("learned, then fixed", 11, 0.25, "stages"), 1.0),
        }
    )
    found = D.one_factor_pairs(design.placed)
    assert ("small", "wide") in found["latent"] and ("small", "noised") not in found["latent"]
    assert ("chain", "chain-short") not in found["objective"]  # the same levels: no pair
    assert ("chain", "chain-simple") not in found["objective"]  # another budget: no pair
    assert pairs_of(design, "latent") == [("small", "wide")]
    assert pairs_of(design, "encoder") == [("wide", "noised")]
    assert pairs_of(design, "steps") == [("noised", "chain")]
    assert pairs_of(design, "depth") == [("small", "deep"), ("wide", "learned-chain")]
    assert pairs_of(design, "encoder-many") == [("learned-chain", "chain")]
    assert pairs_of(design, "objective") == [("chain-short", "chain-simple")]
    # a merged contrast: the first end of the design at the merged model's budget
    assert pairs_of(design, "merged-learned") == [("small", "merged")]
    assert pairs_of(design, "merged-fixed") == [("chain", "merged")]
    assert pairs_of(design, "ends") == [("small", "chain")] and design.pair("ends") == ("small", "chain")
    steps = next(p for p in design.pairings if p.contrast == "steps")
    assert steps.switch == ("1", "∞") and steps.differs == ("steps",) and steps.judged


def test_the_core_design_leaves_out_the_full_contrasts(tiny_registered):
    points = {"learned-chain": (levels("learned", None, 1.0), 1.0), "chain": (levels("fixed", None, 1.0), 1.0)}
    assert pairs_of(synthetic(points, "full"), "encoder-many") == [("learned-chain", "chain")]
    assert pairs_of(synthetic(points, "core"), "encoder-many") == []


def test_a_missing_pair_is_not_judged(tiny_registered):
    design = synthetic({"small": (levels(), 1.0), "chain": (levels("fixed", None, 1.0), 1.0)})
    latent = [p for p in design.pairings if p.contrast == "latent"]
    assert len(latent) == 1 and not latent[0].judged and latent[0].pair is None
    assert latent[0].why_not == "not judged: no registered pair differs in latent alone (encoder learned, steps 1)"
    merged = next(p for p in design.pairings if p.contrast == "merged-fixed")
    assert merged.why_not.startswith("not judged: no registered pair has encoder fixed")
    # every wanted contrast is reported, judged or not
    assert {p.contrast for p in design.pairings} == {w.name for w in D.WANTED}


def test_a_registered_model_joins_the_design_by_its_declared_levels(tiny_registered):
    design = D.placed_for("core", (1, 8, 8), 17)
    tiny = design.point("tiny")
    assert tiny.point.kind == "tiny" and tiny.point.changes == {}
    assert D.profile(tiny.levels) == {"encoder": "fixed", "latent": "full", "steps": "1", "objective": "ELBO"}
    chains = [p.point.name for p in design.placed if D.profile(p.levels)["steps"] == "∞" and p.point.budget == 1]
    chains = [n for n in chains if D.differing(design.point(n).levels, tiny.levels) == ("steps",)]
    assert chains, "the registry's continuous-time chain trained on its ELBO should pair with the tiny model"
    assert ("tiny", chains[0]) in pairs_of(design, "steps")


def test_points_of_unregistered_kinds_or_refused_changes_are_absent(only_tiny):
    points = (
        D.DesignPoint("tiny", "tiny"),
        D.DesignPoint("deep-tiny", "tiny", {"steps": 4}),
        D.DesignPoint("gone", "no-such-kind"),
        D.DesignPoint("bad", "tiny", {"depth": 3}),
    )
    design = D.place("core", points, lambda p: D.declared_levels(p, (1, 8, 8), 17))
    assert [p.point.name for p in design.placed] == ["tiny", "deep-tiny"]
    why = dict(design.absent)
    assert why["gone"] == "no model kind 'no-such-kind' is registered"
    assert "model.depth" in why["bad"]
    assert all(not p.judged for p in design.pairings if p.contrast != "steps")
    steps = next(p for p in design.pairings if p.contrast == "steps")
    assert steps.pair == ("tiny", "deep-tiny") and steps.switch == ("1", "4")


def test_only_tiny_registered_places_it_and_judges_nothing_else(only_tiny):
    design = D.placed_for("core", (1, 8, 8), 17)
    assert [p.point.name for p in design.placed] == ["tiny"]
    assert {name for name, _ in design.absent} >= {"vae-full", "diffusion-T1"}
    assert all(not p.judged and p.why_not.startswith("not judged: ") for p in design.pairings)


def test_bad_points_and_designs_are_one_line_errors():
    with pytest.raises(ConfigError, match="DesignPoint.budget"):
        D.DesignPoint("x", "tiny", budget=0)
    with pytest.raises(ConfigError, match="--design"):
        D.design_points("huge")
    with pytest.raises(ConfigError, match="unknown factors"):
        D.Wanted("w", "w", "size", {}, {})
    from elbolab.experiments.compare import CompareConfig

    with pytest.raises(ConfigError, match="--design='huge'"):
        CompareConfig(design="huge")


def test_compare_refuses_an_unknown_design_in_one_line(run_cli, tmp_path):
    code, _, err = run_cli("compare", "--out", tmp_path / "c", "--design", "huge", "--quick", "--quiet")
    assert code == 1 and err.startswith("error:") and "--design" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_the_design_round_trips_through_json(tiny_registered):
    design = synthetic({"small": (levels(), 1.0), "wide": (levels(fraction=1.0), 1.0)})
    again = D.Design.from_json(json.loads(json.dumps(design.to_json())))
    assert again == design


# ---------------------------------------------------------------- the attribution table


def bound(per_image: np.ndarray) -> BoundSummary:
    unit = UnitSummary(float(per_image.mean()), 0.01, {}, {})
    return BoundSummary(unit, unit, True, len(per_image), "exact", per_example_bpd=tuple(per_image.tolist()))


def resampled(value: float, sd: float, n: int = 200) -> Resampled:
    return Resampled(value, tuple(value + sd * RNG.standard_normal(n)))


def measurement(per_image: np.ndarray, fd: float) -> Measurement:
    sharpness = resampled(1.0, 0.02)
    samples = SampleFigures(200, 200, sharpness, sharpness, fd=resampled(fd, 0.2))
    return Measurement("tiny", "ELBO", 1, bound=bound(per_image), samples=samples)


def test_the_bound_cell_is_the_paired_difference_and_its_claim_decides():
    base = 1.5 + 0.3 * RNG.standard_normal(200)
    a = measurement(base, fd=10.0)
    b = measurement(base + 0.25 + 0.01 * RNG.standard_normal(200), fd=6.0)
    pairing = D.Pairing("objective", "objective", "objective", ("a", "b"), ("ELBO", "weighted"), ("objective",))
    design = D.Design("core", (), (), (pairing,))
    table = attribution(design, {("a", "b"): PairEvidence(a, b)})
    cell = table.cell("objective", "bound")
    assert cell is not None and cell.effect is not None
    assert math.isclose(cell.effect.value, 0.25, abs_tol=0.005)
    assert cell.effect.low < 0.25 < cell.effect.high and cell.effect.high - cell.effect.low < 0.01
    assert cell.verdict == "supported" and cell.claim == CLAIMS[("objective", "bound")].text
    fd = table.cell("objective", "fd")
    assert fd is not None and fd.effect is not None and math.isclose(fd.effect.value, -4.0)
    assert fd.verdict == "supported"  # L_simple's lower FD, as claimed
    time = table.cell("objective", "time")
    assert time is not None and time.effect is None and time.why_not
    reversed_table = attribution(design, {("a", "b"): PairEvidence(b, a)})
    assert reversed_table.cell("objective", "bound").verdict == "not supported"


def synthetic_effect(value: float, half: float = 0.1) -> Effect:
    return Effect("x b − a", value, value - half, value + half, "synthetic", 0.0, 1, half)


def synthetic_table(tiny_design: D.Design) -> Attribution:
    rows = []
    for i, p in enumerate(tiny_design.pairings):
        cells = tuple(
            Cell(o.name, synthetic_effect(0.5 + i), "a claim" if j == 0 else None, "supported" if j == 0 else None)
            for j, o in enumerate(OUTCOMES)
        )
        rows.append(Row(p, cells if p.judged else ()))
    return Attribution(OUTCOMES, tuple(rows))


def test_the_attribution_table_renders_every_factor_row(tiny_registered):
    design = synthetic(
        {
            "small": (levels(), 1.0),
            "wide": (levels(fraction=1.0), 1.0),
            "noised": (levels("fixed", 1, 1.0), 1.0),
            "chain": (levels("fixed", None, 1.0), 1.0),
        }
    )
    table = synthetic_table(design)
    page = attribution_section(table, design)
    for factor in D.FACTORS:
        assert f'<tr data-factor="{factor}">' in page
    assert '<tr data-factor="merged">' in page and '<tr data-factor="ends">' in page
    assert page.count("<tr data-factor=") == len(design.pairings)
    assert "small → wide (bottleneck → full)" in page
    assert "not judged: no registered pair differs in steps alone (encoder learned)" in page
    assert 'class="badge supported"' in page and "<script" not in page
    for name in ("small", "wide", "noised", "chain"):
        assert f'<tr data-point="{name}">' in page
    assert attribution_markdown(table, design)[0] == "## What each design choice does"
    again = Attribution.from_json(json.loads(json.dumps(table.to_json())))
    assert again == table


def test_seeds_fold_each_cell(tiny_registered):
    design = synthetic({"small": (levels(), 1.0), "wide": (levels(fraction=1.0), 1.0)})
    one, two = synthetic_table(design), synthetic_table(design)
    first = next(r for r in one.rows if r.pairing.judged)
    shifted = Row(first.pairing, tuple(Cell(c.outcome, synthetic_effect(1.5), c.claim, c.verdict) for c in first.cells))
    two = Attribution(OUTCOMES, tuple(shifted if r is first else r for r in one.rows))
    folded = fold_tables([one, two]).cell("latent", "bound")
    assert folded is not None and folded.effect is not None
    assert math.isclose(folded.effect.value, 1.0) and "folded over 2 seeds" in folded.effect.test


# ---------------------------------------------------------------- no kind names in the job or the report

SRC = Path(__file__).resolve().parents[1] / "src" / "elbolab"
KIND_NAMES = {"vae", "hvae", "diffusion", "latent-diffusion"}


def kind_strings(tree: ast.AST) -> list[ast.Constant]:
    """String constants naming a model kind, outside docstrings and outside a `DesignPoint`'s kind (the design
    table says which registered kind trains each point; nothing selects by it)."""
    allowed: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            allowed.add(id(body[0].value))  # a docstring
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DesignPoint":
            args = [*node.args[1:2], *(k.value for k in node.keywords if k.arg == "kind")]
            allowed |= {id(a) for a in args}
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in KIND_NAMES and id(n) not in allowed
    ]


def test_no_kind_name_is_read_in_the_job_or_the_report():
    found = [
        f"{path.relative_to(SRC)}:{n.lineno} {n.value!r}"
        for package in ("experiments", "report")
        for path in sorted((SRC / package).rglob("*.py"))
        for n in kind_strings(ast.parse(path.read_text()))
    ]
    assert not found, found


def test_the_kind_name_check_sees_a_key():
    tree = ast.parse('"""about the vae"""\nx = loaded["vae"]\nok = DesignPoint("a", "vae")\ny = "diffusion" in m\n')
    assert [n.value for n in kind_strings(tree)] == ["vae", "diffusion"]
