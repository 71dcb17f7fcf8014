"""Where a measurement ran: platform, processors, torch and its threads, the accelerator."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import torch


def machine_info() -> dict[str, Any]:
    """Platform, processor count, torch version and threads, and the CUDA device if any."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average_1_5_15_min": [round(v, 2) for v in os.getloadavg()],
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info
