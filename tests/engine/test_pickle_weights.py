"""Hub and folder models load safetensors only: pickled .bin weights can run code when
loaded, so they need allow_pickle_weights (the run option behind --allow-pickle-weights)."""

import json

import pytest


def test_bin_only_folder_needs_allow_pickle_weights(tmp_path):
    from diffusers import DDIMScheduler

    from engine.models import ModelUnavailable, PRESETS, load_model, tiny_components

    parts = tiny_components()
    for name, module in (("unet", parts["inpaint_unet"]), ("vae", parts["vae"]), ("text_encoder", parts["text_encoder"])):
        module.save_pretrained(tmp_path / name, safe_serialization=False)  # .bin (transformers 5 still writes safetensors)
    parts["tokenizer"].save_pretrained(tmp_path / "tokenizer")
    DDIMScheduler(**parts["scheduler_config"]).save_pretrained(tmp_path / "scheduler")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionInpaintPipeline"}))
    assert not list((tmp_path / "vae").glob("*.safetensors")) and not list((tmp_path / "unet").glob("*.safetensors"))

    with pytest.raises(ModelUnavailable, match="--allow-pickle-weights"):
        load_model(str(tmp_path), device="cpu", dtype="fp32")
    model = load_model(str(tmp_path), device="cpu", dtype="fp32", allow_pickle_weights=True)
    assert model.unet("inpaint").config.in_channels == 9
    assert model.resolution == 64 * 8 and PRESETS["tiny"].train_timesteps == 1000
