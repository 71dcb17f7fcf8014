"""The exponential moving average of the weights: its closed form, buffers copied, its state round trip."""

import torch
from torch import nn

from elbolab.train.ema import EMA


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([1.0, -2.0]))
        self.wide = nn.Parameter(torch.tensor([0.5], dtype=torch.float64))
        self.register_buffer("scale", torch.tensor([3.0]))  # a float buffer: copied, not averaged
        self.register_buffer("count", torch.tensor([7]))  # an integer buffer: copied


def test_two_updates_follow_the_warm_up_closed_form_and_buffers_are_copied():
    model, decay = Small(), 0.999
    ema = EMA(model, decay)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    shadow = {k: v.double().clone() for k, v in start.items()}
    for n, (dw, dh) in enumerate([(0.25, -1.0), (-0.5, 2.0)], start=1):
        with torch.no_grad():
            model.weight += dw
            model.wide += dh
            model.scale.fill_(10.0 * n)
            model.count.fill_(100 + n)
        ema.update(model)
        d = min(decay, (1 + n) / (10 + n))  # 2/11, then 3/12
        for k in ("weight", "wide"):
            shadow[k] = d * shadow[k] + (1 - d) * model.state_dict()[k].double()
    torch.testing.assert_close(ema.shadow["weight"], shadow["weight"].float())
    torch.testing.assert_close(ema.shadow["wide"], shadow["wide"], rtol=1e-12, atol=0)
    assert ema.shadow["wide"].dtype == torch.float64 and ema.shadow["count"].dtype == torch.int64
    assert ema.shadow["scale"].item() == 20.0 and ema.shadow["count"].item() == 102
    assert ema.updates == 2


def test_the_state_round_trips_and_copy_to_loads_the_averages():
    model = Small()
    ema = EMA(model, 0.9)
    with torch.no_grad():
        model.weight.mul_(3)
    ema.update(model)
    other = EMA(Small(), 0.9)
    other.load_tensors(ema.state_tensors(), ema.updates)
    assert other.updates == 1
    for k, v in ema.shadow.items():
        assert torch.equal(other.shadow[k], v)
    target = Small()
    ema.copy_to(target)
    assert torch.equal(target.weight.detach(), ema.shadow["weight"])
