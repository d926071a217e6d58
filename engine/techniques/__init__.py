"""Inpainting techniques, one file each. Every module in this package other than the
registry registers its technique on import; they are all imported here, in a fixed order
(vanilla first as the baseline, then alphabetical), so adding a technique is adding a file."""

import importlib
import pkgutil

from engine.techniques.registry import (
    Cost,
    StepCallback,
    Technique,
    TechniqueJob,
    TechniqueOutput,
    estimate_unet_calls,
    get_technique,
    register,
    technique_names,
)

_modules = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "registry" and not m.name.startswith("_"))
for _name in sorted(_modules, key=lambda name: (name != "vanilla", name)):
    importlib.import_module(f"{__name__}.{_name}")

__all__ = [
    "Cost",
    "StepCallback",
    "Technique",
    "TechniqueJob",
    "TechniqueOutput",
    "estimate_unet_calls",
    "get_technique",
    "register",
    "technique_names",
]
