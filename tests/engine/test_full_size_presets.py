"""The random-weight full-size presets `sd15-arch` and `sd2-arch`: exact SD architectures,
built offline, marked as meaningless for quality wherever a user meets them.

Parameter counts. Published (model cards / the released checkpoints' totals):
  SD 1.5 UNet (4 channels) 859,520,964; SD 1.x/2 VAE 83,653,863; CLIP ViT-L/14 text
  123,060,480; SD 2 UNet (4 channels) 865,910,724; OpenCLIP ViT-H text as SD 2 ships it
  (23 layers) 340,387,840.
Derived here: the 9-channel inpainting UNets differ only in conv_in (3x3, 320 outputs), so
  they have (9 - 4) * 320 * 3 * 3 = 14,400 more: SD 1.5 859,535,364, SD 2 865,925,124.
Every figure was checked against the built modules (the counts come from the configs in
engine.models.FULL_SIZE); all published figures matched.

Memory: an fp32 SD UNet is 3.4 GB, so one component is built at a time and freed, and the
model cache is cleared after the generation test.
"""

from __future__ import annotations

import gc
import json
import os

import numpy as np
import pytest

from engine import models
from engine.models import PRESETS, preset_status

PUBLISHED = {
    ("sd15-arch", "unet4"): 859_520_964,
    ("sd15-arch", "vae"): 83_653_863,
    ("sd15-arch", "text"): 123_060_480,
    ("sd2-arch", "unet4"): 865_910_724,
    ("sd2-arch", "vae"): 83_653_863,
    ("sd2-arch", "text"): 340_387_840,
}
CONV_IN_EXTRA = (9 - 4) * 320 * 3 * 3  # derived: the inpainting UNet's 5 extra input channels


def _count(module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Any hub access would fail (or be refused) here: building must not need one.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield
    models._load_cached.cache_clear()
    gc.collect()


def test_presets_are_builtin_and_marked_random():
    for name in ("sd15-arch", "sd2-arch"):
        preset = PRESETS[name]
        assert preset.builtin and preset.random_weights and preset.inpaint is None and preset.txt2img is None
        assert preset.resolution == 512 and preset.train_timesteps == 1000
        assert preset.description.startswith(f"random weights, full SD {'1.5' if name == 'sd15-arch' else '2'} "
                                              "architecture")
        assert preset.description.endswith("for speed and memory only, images are noise")
        status = preset_status(preset)
        assert status["available_offline"] and status["random_weights"]
        assert status["parts"] == {"inpaint": "built-in", "txt2img": "built-in"}
    assert not PRESETS["tiny"].random_weights and not PRESETS["sd15"].random_weights


@pytest.mark.slow  # GBs of weights per preset
@pytest.mark.parametrize("name", ["sd15-arch", "sd2-arch"])
def test_parameter_counts_match_the_published_models(name):
    # ~10-20 s per preset on a 2-core CPU (two 3.4 GB UNets, each freed before the next).
    unet4 = models.full_size_unet(name, 4)
    assert _count(unet4) == PUBLISHED[(name, "unet4")]
    assert unet4.config.cross_attention_dim == (768 if name == "sd15-arch" else 1024)
    del unet4
    gc.collect()
    unet9 = models.full_size_unet(name, 9)
    assert _count(unet9) == PUBLISHED[(name, "unet4")] + CONV_IN_EXTRA
    assert unet9.config.in_channels == 9
    del unet9
    gc.collect()
    vae = models.full_size_vae(name)
    assert _count(vae) == PUBLISHED[(name, "vae")] and vae.config.scaling_factor == 0.18215
    del vae
    text = models.full_size_text_encoder(name)
    assert _count(text) == PUBLISHED[(name, "text")]
    assert text.config.vocab_size == 49408 and text.config.max_position_embeddings == 77


def test_random_weights_are_seeded_finite_and_keep_buffers():
    import torch

    first, again = models.full_size_text_encoder("sd15-arch"), models.full_size_text_encoder("sd15-arch")
    for (name, a), (_, b) in zip(first.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    # Buffers survive the fast initialisation (to_empty would leave them uninitialised).
    position_ids = next(buffer for name, buffer in first.named_buffers() if name.endswith("position_ids"))
    assert torch.equal(position_ids[0], torch.arange(77))
    tokenizer = models.tiny_tokenizer()
    # The byte-level tokenizer's ids fit CLIP's vocabulary, so prompts tokenise offline.
    assert len(tokenizer) <= first.config.vocab_size
    ids = tokenizer(["a photo of a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    hidden = first(ids)[0]
    assert hidden.shape == (1, 77, 768) and bool(torch.isfinite(hidden).all())


def test_the_tiny_preset_is_untouched():
    # tiny's weights pin many pixel-exact tests: its builder is not the full-size one.
    assert "tiny" not in models.FULL_SIZE
    assert models.tiny_components()["scheduler_config"] == models.sd_scheduler_config(1000)


def test_building_needs_no_hub(monkeypatch):
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError("the hub was consulted")

    for attribute in ("hf_hub_download", "snapshot_download", "model_info", "try_to_load_from_cache"):
        monkeypatch.setattr(huggingface_hub, attribute, refuse)
    models.check_available("sd2-arch")
    models.full_size_text_encoder("sd2-arch")
    models.full_size_vae("sd2-arch")
    assert os.environ["HF_HUB_OFFLINE"] == "1"


@pytest.mark.slow  # a full-size UNet on the CPU
@pytest.mark.parametrize("technique", ["vanilla", "blended"])
def test_one_step_generation_on_cpu(technique):
    """A full sd15-arch generation, 1 step, guidance 7.5 (CFG: the UNet at batch 2), at
    256x256: at the preset's 512x512 one vanilla step took 104 s on the 2-core CI machine
    (UNet build included), so the working size is lowered to 256 here: 13-46 s per
    technique measured, UNet build included, on a busy machine."""
    from dataclasses import replace

    from PIL import Image

    from engine.runner import Generation
    from engine.samples import make_sample

    side = 256
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8), mode="RGB")
    mask = np.zeros((side, side), dtype=np.float32)
    mask[64:192, 64:192] = 1.0
    sample = make_sample("full-size", image, mask, "a photo of a cat")
    loaded = models.load_model("sd15-arch", device="cpu")
    assert loaded.resolution == 512
    # The same components; the working size follows the preset's resolution.
    model = replace(loaded, preset=replace(loaded.preset, resolution=side))
    result = Generation(model, technique, steps=1, guidance=7.5, warm_up=False).sample(sample, seed=0, errors="raise")
    assert result.ok and result.image.size == (side, side)
    assert result.cost.unet_calls == 1
    # Only the UNet the technique needs was built.
    assert list(model._unets) == ["inpaint" if technique == "vanilla" else "txt2img"]
    del model, loaded, result


def test_listings_mark_the_random_presets(tmp_path):
    from typer.testing import CliRunner

    from inpaint_tui.cli import app
    from inpaint_tui.cli.runs import _model_label

    def cli(*args):
        result = CliRunner().invoke(app, ["--db", str(tmp_path / "experiments.db"), *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    listed = {m["name"]: m for m in json.loads(cli("models", "--json"))}
    assert listed["sd15-arch"]["random_weights"] is True and listed["sd15"]["random_weights"] is False
    text = " ".join(cli("models").split())
    assert "random weights, for speed and memory only (images are noise): sd15-arch, sd2-arch" in text
    # `runs show`'s model line
    assert _model_label("sd2-arch") == "sd2-arch (random weights: for speed and memory only, images are noise)"
    assert _model_label("tiny") == "tiny" and _model_label("/some/folder") == "/some/folder"
    # the TUI's model select
    from inpaint_tui.tui.screens.new_run import _model_options

    options = {value: label for label, value in _model_options(list(PRESETS) + ["/some/folder"])}
    assert options["sd15-arch"] == "sd15-arch (random weights)" and options["sd2-arch"] == "sd2-arch (random weights)"
    assert options["tiny"] == "tiny" and options["/some/folder"] == "/some/folder"


def test_auto_evaluation_models_are_the_offline_ones():
    # Real CLIP / Inception / OWLv2 on noise would measure nothing and need downloads.
    from engine.spec import EvalConfig

    assert EvalConfig.for_model("sd15-arch").models == "tiny" and EvalConfig.for_model("sd2-arch").models == "tiny"
    assert EvalConfig.for_model("sd15").models == "real"
    assert EvalConfig.for_model("sd15-arch", models="real").models == "real"


# Published: SDXL base UNet 2,567,463,684. Derived here (from the released configs):
# inpainting UNet +14,400 (conv_in), OpenCLIP ViT-bigG text with projection 694,659,840.
SDXL_PUBLISHED_UNET = 2_567_463_684


def _meta_counts(name: str) -> dict[str, int]:
    """Parameter counts of a full-size preset's components, built on the meta device (no
    storage: instant, whatever the size)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = models.FULL_SIZE[name]
    counts = {}
    with torch.device("meta"):
        counts["inpaint UNet"] = _count(UNet2DConditionModel(in_channels=9, **config["unet"]))
        counts["text-to-image UNet"] = _count(UNet2DConditionModel(in_channels=4, **config["unet"]))
        counts["VAE"] = _count(AutoencoderKL(**config["vae"]))
        text = dict(vocab_size=models.CLIP_VOCAB_SIZE, max_position_embeddings=models.CLIP_MAX_LENGTH)
        counts["text encoder"] = _count(CLIPTextModel(CLIPTextConfig(**text, **config["text"])))
        if "text_2" in config:
            counts["text encoder 2"] = _count(CLIPTextModelWithProjection(CLIPTextConfig(**text, **config["text_2"])))
    return counts


@pytest.mark.parametrize("name", ["sd15-arch", "sd2-arch", "sdxl-arch"])
def test_the_memory_estimate_counts_every_component_of_the_architecture(name):
    counts = _meta_counts(name)
    assert dict(PRESETS[name].parameters) == counts
    hub = {"sd15-arch": "sd15", "sd2-arch": "sd2", "sdxl-arch": "sdxl"}[name]
    assert PRESETS[hub].parameters == PRESETS[name].parameters  # the hub preset is this architecture
    assert PRESETS[name].weights_bytes() == 2 * sum(counts.values())
    if name == "sdxl-arch":
        assert counts["text-to-image UNet"] == SDXL_PUBLISHED_UNET
        assert counts["inpaint UNet"] == SDXL_PUBLISHED_UNET + CONV_IN_EXTRA


@pytest.mark.parametrize("name", ["tiny", "tiny-sdxl"])
def test_the_tiny_memory_estimates_count_the_built_modules(name):
    parts = models.tiny_sdxl_components() if name == "tiny-sdxl" else models.tiny_components()
    built = {"inpaint UNet": _count(parts["inpaint_unet"]), "text-to-image UNet": _count(parts["txt2img_unet"]),
             "VAE": _count(parts["vae"]), "text encoder": _count(parts["text_encoder"])}
    if "text_encoder_2" in parts:
        built["text encoder 2"] = _count(parts["text_encoder_2"])
    assert dict(PRESETS[name].parameters) == built


def test_the_sdxl_architecture_is_sdxl():
    preset = PRESETS["sdxl-arch"]
    assert preset.family == "sdxl" and preset.resolution == 1024 and preset.random_weights
    unet = models.FULL_SIZE["sdxl-arch"]["unet"]
    assert unet["cross_attention_dim"] == 768 + 1280  # both text encoders' widths, concatenated
    # 6 time ids x 256 + the pooled text projection (1280)
    assert unet["projection_class_embeddings_input_dim"] == 6 * unet["addition_time_embed_dim"] + 1280
    assert models.FULL_SIZE["sdxl-arch"]["vae"]["scaling_factor"] == models.SDXL_LATENT_SCALE
