"""The diffusion chain as one interface with two implementations: chosen once from the config, the bound and loss
unchanged from the single class it replaced (values pinned on a fixed seed), no config-string branches in the hot
paths, and one denoiser object carrying its parameterisation."""

import copy
import inspect
import re

import pytest
import torch

from elbolab.bounds import Estimator
from elbolab.diffusion import DiffusionConfig, DiffusionModel, GaussianDiffusion, Schedule
from elbolab.diffusion.chain import Chain, ContinuousChain, DiscreteChain
from elbolab.diffusion.forward import expand
from elbolab.diffusion.reverse import Denoiser
from elbolab.diffusion.schedule import alpha, sigma
from elbolab.errors import ConfigError
from elbolab.nets.unet import UNetConfig

#: −ELBO per example (nats) and the mean loss of four seeded models on three seeded digit-like images, computed
#: by the single-class GaussianDiffusion (main at b36d714) before the split into chains
PINNED = {
    "discrete-exact": (
        {"parameterisation": "v"},
        Estimator("exact"),
        [256.29627179268726, 255.41934638509753, 311.1396353822311],
        0.571861207485199,
    ),
    "discrete-mc": (
        {},
        Estimator("mc", 4, "stratified"),
        [665.1701184800917, 195.21545724546635, 215.4802207180853],
        1.2457245588302612,
    ),
    "continuous-mc": (
        {"time": "continuous", "schedule": "linear", "parameterisation": "x0"},
        Estimator("mc", 4, "stratified"),
        [45222.44421422581, 4774.66262772033, 4502.738104230788],
        25.16550636291504,
    ),
    "continuous-exact": (
        {"time": "continuous", "schedule": "linear"},
        Estimator("exact", steps=10),
        [400.8208938509001, 391.7087894817449, 470.4374438915454],
        1.3031419515609741,
    ),
}


def seeded_model(**overrides: object) -> DiffusionModel:
    """A tiny T = 20 model whose zero-initialised output layer is given seeded weights, so its bound reads the net."""
    torch.manual_seed(0)
    model = DiffusionModel(DiffusionConfig(T=20, unet=UNetConfig(preset="tiny"), **overrides), (1, 8, 8), 17)
    torch.nn.init.normal_(model.diffusion.net.out[-1].weight, std=0.05, generator=torch.Generator().manual_seed(1))
    return model


def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return torch.randint(0, 17, (3, 1, 8, 8), generator=g).double() / 8 - 1


@pytest.mark.parametrize("case", list(PINNED))
def test_bound_and_loss_equal_the_single_class_values(case):
    overrides, estimator, totals, loss = PINNED[case]
    chain = seeded_model(**overrides).diffusion
    with torch.no_grad():
        bound = chain.elbo(images(), estimator, generator=torch.Generator().manual_seed(3), clip=True)
        objective = chain.loss(images(), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(bound.total, torch.tensor(totals, dtype=torch.float64), rtol=1e-12, atol=0)
    assert objective.mean().item() == pytest.approx(loss, rel=1e-6)  # float32 objective


def test_the_chain_is_chosen_once_from_the_config():
    discrete, continuous = seeded_model().diffusion, seeded_model(time="continuous").diffusion
    assert type(discrete.chain) is DiscreteChain and type(continuous.chain) is ContinuousChain
    assert isinstance(discrete.chain, Chain) and discrete.chain.model is discrete
    assert discrete.default_estimator() == Estimator("mc", 16, "uniform")
    assert continuous.default_estimator() == Estimator("mc", 16, "stratified")
    assert (discrete.time_proposal.numel(), discrete.control_slopes.shape[0]) == (20, 20)
    assert (continuous.time_proposal.numel(), continuous.control_slopes.shape[0]) == (64, 0)
    on_steps = discrete.grid(4) * 20  # the T-step chain samples on its own steps, down to t = 1/T
    assert torch.equal(on_steps, on_steps.round()) and on_steps[[0, -2, -1]].tolist() == [20.0, 1.0, 0.0]
    torch.testing.assert_close(continuous.grid(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))


def test_a_copy_of_the_model_reads_its_own_parts():
    """deepcopy (the trainer's EMA and evaluation copies) rebinds the chain and its chosen draw to the copy."""
    model = seeded_model(time="continuous", loss="edm", parameterisation="edm").diffusion
    twin = copy.deepcopy(model)
    assert twin.chain.model is twin and twin.chain is not model.chain
    assert getattr(twin.chain.draw, "__self__", None) is twin
    assert getattr(twin.chain.objective, "__self__", None) is twin.chain


#: what a hot path must not branch on: the time axis, or any config string
BRANCHES = re.compile(r"self\.continuous|config\.time|cfg\.time|== \"|!= \"")


def hot_paths() -> dict[str, object]:
    """The loss, bound and sampling methods of the model and of both chains."""
    paths: dict[str, object] = {
        f"GaussianDiffusion.{name}": getattr(GaussianDiffusion, name)
        for name in ("loss", "elbo", "sample", "encode", "decode", "denoiser", "network", "grid")
    }
    for chain in (DiscreteChain, ContinuousChain):
        names = [
            n
            for n in ("loss", "elbo", "grid", "bound_itself", "simple", "weighted", "edm_weighted")
            if n in vars(chain)
        ]
        paths.update({f"{chain.__name__}.{name}": vars(chain)[name] for name in names})
    paths["Chain.elbo"] = Chain.elbo
    return paths


def test_no_config_string_branches_in_the_hot_paths():
    found = {name: BRANCHES.findall(inspect.getsource(fn)) for name, fn in hot_paths().items()}
    assert {name: hits for name, hits in found.items() if hits} == {}
    assert "DiscreteChain.loss" in found and "ContinuousChain.loss" in found  # the search reaches both
    assert BRANCHES.search('if self.continuous:\n    x = cfg.loss == "vlb"')  # and the pattern can match


def test_the_denoiser_gives_x0_and_eps_consistent_with_x_t():
    """x_t = α_t x̂_0 + σ_t ε̂ whatever the parameterisation, and the clipped denoiser's x̂_0 is the clamp of it."""
    schedule = Schedule("cosine", 50)
    g = torch.Generator().manual_seed(0)
    x_t, out = torch.randn(2, 6, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0.3, 0.9], dtype=torch.float64).repeat(3)
    log_snr = schedule.log_snr(t)
    for parameterisation in ("eps", "x0", "v"):
        denoiser = Denoiser(lambda x, s: 3 * out, parameterisation)
        d = denoiser.denoise(x_t, t, schedule)
        torch.testing.assert_close(
            expand(alpha(log_snr), x_t) * d.x0_hat + expand(sigma(log_snr), x_t) * d.eps_hat, x_t
        )
        clipped = denoiser.clipped(schedule)
        assert clipped.parameterisation == "x0"
        torch.testing.assert_close(clipped.x0_hat(x_t, t, schedule), d.x0_hat.clamp(-1, 1))
        assert d.x0_hat.abs().max() > 1  # the clip does something here


def test_a_denoiser_with_an_unknown_parameterisation_is_refused():
    with pytest.raises(ConfigError, match="unknown parameterisation 'score'; choose one of eps, x0, v"):
        Denoiser(lambda x, t: x, "score")


def test_the_model_hands_out_its_parameterisation():
    assert seeded_model(parameterisation="v").diffusion.denoiser().parameterisation == "v"
    assert seeded_model(parameterisation="edm").diffusion.denoiser().parameterisation == "x0"  # EDM's D is x̂_0
    assert seeded_model().diffusion.denoiser(clip=True).parameterisation == "x0"
