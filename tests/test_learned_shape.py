"""The learned schedule shape (VDM's monotone network between the end points): it runs from γ_min to γ_max,
increases, its γ′ is the derivative of its γ; with the optimal denoiser the continuous bound is the closed form
the end points leave, whatever the shape; the shape and end points are trained on the bound's gradient and on
no other, whichever objective the network trains on; a run with it trains, saves, loads and reports."""

import math

import pytest
import torch
from conftest import eval_json
from test_cli_continuous import TINY
from test_cli_diffusion import _one_thread  # noqa: F401  (one torch thread, autouse)
from test_continuous_diffusion import closed_form_bound, oracle_bound
from test_diffusion_bound import gaussian_data

from elbolab.diffusion import DiffusionConfig, DiffusionModel
from elbolab.diffusion.learned_schedule import LearnedSchedule
from elbolab.errors import ConfigError
from elbolab.nets.unet import UNetConfig


def bent(lo: float = -8.0, hi: float = 6.0) -> LearnedSchedule:
    """A learned shape pushed well away from linear (larger c, shifted e), as training might leave it."""
    schedule = LearnedSchedule("learned", 100, lo, hi)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        net = schedule.shape_net
        net.c.copy_(5 * torch.rand(net.c.shape, generator=g, dtype=torch.float64))
        net.e.copy_(0.4 * net.d.abs() + 0.3 * torch.randn(net.e.shape, generator=g, dtype=torch.float64))
        net.a.fill_(0.3)  # most of the rise near t = 0.3
    return schedule


def test_the_learned_shape_runs_between_the_end_points_increasing_with_its_own_derivative():
    schedule = bent()
    t = torch.linspace(0, 1, 2001, dtype=torch.float64)
    gamma = schedule.gamma(t).detach()
    assert gamma[0].item() == pytest.approx(-8.0, abs=1e-12) and gamma[-1].item() == pytest.approx(6.0, abs=1e-12)
    assert (gamma[1:] > gamma[:-1]).all()
    line = -8.0 + 14.0 * t
    assert (gamma - line).abs().max() > 0.5  # really not linear
    tt = t[1:-1].clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(schedule.gamma(tt).sum(), tt)
    torch.testing.assert_close(schedule.gamma_prime(t[1:-1]).detach(), auto, rtol=1e-10, atol=1e-10)
    assert (schedule.gamma_prime(t).detach() > 0).all()


def test_with_the_optimal_denoiser_the_bound_is_what_the_end_points_leave_whatever_the_shape():
    x = gaussian_data(6)
    schedule = bent()
    torch.testing.assert_close(oracle_bound(schedule, x), closed_form_bound(schedule, x), rtol=0, atol=1e-6)
    torch.testing.assert_close(
        oracle_bound(schedule, x), oracle_bound(LearnedSchedule("linear", 100, -8.0, 6.0), x), rtol=0, atol=1e-6
    )


def _model(loss: str) -> DiffusionModel:
    torch.manual_seed(0)
    return DiffusionModel(
        DiffusionConfig(unet=UNetConfig(preset="tiny"), time="continuous", T=50, loss=loss, schedule="learned"),
        (1, 8, 8),
        17,
    )


def _digits(n: int) -> torch.Tensor:
    from elbolab.data import load_data

    return load_data("digits", "test").model_range(slice(0, n))


@pytest.mark.parametrize("loss", ["simple", "sigmoid"])
def test_the_schedule_gets_the_bounds_gradient_and_no_other_whatever_the_network_trains_on(loss):
    """The objective's own gradient for the schedule (through z_t) is replaced by the bound's: the gradient the
    schedule receives from `loss` equals the gradient of the vlb model's loss (the bound) at the same draws."""
    x = _digits(8).double()
    model, bound_model = _model(loss), _model("vlb")
    bound_model.load_state_dict(model.state_dict())
    model.loss(x, generator=torch.Generator().manual_seed(2)).mean().backward()
    bound_model.loss(x, generator=torch.Generator().manual_seed(2)).mean().backward()
    named = dict(bound_model.diffusion.schedule.named_parameters())
    assert set(named) == {"ends", "shape_net.a", "shape_net.c", "shape_net.d", "shape_net.e"}
    for name, p in model.diffusion.schedule.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        torch.testing.assert_close(p.grad, named[name].grad, rtol=1e-5, atol=1e-9)
    # while the network's gradient is its own objective's, not the bound's
    grads = [
        torch.cat([p.grad.flatten() for p in m.diffusion.net.parameters() if p.grad is not None])
        for m in (model, bound_model)
    ]
    assert grads[0].abs().sum() > 0 and not torch.allclose(grads[0], grads[1])


def test_a_learned_shape_is_for_continuous_time_with_learned_end_points():
    with pytest.raises(ConfigError, match="continuous time"):
        DiffusionConfig(schedule="learned")
    with pytest.raises(ConfigError, match="learn_endpoints"):
        DiffusionConfig(time="continuous", schedule="learned", learn_endpoints=False)


def test_a_run_with_a_learned_shape_trains_saves_and_reports(run_cli, tmp_path):
    run = tmp_path / "learned"
    code, _, err = run_cli(
        "train",
        "diffusion",
        "--data",
        "digits",
        "--out",
        run,
        "--steps",
        "30",
        "--quiet",
        *TINY,
        "--set",
        "model.schedule=learned",
        "--set",
        "model.loss=vlb",
    )
    assert code == 0, err
    from elbolab.train.run import load_run

    _, model = load_run(run, device="cpu")
    start = LearnedSchedule("learned", 100, -1.0, 5.0).shape_net
    assert not torch.equal(model.diffusion.schedule.shape_net.c, start.c)  # it learned, and was saved so
    assert "learned γ(t)" in model.objective
    result = eval_json(run_cli, run, 32)
    assert "learned γ(t)" in result["objective"]
    assert 0 < result["bpd"]["total"] < math.log2(17), result["bpd"]  # below the 17 levels' uniform 4.09 bits/dim
