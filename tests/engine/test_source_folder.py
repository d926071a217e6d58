"""engine.sources.folder: both folder layouts, every broken-file case reported by name."""

import numpy as np
import pytest
from PIL import Image

from engine.sources.folder import plan_folder
from tests.conftest import box_mask, make_image

W, H = 40, 32
BOX = (8, 6, 24, 20)  # 16 x 14 = 22% of the image


def _mask_png(path, mask):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(mask * 255).astype(np.uint8), mode="L").save(path)


def _image(path, seed=0, size=(W, H)):
    path.parent.mkdir(parents=True, exist_ok=True)
    make_image(*size, seed=seed).save(path)


def _text(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _structured(root, name, seed=0, box=BOX, ext="png"):
    _image(root / "images" / f"{name}.{ext}", seed)
    _mask_png(root / "masks" / f"{name}.png", box_mask(W, H, box))


def _flat(root, name, seed=0, box=BOX, prompt="a thing"):
    _image(root / f"{name}.png", seed)
    _mask_png(root / f"{name}_mask.png", box_mask(W, H, box))
    if prompt is not None:
        _text(root / f"{name}.txt", prompt)


def _problems(plan):
    return dict(plan.problems)


# --- the structured layout -------------------------------------------------------------


def test_structured_layout_reads_pixels_mask_csv_prompt_txt_prompt_and_reference(tmp_path):
    _structured(tmp_path, "cat", seed=1)
    _structured(tmp_path, "dog", seed=2, box=(0, 0, 10, 10))
    _structured(tmp_path, "owl", seed=3)
    _text(tmp_path / "prompts.csv", 'name,prompt\ncat,"a cat, sleeping"\n')
    _text(tmp_path / "images" / "dog.txt", "a dog\n")
    _text(tmp_path / "prompts" / "owl.txt", "an owl")
    _image(tmp_path / "references" / "cat.png", seed=9)

    plan = plan_folder(tmp_path)

    assert plan.problems == []
    assert [s.id for s in plan.samples] == ["cat", "dog", "owl"]
    cat, dog, owl = plan.samples
    np.testing.assert_array_equal(np.asarray(cat.image), np.asarray(make_image(W, H, seed=1)))
    np.testing.assert_array_equal(cat.mask, box_mask(W, H, BOX))
    np.testing.assert_array_equal(dog.mask, box_mask(W, H, (0, 0, 10, 10)))
    assert (cat.prompt, dog.prompt, owl.prompt) == ("a cat, sleeping", "a dog", "an owl")
    np.testing.assert_array_equal(np.asarray(cat.reference), np.asarray(make_image(W, H, seed=9)))
    assert dog.reference is None
    assert cat.metadata == {
        "source": "folder",
        "folder": str(tmp_path.resolve()),
        "files": {
            "image": "images/cat.png",
            "mask": "masks/cat.png",
            "prompt": "prompts.csv",
            "reference": "references/cat.png",
        },
    }
    assert dog.metadata["files"]["prompt"] == "images/dog.txt"
    assert owl.metadata["files"]["prompt"] == "prompts/owl.txt"
    assert any("structured" in note for note in plan.notes)
    assert not any("flat" in note for note in plan.notes)


def test_structured_accepts_jpeg_images_and_non_png_masks(tmp_path):
    _image(tmp_path / "images" / "a.jpg")
    mask = Image.fromarray((box_mask(W, H, BOX) * 255).astype(np.uint8)).convert("RGB")
    (tmp_path / "masks").mkdir()
    mask.save(tmp_path / "masks" / "a.webp", lossless=True)
    _text(tmp_path / "a.txt", "a prompt beside the folders")

    plan = plan_folder(tmp_path)

    assert plan.problems == []
    (sample,) = plan.samples
    np.testing.assert_array_equal(sample.binary_mask, box_mask(W, H, BOX) > 0.5)
    assert sample.metadata["files"] == {"image": "images/a.jpg", "mask": "masks/a.webp", "prompt": "a.txt"}


def test_prompts_csv_handles_quoted_commas_quotes_and_a_byte_order_mark(tmp_path):
    for name in ("a", "b"):
        _structured(tmp_path, name)
    (tmp_path / "prompts.csv").write_bytes(
        '\ufeffname,prompt\na,"red, green, and blue"\nb,"a ""quoted"" word"\n'.encode("utf-8")
    )

    plan = plan_folder(tmp_path)

    assert plan.problems == []
    assert [s.prompt for s in plan.samples] == ["red, green, and blue", 'a "quoted" word']


def test_prompts_csv_with_a_wrong_header_is_reported(tmp_path):
    _structured(tmp_path, "a")
    _text(tmp_path / "prompts.csv", "file,text\na,hello\n")

    problems = _problems(plan_folder(tmp_path))

    assert "name,prompt" in problems["prompts.csv"]
    assert "no prompt" in problems["a"]


# --- the flat layout -------------------------------------------------------------------


def test_flat_layout_with_optional_reference(tmp_path):
    _flat(tmp_path, "x", seed=1, prompt="an x\n")
    _flat(tmp_path, "y", seed=2, prompt="a y")
    _flat(tmp_path, "z", seed=3, prompt="a z")
    _image(tmp_path / "x_reference.png", seed=7)
    _image(tmp_path / "y_ref.jpg", seed=8)

    plan = plan_folder(tmp_path)

    assert plan.problems == []
    x, y, z = plan.samples
    assert [s.id for s in plan.samples] == ["x", "y", "z"]
    assert [s.prompt for s in plan.samples] == ["an x", "a y", "a z"]
    np.testing.assert_array_equal(np.asarray(x.image), np.asarray(make_image(W, H, seed=1)))
    np.testing.assert_array_equal(x.mask, box_mask(W, H, BOX))
    np.testing.assert_array_equal(np.asarray(x.reference), np.asarray(make_image(W, H, seed=7)))
    assert y.reference is not None and z.reference is None
    assert x.metadata["files"] == {
        "image": "x.png",
        "mask": "x_mask.png",
        "prompt": "x.txt",
        "reference": "x_reference.png",
    }
    assert any("flat" in note for note in plan.notes)
    assert not any("structured" in note for note in plan.notes)


def test_both_layouts_in_one_folder_are_merged_and_said(tmp_path):
    _structured(tmp_path, "s")
    _text(tmp_path / "images" / "s.txt", "structured")
    _flat(tmp_path, "f", prompt="flat")

    plan = plan_folder(tmp_path)

    assert [(s.id, s.prompt) for s in plan.samples] == [("f", "flat"), ("s", "structured")]
    layout = next(note for note in plan.notes if note.startswith("layout"))
    assert "structured" in layout and "flat" in layout


# --- broken files: reported by name, the good samples still import ---------------------


def test_every_broken_file_is_reported_by_name_and_the_good_ones_import(tmp_path):
    _flat(tmp_path, "good")
    _image(tmp_path / "nomask.png")
    _text(tmp_path / "nomask.txt", "p")
    _mask_png(tmp_path / "noimage_mask.png", box_mask(W, H, BOX))
    _flat(tmp_path, "noprompt", prompt=None)
    _flat(tmp_path, "truncated")
    data = (tmp_path / "truncated.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    _flat(tmp_path, "textfile")
    (tmp_path / "textfile.png").write_text("this is not a PNG")
    _flat(tmp_path, "badsize")
    _mask_png(tmp_path / "badsize_mask.png", box_mask(W + 8, H, BOX))
    _flat(tmp_path, "empty", box=(0, 0, 0, 0))
    _flat(tmp_path, "full", box=(0, 0, W, H))
    _flat(tmp_path, "blankprompt", prompt="  \n")

    plan = plan_folder(tmp_path)
    problems = _problems(plan)

    assert [s.id for s in plan.samples] == ["good"]
    assert sorted(problems) == sorted(
        ["nomask", "noimage", "noprompt", "truncated", "textfile", "badsize", "empty", "full", "blankprompt"]
    )
    assert [name for name, _ in plan.problems] == sorted(problems)  # deterministic order
    assert "no mask" in problems["nomask"] and "nomask_mask.png" in problems["nomask"]
    assert "noimage_mask.png" in problems["noimage"] and "no image" in problems["noimage"]
    assert "no prompt" in problems["noprompt"] and "noprompt.txt" in problems["noprompt"]
    assert "truncated.png" in problems["truncated"] and "truncated" in problems["truncated"].split(":", 1)[1]
    assert "textfile.png" in problems["textfile"] and "not an image" in problems["textfile"]
    assert "48x32" in problems["badsize"] and "40x32" in problems["badsize"]
    assert "empty" in problems["empty"]
    assert "whole image" in problems["full"] and "--invert-masks" in problems["full"]
    assert "blankprompt.txt" in problems["blankprompt"] and "empty" in problems["blankprompt"]
    for name, reason in plan.problems:
        assert repr(name) in reason  # every reason names its sample


def test_structured_orphans_and_a_missing_masks_folder(tmp_path):
    _image(tmp_path / "images" / "lonely.png")
    _mask_png(tmp_path / "masks" / "ghost.png", box_mask(W, H, BOX))
    _image(tmp_path / "references" / "stray.png")

    problems = _problems(plan_folder(tmp_path))

    assert "no mask" in problems["lonely"] and "masks/lonely.png" in problems["lonely"]
    assert "masks/ghost.png" in problems["ghost"] and "no image" in problems["ghost"]
    assert "references/stray.png" in problems["stray"]


def test_duplicate_names_are_problems(tmp_path):
    _structured(tmp_path, "twice")
    _image(tmp_path / "images" / "twice.jpg", seed=5)  # same name, another extension
    _structured(tmp_path, "both")
    _flat(tmp_path, "both")  # same name in both layouts
    _structured(tmp_path, "rows")
    _structured(tmp_path, "ok")
    _text(tmp_path / "prompts.csv", "name,prompt\ntwice,t\nboth,b\nrows,one\nrows,two\nok,fine\n")

    plan = plan_folder(tmp_path)
    problems = _problems(plan)

    assert [s.id for s in plan.samples] == ["ok"]
    assert "duplicate" in problems["twice"] and "images/twice.jpg" in problems["twice"]
    assert "duplicate" in problems["both"] and "both.png" in problems["both"]
    assert "duplicate" in problems["rows"] and "prompts.csv" in problems["rows"]
    assert len(plan.problems) == 3  # one reason per name


# --- masks ---------------------------------------------------------------------------


def test_a_mostly_white_mask_is_kept_with_a_likely_inverted_note(tmp_path):
    _flat(tmp_path, "big", box=(0, 0, W, 26))  # 26/32 = 81%
    _flat(tmp_path, "small")

    plan = plan_folder(tmp_path)

    assert [s.id for s in plan.samples] == ["big", "small"]
    (note,) = [note for note in plan.notes if "inverted" in note]
    assert note.startswith("big: likely inverted") and "81%" in note and "--invert-masks" in note


def test_invert_masks_flips_every_mask_before_validation(tmp_path):
    _flat(tmp_path, "keepwhite", box=(0, 0, W, 26))  # white = keep: 19% to inpaint once flipped
    _flat(tmp_path, "allwhite", box=(0, 0, W, H))  # flipped: empty

    plan = plan_folder(tmp_path, invert_masks=True)

    (sample,) = plan.samples
    np.testing.assert_array_equal(sample.mask, 1.0 - box_mask(W, H, (0, 0, W, 26)))
    assert sample.mask.dtype == np.float32
    assert sample.metadata["mask_inverted"] is True
    assert "empty" in _problems(plan)["allwhite"]
    assert any("invert" in note and "flipped" in note for note in plan.notes)
    assert not any("likely inverted" in note for note in plan.notes)


def test_soft_masks_stay_soft(tmp_path):
    soft = np.tile(np.linspace(0, 0.9, W, dtype=np.float32), (H, 1))
    _flat(tmp_path, "soft")
    _mask_png(tmp_path / "soft_mask.png", soft)

    (sample,) = plan_folder(tmp_path).samples

    assert len(np.unique(sample.mask)) > 10
    np.testing.assert_allclose(sample.mask, np.round(soft * 255) / 255, atol=1e-6)

    inverted = plan_folder(tmp_path, invert_masks=True).samples[0]
    np.testing.assert_allclose(inverted.mask, 1 - np.round(soft * 255) / 255, atol=1e-6)


# --- the folder itself ---------------------------------------------------------------


def test_missing_folder_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        plan_folder(tmp_path / "nowhere")


def test_a_file_instead_of_a_folder_is_refused(tmp_path):
    _image(tmp_path / "a.png")
    with pytest.raises(NotADirectoryError, match="a.png"):
        plan_folder(tmp_path / "a.png")


@pytest.mark.parametrize("contents", ["empty", "text only", "hidden only"])
def test_a_folder_with_nothing_recognisable_raises_value_error(tmp_path, contents):
    if contents == "text only":
        _text(tmp_path / "README.txt", "hello")
    if contents == "hidden only":
        _image(tmp_path / "._resource.png")
    with pytest.raises(ValueError, match="no images found.*images/NAME.png"):
        plan_folder(tmp_path)


# --- stored bytes ------------------------------------------------------------------------


def _stored(sample):
    from inpaint_tui.jobs.samples import to_new_sample

    return to_new_sample(sample, "folder")


def _decoded(data):
    import io

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def test_a_png_source_is_stored_with_its_own_bytes_and_anything_else_is_re_encoded(tmp_path):
    """An RGB PNG (image and reference) is stored byte for byte as the file (no re-encode);
    a JPEG, a palette PNG and an EXIF-rotated PNG are re-encoded. Every stored image decodes
    to exactly the sample's pixels."""
    import io

    _structured(tmp_path, "plain", seed=1)
    (tmp_path / "references").mkdir()
    make_image(W, H, seed=7).save(tmp_path / "references" / "plain.png", compress_level=1)  # not PIL's default level
    _structured(tmp_path, "photo", seed=2, ext="jpg")
    _image(tmp_path / "images" / "palette.png", seed=3)
    Image.open(tmp_path / "images" / "palette.png").convert("P").save(tmp_path / "images" / "palette.png")
    _mask_png(tmp_path / "masks" / "palette.png", box_mask(W, H, BOX))
    rotated = make_image(H, W, seed=4)  # stored sideways, upright after EXIF orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(tmp_path / "images" / "rotated.png", exif=exif)
    _mask_png(tmp_path / "masks" / "rotated.png", box_mask(W, H, BOX))
    _text(tmp_path / "prompts.csv", "name,prompt\nplain,a\nphoto,b\npalette,c\nrotated,d\n")

    plan = plan_folder(tmp_path)
    samples = {sample.id: sample for sample in plan.samples}
    assert set(samples) == {"plain", "photo", "palette", "rotated"}, plan.problems
    stored = {name: _stored(sample) for name, sample in samples.items()}

    assert stored["plain"].image_png == (tmp_path / "images" / "plain.png").read_bytes()
    assert stored["plain"].reference_png == (tmp_path / "references" / "plain.png").read_bytes()
    assert samples["rotated"].size == (W, H)
    for name in ("photo", "palette", "rotated"):
        source = tmp_path / "images" / f"{name}.{'jpg' if name == 'photo' else 'png'}"
        assert stored[name].image_png != source.read_bytes()
    for name, sample in samples.items():
        assert np.array_equal(_decoded(stored[name].image_png), np.asarray(sample.image)), name
    assert np.array_equal(_decoded(stored["plain"].reference_png), np.asarray(samples["plain"].reference))

    # An edited copy keeps the info dict but not the file's pixels: it is encoded anew.
    edited = samples["plain"].image.copy()
    edited.putpixel((0, 0), (1, 2, 3))
    from engine.samples import png_bytes

    assert np.array_equal(_decoded(png_bytes(edited)), np.asarray(edited))
    assert Image.open(io.BytesIO(png_bytes(edited))).getpixel((0, 0)) == (1, 2, 3)
