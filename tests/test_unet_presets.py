"""UNet presets: the lean UNet's parameters and FLOPs, per-level blocks."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from elbolab.errors import ConfigError
from elbolab.nets.unet import UNet, UNetConfig


def _params_and_flops(preset: str, side: int = 28) -> tuple[int, int]:
    net = UNet(1, 1, UNetConfig(preset=preset), image_size=side)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.randn(1, 1, side, side), torch.rand(1))
    return sum(p.numel() for p in net.parameters()), counter.get_total_flops()


def test_the_lean_unet_has_smalls_parameters_at_well_under_its_flops():
    small_p, small_f = _params_and_flops("small")
    lean_p, lean_f = _params_and_flops("lean")
    assert abs(lean_p / small_p - 1) < 0.03
    assert lean_f < 0.6 * small_f


def test_level_blocks_set_the_blocks_of_each_level_and_are_checked():
    uniform = UNet(1, 1, UNetConfig(preset="tiny"), image_size=8)
    deeper = UNet(1, 1, UNetConfig(preset="tiny", level_blocks=(1, 3)), image_size=8)
    assert [len(level.blocks) for level in deeper.down] == [1, 3]
    assert [len(level.blocks) for level in deeper.up] == [4, 2]
    assert sum(p.numel() for p in deeper.parameters()) > sum(p.numel() for p in uniform.parameters())
    assert deeper(torch.randn(2, 1, 8, 8), torch.rand(2)).shape == (2, 1, 8, 8)
    with pytest.raises(ConfigError, match="one positive count per level"):
        UNetConfig(preset="tiny", level_blocks=(1, 2, 2)).spec()
