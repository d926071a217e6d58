"""inpaint-tui: a terminal experiment manager for diffusion-inpainting research."""

__version__ = "0.1.0"
