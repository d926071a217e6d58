"""Bad input met at the command line: each kind is refused before anything is written, with
one line on stderr naming the parameter or file, the documented exit code (2: a bad argument,
1: nothing importable) and no traceback; the database is byte-for-byte the same after."""

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from inpaint_tui.cli import app
from tests.conftest import box_mask, make_image

runner = CliRunner()


def write_sample(folder: Path, name: str, *, size=64, mask=None, prompt="a red cat", mask_mode="L"):
    folder.mkdir(parents=True, exist_ok=True)
    make_image(size, size).save(folder / f"{name}.png")
    array = box_mask(size, size, (size // 4, size // 4, size // 2, size // 2)) if mask is None else mask
    Image.fromarray((array * 255).astype(np.uint8), mode="L").convert(mask_mode).save(folder / f"{name}_mask.png")
    (folder / f"{name}.txt").write_text(prompt)


def dump(db: str) -> str:
    with sqlite3.connect(db) as connection:
        return "\n".join(connection.iterdump())


@pytest.fixture
def cli(tmp_path):
    """A database holding one imported set `pics`; `invoke` returns (exit, stdout, stderr)."""
    db = str(tmp_path / "experiments.db")

    def invoke(*args: str):
        result = runner.invoke(app, ["--db", db, *map(str, args)])
        return result.exit_code, result.stdout, result.stderr

    write_sample(tmp_path / "pics", "cat")
    assert invoke("samples", "import", tmp_path / "pics", "--set", "pics")[0] == 0
    invoke.db = db
    return invoke


def model_folder(root: Path, *, index="{}", unet='{"in_channels": 9, "sample_size": 16}', scheduler=None) -> Path:
    """A pipeline folder with these files (index None: no model_index.json nor unet/)."""
    root.mkdir(parents=True)
    if index is None:
        (root / "weights.bin").write_bytes(b"")
        return root
    (root / "unet").mkdir()
    (root / "model_index.json").write_text(index)
    (root / "unet" / "config.json").write_text(unet)
    if scheduler is not None:
        (root / "scheduler").mkdir()
        (root / "scheduler" / "scheduler_config.json").write_text(scheduler)
    return root


RUN = ("run", "-t", "vanilla", "--samples", "pics")

# kind, arguments after RUN (tmp_path-relative model folders built by `folder`), text stderr must name
BAD_RUNS = [
    ("steps above the scheduler's timesteps", ["--steps", "2000"], "1000 timesteps", None),
    ("seed above 63 bits", ["--seed", str(2**70)], "seed must lie in 0..2^63-1", None),
    ("infinite guidance", ["--guidance", "inf"], "guidance must be a finite number", None),
    ("even feather kernel", ["-p", "background=feather", "-p", "feather_kernel=4"], "'feather_kernel': must be odd", None),
    ("duplicate -p key", ["-p", "resize=fit", "-p", "resize=crop"], "'resize' is given twice", None),
    ("model_index.json invalid JSON", ["--model", "{folder}"], "model_index.json: invalid JSON",
     dict(index="{not json")),
    ("unet/config.json invalid JSON", ["--model", "{folder}"], "config.json: invalid JSON",
     dict(unet='{"in_channels": 9,')),
    ("sample_size not a number", ["--model", "{folder}"], "sample_size must be a whole number",
     dict(unet='{"in_channels": 9, "sample_size": "big"}')),
    ("model_index.json not an object", ["--model", "{folder}"], "expected a JSON object", dict(index="[1, 2]")),
    ("scheduler_config.json invalid JSON", ["--model", "{folder}"], "scheduler_config.json: invalid JSON",
     dict(scheduler="{")),
    ("steps above a folder model's timesteps", ["--model", "{folder}", "--steps", "200"], "100 timesteps",
     dict(scheduler='{"num_train_timesteps": 100}')),
    ("unknown technique", ["-t", "nosuch"], "unknown technique 'nosuch' (known: blended", None),
    ("unknown parameter", ["-p", "nosuch=1"], "vanilla: unknown parameter 'nosuch' (known: strength", None),
    ("parameter not a whole number", ["-p", "background=feather", "-p", "feather_kernel=abc"],
     "parameter 'feather_kernel': expected an integer, got 'abc'", None),
    ("parameter outside its choices", ["-p", "resize=sideways"], "parameter 'resize': 'sideways' is not one of fit, crop",
     None),
    ("-p without a value", ["-p", "resize"], "expected key=value, got 'resize'", None),
    ("negative seed", ["--seed", "-1"], "seed must lie in 0..2^63-1, got -1", None),
    ("unknown metric group", ["--metrics", "foo"], "--metrics: unknown metric 'foo'", None),
    ("unknown device", ["--device", "tpu"], "device must be cpu, cuda, cuda:N, mps or xpu, got 'tpu'", None),
    ("unknown dtype", ["--dtype", "fp8"], "dtype must be fp16, bf16 or fp32, got 'fp8'", None),
    ("model path that does not exist", ["--model", "/nonexistent/model"],
     "unknown model '/nonexistent/model': not a preset", None),
    ("model folder that is no pipeline", ["--model", "{folder}"], "is not a diffusers pipeline (no model_index.json",
     dict(index=None)),
]


@pytest.mark.parametrize("kind, args, named, folder", BAD_RUNS, ids=[row[0] for row in BAD_RUNS])
def test_bad_run_values_are_refused_before_a_run_exists(cli, tmp_path, kind, args, named, folder):
    if folder is not None:
        path = model_folder(tmp_path / "model", **folder)
        args = [str(path) if arg == "{folder}" else arg for arg in args]
    before = dump(cli.db)
    code, stdout, stderr = cli(*RUN, *args)
    assert code == 2, stderr
    assert "Traceback" not in stderr + stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], stderr
    if folder is not None and "timesteps" not in named and "diffusers pipeline" not in named:
        assert lines[0].startswith("error: model unavailable: " + str(tmp_path / "model")), stderr
    assert dump(cli.db) == before


def test_odd_kernels_show_in_the_techniques_listing(cli):
    from engine.options import POSTPROCESS_SCHEMA

    kernel = POSTPROCESS_SCHEMA.get("feather_kernel")
    assert kernel.to_dict()["odd"] is True and kernel.describe_range() == "[3, 255] odd"
    code, stdout, _ = cli("techniques")
    assert code == 0 and "[3, 255] odd" in stdout


# --- import ----------------------------------------------------------------------------------

def test_merged_samples_are_named_in_the_dry_run_and_the_import(tmp_path):
    db = str(tmp_path / "fresh.db")
    folder = tmp_path / "held"
    write_sample(folder, "astro_mask16")
    write_sample(folder, "astro_maskrgb", mask_mode="RGB")  # another encoding of the same mask
    (folder / "astro_maskrgb.png").write_bytes((folder / "astro_mask16.png").read_bytes())
    write_sample(folder, "other", size=48)

    dry = runner.invoke(app, ["--db", db, "samples", "import", str(folder), "--dry-run"])
    assert dry.exit_code == 0, dry.stderr
    assert "astro_maskrgb: same content as astro_mask16 (merged)" in dry.stderr
    assert "2 samples importable" in dry.stdout and "2 new, 0 already present, 1 merged" in dry.stdout
    real = runner.invoke(app, ["--db", db, "samples", "import", str(folder)])
    assert real.exit_code == 0, real.stderr
    assert "astro_maskrgb: same content as astro_mask16 (merged)" in real.stderr
    assert "2 new, 0 already present, 2 in the set, 1 merged" in real.stdout
    again = runner.invoke(app, ["--db", db, "samples", "import", str(folder), "--dry-run"])
    assert "0 new, 2 already present" in again.stdout


def test_a_mask_that_vanishes_at_the_working_size_is_named_at_import_and_in_the_run(cli, tmp_path):
    """The defect: a 1-pixel mask imported silently, then failed every `fit` run with an error
    naming its content hash. It stays importable (crop runs and larger models can use it), the
    import names it, and a fit run's failure names it too."""
    from engine.samples import SampleError, prepare
    from inpaint_tui.jobs.samples import to_engine_sample
    from inpaint_tui.store import Store

    dot = np.zeros((256, 256), dtype=np.float32)
    dot[100, 100] = 1.0  # one pixel: at the tiny preset's 128 px (fit) it is a quarter pixel
    write_sample(tmp_path / "dot", "dot", size=256, mask=dot)
    code, stdout, stderr = cli("samples", "import", tmp_path / "dot")
    assert code == 0 and "Traceback" not in stderr
    assert "dot: its mask (1 px) vanishes at the resize=fit working size of tiny (128 px)" in " ".join(stderr.split())
    store = Store(cli.db)
    try:
        info = next(i for i in store.samples() if i.name == "dot")
        with pytest.raises(SampleError, match="sample 'dot': mask"):
            prepare(to_engine_sample(info), 128, "fit")
        prepare(to_engine_sample(info), 128, "crop")  # usable with the crop policy
    finally:
        store.close()


def test_control_characters_in_prompts_are_stripped_for_display_only(cli, tmp_path):
    write_sample(tmp_path / "ansi", "ansi", prompt="a \x1b[31mred\x1b[0m cat\x07 [bold]x[/bold]")
    assert cli("samples", "import", tmp_path / "ansi", "--set", "ansi")[0] == 0
    stored = json.loads(cli("samples", "list", "--set", "ansi", "--json")[1])[0]
    assert stored["prompt"] == "a \x1b[31mred\x1b[0m cat\x07 [bold]x[/bold]"  # kept as imported
    for command in (("samples", "list", "--set", "ansi"), ("samples", "show", stored["id"])):
        code, stdout, _ = cli(*command)
        assert code == 0 and "\x1b" not in stdout and "\x07" not in stdout
        assert "red cat" in " ".join(stdout.split()) and "[bold]x[/bold]" in stdout


def test_links_out_of_the_folder_are_not_followed_unless_asked(cli, tmp_path):
    write_sample(tmp_path / "outside", "secret")
    folder = tmp_path / "linked"
    write_sample(folder, "cat2", prompt="a dog")
    (folder / "cat2_mask.png").unlink()
    (folder / "cat2_mask.png").symlink_to(tmp_path / "outside" / "secret_mask.png")
    before = dump(cli.db)
    code, _, stderr = cli("samples", "import", folder)
    assert code == 1 and "Traceback" not in stderr
    flat = " ".join(stderr.split())
    assert "skipped link cat2_mask.png" in flat and "--follow-links" in flat
    assert dump(cli.db) == before
    code, stdout, stderr = cli("samples", "import", folder, "--follow-links")
    assert code == 0 and "1 new" in stdout, stderr


def _broken(build):
    """An import folder holding one sample `bad` (written by write_sample) that `build(folder)`
    then breaks."""
    def make(root: Path) -> Path:
        folder = root / "incoming"
        write_sample(folder, "bad")
        build(folder)
        return folder
    return make


def _png_bytes(size) -> bytes:
    import io

    buffer = io.BytesIO()
    make_image(size, size).save(buffer, format="PNG")
    return buffer.getvalue()


def _mask_of(folder: Path, array) -> None:
    Image.fromarray((array * 255).astype(np.uint8), mode="L").save(folder / "bad_mask.png")


def _nothing(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink()
    (folder / "readme.md").write_text("no samples here")


# kind, folder builder (or a path under tmp_path), exit code, text stderr must hold
BAD_IMPORTS = [
    ("image is a text file", _broken(lambda f: (f / "bad.png").write_text("not a png")), 1,
     "cannot import bad: sample 'bad': image file bad.png is not an image PIL can read"),
    ("truncated image", _broken(lambda f: (f / "bad.png").write_bytes(_png_bytes(64)[:300])), 1,
     "cannot read image file bad.png: image file is truncated"),
    ("mask size differs from the image", _broken(lambda f: _mask_of(f, box_mask(72, 64, (8, 8, 20, 20)))), 1,
     "mask is 72x64 but the image is 64x64"),
    ("empty mask", _broken(lambda f: _mask_of(f, np.zeros((64, 64), np.float32))), 1,
     "mask is empty (nothing to inpaint)"),
    ("mask covers the whole image", _broken(lambda f: _mask_of(f, np.ones((64, 64), np.float32))), 1,
     "covers the whole image (nothing to keep); is it inverted?"),
    ("no mask", _broken(lambda f: (f / "bad_mask.png").unlink()), 1, "image bad.png has no mask (expected bad_mask.png)"),
    ("no image", _broken(lambda f: (f / "bad.png").unlink()), 1, "mask bad_mask.png has no image"),
    ("no prompt", _broken(lambda f: (f / "bad.txt").unlink()), 1, "no prompt; add a row to prompts.csv or a file bad.txt"),
    ("blank prompt", _broken(lambda f: (f / "bad.txt").write_text("  \n")), 1, "prompt file bad.txt is empty"),
    ("nothing recognisable", _broken(_nothing), 1, "no images found in"),
    ("folder does not exist", lambda root: root / "nowhere", 1, "nowhere': use demo, hf:OWNER/NAME"),
    ("a file instead of a folder", lambda root: (root / "file.png").write_bytes(_png_bytes(8)) and root / "file.png",
     1, "file.png': use demo, hf:OWNER/NAME"),
]


@pytest.mark.parametrize("kind, build, code, named", BAD_IMPORTS, ids=[row[0] for row in BAD_IMPORTS])
def test_bad_import_folders_are_named_and_change_nothing(cli, tmp_path, kind, build, code, named):
    source = build(tmp_path)
    data = Path(cli.db).with_name("experiments_data")
    files_before = sorted(data.rglob("*"))
    before = dump(cli.db)
    exit_code, stdout, stderr = cli("samples", "import", source, "--set", "incoming")
    assert exit_code == code, stderr
    assert "Traceback" not in stderr + stdout
    assert named in " ".join(stderr.split()), stderr
    assert stderr.strip().splitlines()[-1].startswith("error: ")
    assert dump(cli.db) == before and sorted(data.rglob("*")) == files_before
