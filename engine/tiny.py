"""Building blocks of the offline tiny families (`tiny`, `tiny-sdxl`, `tiny-flux`): their
tokenizer, VAE and CLIP text configuration. Kept apart from engine.models so that
engine.flux, which builds tiny-flux, does not import the preset table (and the table can
import engine.flux)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path


def tiny_vae(**overrides):
    """The tiny families' VAE: 4 levels, SD's scale factor 8, at 128 px (`overrides`: a
    family's latent scale, channels, quant convs)."""
    from diffusers import AutoencoderKL

    config = dict(block_out_channels=(32, 32, 64, 64), in_channels=3, out_channels=3,
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  layers_per_block=1, latent_channels=4, sample_size=128)
    return AutoencoderKL(**{**config, **overrides})


def tiny_clip_config(tokenizer, **overrides):
    """The tiny families' CLIP text-encoder configuration: 2 layers of width 32."""
    from transformers import CLIPTextConfig

    config = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4,
                  num_hidden_layers=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return CLIPTextConfig(**{**config, **overrides})


def tiny_tokenizer():
    """A byte-level CLIP tokenizer with no merges, written by this code (no download)."""
    from transformers import CLIPTokenizer

    # GPT-2's printable byte-to-unicode table, which CLIP's BPE works on.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    characters = [chr(code) for code in codes]
    tokens = characters + [c + "</w>" for c in characters] + ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory(prefix="inpaint-tui-tokenizer-") as folder:
        vocab_path = Path(folder, "vocab.json")
        merges_path = Path(folder, "merges.txt")
        vocab_path.write_text(json.dumps({token: index for index, token in enumerate(tokens)}))
        merges_path.write_text("#version: 0.2\n")
        return CLIPTokenizer(str(vocab_path), str(merges_path), model_max_length=77)
