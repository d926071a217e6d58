"""Inpainting techniques, one file each, registered by name on import."""

from engine.techniques.registry import (
    Cost,
    StepCallback,
    Technique,
    TechniqueJob,
    TechniqueOutput,
    get_technique,
    register,
    technique_names,
)
from engine.techniques import vanilla, blended  # noqa: E402,F401  (each registers itself)

__all__ = [
    "Cost",
    "StepCallback",
    "Technique",
    "TechniqueJob",
    "TechniqueOutput",
    "get_technique",
    "register",
    "technique_names",
]
