"""GPU utilisation and memory from NVML, where it is available (nvidia-ml-py installed and a
driver present); an empty answer otherwise. Never imports torch."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    utilisation: int  # percent
    memory_used_mb: int
    memory_total_mb: int


@lru_cache(maxsize=1)
def _nvml():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # no package, no driver, no GPU: the dashboard just shows "-"
        return None


def gpu_status() -> dict[int, GpuInfo]:
    """{physical GPU index: utilisation and memory}."""
    nvml = _nvml()
    if nvml is None:
        return {}
    result = {}
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            name = nvml.nvmlDeviceGetName(handle)
            result[index] = GpuInfo(index, name.decode() if isinstance(name, bytes) else name,
                                    int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                                    int(memory.used // 2**20), int(memory.total // 2**20))
    except Exception:
        return {}
    return result
