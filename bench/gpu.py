"""Full-size throughput: the engine's batched generation against diffusers' own pipelines.

What is measured
----------------
On a full-size random-weight preset (`sd15-arch` by default: SD 1.5's exact UNet, VAE and
text encoder; the images are noise, the work is real), for each technique and batch size B,
images per second of

* engine:   `Generation(model, technique, steps=N, guidance=7.5).batch(B samples, seeds=...)`;
* diffusers, in the same process, on the same components, at the same B, size and steps:
  - `vanilla` against `StableDiffusionInpaintPipeline` called with lists of B prompts, images
    and masks and B generators (the call `vanilla` itself makes, without the runner around it);
  - `blended` against a bare `StableDiffusionPipeline` text-to-image call over the same
    4-channel UNet. diffusers has no blended pipeline: this baseline does the same UNet work
    (N steps, CFG) but not blended's VAE encode of the source, its per-step noising and
    blending, nor the engine's metrics, so a ratio under 1 there is partly work it does not do.

Each round runs both sides, alternating which goes first (ABBA), with
`torch.cuda.synchronize()` around every timing on CUDA; reported per batch size: median
images/s of each side, the median of the per-round ratios engine/diffusers (goal >= 0.95),
the UNet's share of wall time and the peak memory (from one extra instrumented pass of each
side, so the timed rounds carry no hooks: the hooks synchronize on CUDA), and, for the best
batch size, model FLOP utilisation: UNet FLOPs per image (counted by
torch.utils.flop_counter.FlopCounterMode on one batch-1 forward at the working latent size,
x2 for classifier-free guidance, x steps; VAE and text encoder left out) times images/s over
the GPU's peak dense fp16/bf16 tensor FLOP/s (`--peak-tflops`, or the table PEAK_TFLOPS).

Peak memory: torch.cuda.max_memory_allocated on CUDA; on CPU the process's peak resident set
(ru_maxrss), which only grows, so it is the high-water mark so far, not the pass's own.

Usage: python bench/gpu.py [--model sd15-arch] [--device cuda] [--dtype fp16] [--steps 50]
[--batches 1,2,4,8,16] [--repeats 3] [--size 512] [--techniques vanilla,blended]
[--peak-tflops 989] [--compile] [--channels-last auto|on|off]
The CUDA paths were written without a GPU to run them on (see the README). It is a
benchmark, not a test: it always exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/ off the path: its queue.py would shadow the stdlib

GUIDANCE = 7.5
TARGET_RATIO = 0.95

# Dense (no sparsity) fp16/bf16 tensor-core peaks, TFLOP/s, with fp32 accumulation as PyTorch
# uses it, from NVIDIA's datasheets. Matched in order against torch.cuda.get_device_name().
PEAK_TFLOPS = (
    ("H200", 989.0),       # H200 SXM: GH100 at H100 SXM's clocks
    ("H100 PCIe", 756.0),
    ("H100", 989.0),       # H100 SXM5
    ("A100", 312.0),
    ("L40S", 362.0),
    ("RTX 4090", 165.2),   # GeForce Ada halves fp16 with fp32 accumulate (330 with fp16 accumulate)
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sd15-arch", help="preset (default sd15-arch)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--dtype", default=None, help="fp16 | bf16 | fp32 (default fp16 on CUDA, fp32 on CPU)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batches", default="1,2,4,8,16", help="batch sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds per batch size")
    parser.add_argument("--size", type=int, default=None, help="working size in px (default: the preset's)")
    parser.add_argument("--techniques", default="vanilla,blended")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak dense fp16/bf16 TFLOP/s (default: from a table of known GPUs)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the UNet (both sides share it; compile time falls in the warm-up)")
    parser.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                        help="UNet/VAE memory layout (both sides share it; auto: on CUDA)")
    return parser.parse_args(argv)


class UnetTimer:
    """Seconds spent inside UNet forwards, from a forward pre-hook / hook pair (synchronizing
    on CUDA, so that the time is the kernels', not their launches')."""

    def __init__(self, unets, cuda: bool) -> None:
        self.cuda = cuda
        self.seconds = 0.0
        self._started = 0.0
        self._handles = []
        for unet in unets:
            self._handles.append(unet.register_forward_pre_hook(self._before))
            self._handles.append(unet.register_forward_hook(self._after))

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def _before(self, *_args) -> None:
        self._sync()
        self._started = time.perf_counter()

    def _after(self, *_args) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._started

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


class FallbackWatch(logging.Handler):
    """Notices Generation.batch retrying a failed batch sample by sample (it does so on an
    out-of-memory batch, quietly): the engine side would then time B single samples."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.fell_back = False
        runner_log = logging.getLogger("engine.runner")
        runner_log.setLevel(logging.INFO)  # the retry is logged at INFO
        runner_log.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("a batch of"):
            self.fell_back = True


def unet_flops(unet, height: int, width: int) -> float:
    """FLOPs of one UNet forward at batch 1 on a (height/8, width/8) latent, as
    FlopCounterMode counts them (2 per multiply-accumulate of convs, linears and attention
    matmuls; elementwise work and normalisation not counted)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    config = unet.config
    parameter = next(unet.parameters())
    latent = torch.zeros(1, config.in_channels, height // 8, width // 8, device=parameter.device, dtype=parameter.dtype)
    context = torch.zeros(1, 77, config.cross_attention_dim, device=parameter.device, dtype=parameter.dtype)
    extra = {}
    if config.addition_embed_type == "text_time":  # SDXL: pooled text and 6 time ids
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        extra["added_cond_kwargs"] = {
            "text_embeds": torch.zeros(1, pooled, device=parameter.device, dtype=parameter.dtype),
            "time_ids": torch.tensor([[height, width, 0, 0, height, width]], device=parameter.device,
                                     dtype=parameter.dtype)}
    counter = FlopCounterMode(display=False)
    # The math attention backend decomposes into matmuls, which the counter sees on every
    # device (it does not count CPU's fused attention kernel: 0 FLOPs without this).
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        unet(latent, torch.tensor([500], device=parameter.device), encoder_hidden_states=context, **extra)
    return float(counter.get_total_flops())


def peak_tflops(choice: float | None, device: str) -> tuple[float | None, str]:
    if choice is not None:
        return choice, "--peak-tflops"
    if not device.startswith("cuda"):
        return None, "CPU: no peak known, pass --peak-tflops"
    import torch

    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_TFLOPS:
        if key in name:
            return value, f"table entry {key!r} for {name}"
    return None, f"{name} is not in the table: pass --peak-tflops"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    import torch
    from diffusers import StableDiffusionPipeline

    from bench._common import synthetic_samples
    from engine.models import default_device, load_model
    from engine.runner import Generation

    device = args.device or default_device()
    cuda = device.startswith("cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
    built = time.perf_counter()
    model = load_model(args.model, device=device, dtype=args.dtype)
    load_seconds = time.perf_counter() - built
    size = args.size or model.resolution
    if size != model.resolution:  # the working size follows the preset's resolution
        model.preset = replace(model.preset, resolution=size)
    batches = [int(b) for b in args.batches.split(",")]
    techniques = args.techniques.split(",")
    weights = "random weights, images are noise" if model.preset.builtin else "pretrained weights"
    print(f"gpu benchmark: {args.model} ({weights}) "
          f"on {device} ({torch.cuda.get_device_name(device) if cuda else 'CPU'}), {model.dtype}, "
          f"{size}x{size}, {args.steps} steps, guidance {GUIDANCE}, {args.repeats} rounds, "
          f"{torch.get_num_threads()} threads; model built in {load_seconds:.1f} s (UNets on first use)")

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize()

    def memory_start() -> None:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)

    def memory_peak_mib() -> float:
        if cuda:
            return torch.cuda.max_memory_allocated(device) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    from engine.options import Execution

    execution = Execution(channels_last={"auto": None, "on": True, "off": False}[args.channels_last],
                          compile=args.compile)
    print(f"execution: channels-last {execution.channels_last_on(device)}, compile {execution.compile}")
    rows = []
    watch = FallbackWatch()
    for technique in techniques:
        role = "inpaint" if technique == "vanilla" else "txt2img"
        built = time.perf_counter()
        unet = model.unet(role)  # built (or loaded) on first use
        print(f"{technique}: {role} UNet ready in {time.perf_counter() - built:.1f} s")
        generation = Generation(model, technique, steps=args.steps, guidance=GUIDANCE, execution=execution)
        if technique == "vanilla":
            pipe = model.inpaint_pipeline()
        elif model.family == "sdxl":  # the configured UNet (compiled with --compile), as the engine side uses it
            from diffusers import StableDiffusionXLPipeline

            pipe = StableDiffusionXLPipeline(vae=model.vae, text_encoder=model.text_encoder,
                                             text_encoder_2=model.text_encoder_2, tokenizer=model.tokenizer,
                                             tokenizer_2=model.tokenizer_2, unet=model.unet(role),
                                             scheduler=model.new_scheduler())
            pipe.set_progress_bar_config(disable=True)
        else:
            pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=model.text_encoder, tokenizer=model.tokenizer,
                                           unet=model.unet(role), scheduler=model.new_scheduler(), safety_checker=None,
                                           feature_extractor=None, requires_safety_checker=False)
            pipe.set_progress_bar_config(disable=True)
        for batch in batches:
            samples = synthetic_samples(batch, size, prefix="gpu-bench")
            seeds = list(range(batch))

            def engine_side():
                results = generation.batch(samples, seeds=seeds, errors="raise")
                if watch.fell_back:
                    raise torch.cuda.OutOfMemoryError(f"batch {batch} failed and was run sample by sample")
                return results

            def diffusers_side():
                arguments = dict(prompt=[s.prompt for s in samples], height=size, width=size,
                                 num_inference_steps=args.steps, guidance_scale=GUIDANCE, output_type="np",
                                 generator=[torch.Generator(device=device).manual_seed(seed) for seed in seeds])
                if technique == "vanilla":
                    arguments.update(image=[s.image for s in samples], mask_image=[s.mask_image() for s in samples])
                return pipe(**arguments).images

            sides = {"engine": engine_side, "diffusers": diffusers_side}
            try:
                for function in sides.values():  # untimed warm-up: kernels, allocator, cuDNN choices
                    function()
                seconds = {name: [] for name in sides}
                for round_index in range(max(1, args.repeats)):
                    for name in list(sides) if round_index % 2 == 0 else reversed(list(sides)):
                        synchronize()
                        started = time.perf_counter()
                        sides[name]()
                        synchronize()
                        seconds[name].append(time.perf_counter() - started)
                share, peak = {}, {}
                for name, function in sides.items():  # instrumented pass: hooks synchronize
                    timer = UnetTimer([unet], cuda)
                    memory_start()
                    synchronize()
                    started = time.perf_counter()
                    try:
                        function()
                        synchronize()
                    finally:
                        timer.remove()
                    share[name] = timer.seconds / (time.perf_counter() - started)
                    peak[name] = memory_peak_mib()
            except torch.cuda.OutOfMemoryError as error:
                print(f"{technique} batch {batch}: out of memory ({str(error).splitlines()[0]}), "
                      "larger batches skipped")
                watch.fell_back = False
                if cuda:
                    torch.cuda.empty_cache()
                break
            rates = {name: statistics.median(batch / s for s in values) for name, values in seconds.items()}
            ratio = statistics.median(d / e for e, d in zip(seconds["engine"], seconds["diffusers"]))
            rows.append((technique, batch, rates, ratio, share, peak))
            print(f"  {technique} batch {batch}: engine {rates['engine']:.3f} img/s, diffusers "
                  f"{rates['diffusers']:.3f} img/s, ratio {ratio:.3f}", flush=True)  # long runs show progress

    memory_label = "peak MiB (CUDA allocated)" if cuda else "peak RSS MiB (process so far)"
    print()
    print(f"{'technique':<9} {'batch':>5} {'engine img/s':>12} {'diffusers img/s':>15} {'ratio':>6} "
          f"{'UNet share e/d':>15} {memory_label + ' e/d':>30}")
    for technique, batch, rates, ratio, share, peak in rows:
        print(f"{technique:<9} {batch:>5} {rates['engine']:>12.3f} {rates['diffusers']:>15.3f} {ratio:>6.3f} "
              f"{share['engine']:>7.0%}/{share['diffusers']:<7.0%} {peak['engine']:>14.0f}/{peak['diffusers']:<15.0f}")
    print(f"ratio: the median per-round engine/diffusers images/s (goal >= {TARGET_RATIO}); blended's diffusers "
          "side is plain text-to-image (same UNet work, no blending, no source encode)")

    peak_value, peak_source = peak_tflops(args.peak_tflops, device)
    print()
    for technique in techniques:
        mine = [row for row in rows if row[0] == technique]
        if not mine:
            continue
        best = max(mine, key=lambda row: row[2]["engine"])
        unet = model.unet("inpaint" if technique == "vanilla" else "txt2img")
        per_forward = unet_flops(unet, size, size)
        per_image = per_forward * 2 * args.steps  # CFG: the conditional and unconditional halves
        achieved = per_image * best[2]["engine"]
        line = (f"{technique}: best batch {best[1]}, {best[2]['engine']:.3f} img/s; UNet {per_forward / 1e9:.4g} "
                f"GFLOP per forward at batch 1, {per_image / 1e12:.4g} TFLOP per image -> "
                f"{achieved / 1e12:.4g} TFLOP/s achieved (UNet only)")
        if peak_value:
            line += f", {100 * achieved / (peak_value * 1e12):.2f}% of {peak_value:g} TFLOP/s ({peak_source})"
        else:
            line += f"; utilisation: {peak_source}"
        print(line)
    return 0


if __name__ == "__main__":
    from bench._common import run_benchmark

    run_benchmark(main, "gpu")
