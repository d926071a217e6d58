"""engine: a headless research library for diffusion inpainting.

    import engine
    model = engine.load_model("tiny")
    for result in engine.inpaint(model, "blended", engine.demo_samples(), seed=0, steps=10):
        ...

Importing `engine` is cheap and torch-free; torch loads on first use of `inpaint` or
`load_model`, so the CLI and the TUI can read schemas and samples without it.
It never imports the store, Typer or Textual.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "inpaint": "engine.runner",
    "Progress": "engine.runner",
    "SampleResult": "engine.runner",
    "RunAborted": "engine.runner",
    "Execution": "engine.options",
    "sample_seed": "engine.seeding",
    "load_model": "engine.models",
    "Sample": "engine.samples",
    "make_sample": "engine.samples",
    "demo_samples": "engine.demo",
    "get_technique": "engine.techniques",
    "technique_names": "engine.techniques",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
