"""The speed–quality frontier: every sampler a model declares, at network evaluations from 1 to 100.

A sampler's cost is its number of network evaluations (NFE), not its number of steps: Heun's k steps take 2k − 1
(`samplers.nfe`). Each sampler is swept at the steps whose NFE come nearest to a target grid from below, so every
sampler is placed on the same NFE axis, each point with its bootstrap interval (`steps_sweep`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from elbolab.diffusion.samplers import nfe
from elbolab.evaluate.features import FeatureExtractor
from elbolab.evaluate.steps import StepsPoint, steps_sweep
from elbolab.model import Capabilities, GenerativeModel

#: the NFE targets of the full frontier (a doubling grid from 1 to 100)
FRONTIER_NFE = (1, 2, 4, 8, 16, 32, 64, 100)
#: the samplers `compare` sweeps by default (its quality sampler's point is reused from the quality samples)
SWEPT = ("ancestral", "ddim")


def steps_at(sampler: str, targets: Sequence[int], caps: Capabilities) -> tuple[int, ...]:
    """For each NFE target, the most steps k the model takes with nfe(sampler, k) ≤ target (ascending, distinct)."""
    found = set()
    for target in targets:
        k = max((k for k in range(1, target + 1) if nfe(sampler, k) <= target), default=None)
        if k is not None and caps.steps_for((k,)):
            found.add(k)
    return tuple(sorted(found))


def point_nfe(point: StepsPoint) -> int:
    """The network evaluations behind a steps point (a one-pass model's: 1)."""
    return 1 if point.sampler == "decoder" else nfe(point.sampler, point.steps)


def frontier_sweep(
    model: GenerativeModel,
    reference: Tensor,
    levels: int,
    features: FeatureExtractor | None,
    *,
    targets: Sequence[int] = FRONTIER_NFE,
    samplers: Sequence[str] | None = None,
    n: int = 256,
    replicates: int = 200,
    seed: int = 0,
) -> tuple[StepsPoint, ...]:
    """`steps_sweep` of each of `samplers` the model declares (None: every one) at the steps that reach the NFE
    `targets` (`steps_at`); a one-pass model: its decoder, once."""
    caps = model.capabilities
    if caps.one_pass:
        return steps_sweep(model, reference, levels, features, steps=(1,), n=n, replicates=replicates, seed=seed)
    wanted = caps.samplers if samplers is None else tuple(s for s in samplers if s in caps.samplers)
    points: list[StepsPoint] = []
    for sampler in wanted:
        points += steps_sweep(
            model,
            reference,
            levels,
            features,
            steps=steps_at(sampler, targets, caps),
            samplers=(sampler,),
            n=n,
            replicates=replicates,
            seed=seed,
        )
    return tuple(points)


def with_points(points: Sequence[StepsPoint], extra: Sequence[StepsPoint]) -> tuple[StepsPoint, ...]:
    """`points` and those of `extra` at a (model, sampler, steps) not among them (measured already, reused)."""
    seen = {(p.model, p.sampler, p.steps) for p in points}
    return (*points, *(p for p in extra if (p.model, p.sampler, p.steps) not in seen))
