"""Effects along the budget: every judged pair measured again at fractions of its training budget, from the
weights its runs kept there (`train.snapshots`), so that each verdict of the attribution table can be seen to
hold, or not, with less compute, without retraining.

At a budget point each side is measured for the outcomes that training changes and that cost little: the bound
(the model's default estimator on the same test images, paired over them) and the quality samples' figures
(Fréchet distance, precision, recall, sharpness). Sampling time is a property of the network, not of its
training, and the interpolation paths' inversions cost more than the rest together: both are judged at the
whole budget only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from elbolab.data.base import ImageData
from elbolab.evaluate.features import FeatureExtractor
from elbolab.evaluate.run import EvalConfig, Log, Measurement, measure
from elbolab.experiments.attribution import Attribution, PairEvidence, attribution
from elbolab.experiments.design import Design
from elbolab.train.run import load_snapshot, snapshot_path

#: the fractions of the budget `compare` judges its pairs at, besides the whole
BUDGET_POINTS = (0.25, 0.5)
#: what is measured at a budget point (see the module's text)
ALONG_PARTS = ("likelihood", "quality")


def along_config(cfg: EvalConfig) -> EvalConfig:
    """The evaluation at a budget point: the bound by the model's default estimator (no pilot pass, no draws
    chosen for a precision) and the quality samples, on the same images and seeds as the whole budget's."""
    return replace(cfg, parts=ALONG_PARTS, estimator=None, proposal=None, bpd_se=None, iwae_k=0)


def judged_points(design: Design) -> list[str]:
    """The models of the design's judged pairs, each once, in the design's order."""
    names = [n for p in design.pairings if p.judged and p.pair for n in p.pair]
    return list(dict.fromkeys(names))


def snapshot_measurements(
    run_dir: Path,
    fractions: tuple[float, ...],
    cfg: EvalConfig,
    test: ImageData,
    features: FeatureExtractor,
    log: Log,
    device: str = "auto",
) -> dict[float, Measurement]:
    """A run's measurement at each fraction of its budget where it kept a snapshot."""
    found = {}
    for f in fractions:
        if snapshot_path(run_dir, f).is_file():
            model, _ = load_snapshot(run_dir, f, device)
            found[f], _ = measure(model, test, along_config(cfg), features, log)
    return found


def table_at(design: Design, measured: Mapping[str, Measurement]) -> Attribution:
    """The attribution table of one budget point: a row per pairing, judged where both sides were measured."""
    evidence = {
        p.pair: PairEvidence(measured[p.pair[0]], measured[p.pair[1]])
        for p in design.pairings
        if p.pair and all(n in measured for n in p.pair)
    }
    return attribution(design, evidence)


def budget_tables(
    fractions: tuple[float, ...], design: Design, along: Mapping[str, Mapping[float, Measurement]]
) -> dict[float, Attribution]:
    """The table at each budget point, from each model's measurements there (`snapshot_measurements`)."""
    return {f: table_at(design, {name: m[f] for name, m in along.items() if f in m}) for f in fractions}
