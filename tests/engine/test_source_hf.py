"""Hugging Face sources: PIPE joined with PIPE_Masks, generic datasets, hub access.

Small parquet files with PIPE's and PIPE_Masks' schemas stand in for the hub; every row's
pixels say which (dataset, img_id, ann_id) it belongs to, so a wrong join shows."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.sources import hf
from engine.sources.hf import NO_MASK, SourceUnavailable, plan_hf, plan_pipe, resolve_token

W, H = 32, 24

# (dataset, img_id, ann_id) -> mask rectangle (x0, y0, x1, y1); each one distinct.
MASK_BOXES = {
    ("coco", "100", "1"): (2, 2, 10, 8),
    ("coco", "100", "2"): (20, 12, 30, 22),  # same img_id, another object
    ("lvis", "100", "1"): (0, 0, 4, 4),  # same img_id and ann_id, another dataset: a decoy
    ("coco", "400", "4"): (0, 0, 30, 22),  # more than half white: likely inverted
    ("coco", "500", "5"): (5, 5, 15, 15),
    ("coco", "999", "9"): (1, 1, 3, 3),  # no PIPE row uses it
}
SMALL_MASK = ("coco", "300", "3")  # its mask is half the image's size
NO_MASK_KEY = ("coco", "200", "7")
SMALL_REFERENCE = ("coco", "500", "5")
PIPE_ORDER = [("coco", "100", "1"), ("coco", "100", "2"), NO_MASK_KEY, SMALL_MASK, ("coco", "400", "4"), SMALL_REFERENCE]
CLASSES = {"1": "dog", "2": "cat", "7": "car", "3": "cup", "4": "sofa", "5": "kite"}


def sid(key):
    return "pipe-" + "-".join(key)


def box_mask(box, size=(W, H)):
    array = np.zeros((size[1], size[0]), dtype=np.uint8)
    x0, y0, x1, y1 = box
    array[y0:y1, x0:x1] = 255
    return array


def colour(key, salt):
    return (int(key[1]) % 256, int(key[2]) * 20 % 256, salt)


@pytest.fixture(scope="module")
def pipe_files(tmp_path_factory):
    import datasets

    root = tmp_path_factory.mktemp("pipe")
    rows = {name: [] for name in ("source_img", "target_img", "Instruction_VLM-LLM", "Instruction_Class",
                                  "Instruction_Ref_Dataset", "object_location", "target_img_dataset", "img_id", "ann_id")}
    for key in PIPE_ORDER:
        ref_size = (W - 2, H - 4) if key == SMALL_REFERENCE else (W, H)
        rows["source_img"].append(Image.new("RGB", (W, H), colour(key, 1)))
        rows["target_img"].append(Image.new("RGB", ref_size, colour(key, 2)))
        rows["Instruction_VLM-LLM"].append(f"add a {CLASSES[key[2]]} near the window")
        rows["Instruction_Class"].append(f"add a {CLASSES[key[2]]}")
        rows["Instruction_Ref_Dataset"].append(f"ref {CLASSES[key[2]]}")
        rows["object_location"].append("at the left")
        rows["target_img_dataset"].append(key[0])
        rows["img_id"].append(key[1])
        rows["ann_id"].append(key[2])
    pipe_features = datasets.Features(
        {name: datasets.Image() if name.endswith("_img") else datasets.Value("string") for name in rows}
    )
    # Masks in another order than PIPE, with decoys: the join must use all three ids.
    mask_rows = {"mask": [], "target_img_dataset": [], "img_id": [], "ann_id": []}
    entries = [(key, box_mask(box)) for key, box in reversed(MASK_BOXES.items())]
    entries.insert(2, (SMALL_MASK, box_mask((1, 1, 8, 8), size=(W // 2, H // 2))))
    for key, array in entries:
        mask_rows["mask"].append(Image.fromarray(array, mode="L"))
        for name, value in zip(hf.PIPE_KEYS, key):
            mask_rows[name].append(value)
    mask_features = datasets.Features(
        {"mask": datasets.Image(), **{name: datasets.Value("string") for name in hf.PIPE_KEYS}}
    )
    pipe_path, masks_path = root / "pipe-test.parquet", root / "masks-test.parquet"
    datasets.Dataset.from_dict(rows, features=pipe_features).to_parquet(str(pipe_path))
    datasets.Dataset.from_dict(mask_rows, features=mask_features).to_parquet(str(masks_path))
    return {"pipe": [pipe_path], "masks": [masks_path]}


@pytest.fixture(scope="module")
def skipped(pipe_files):
    return plan_pipe(data_files=pipe_files)


def test_join_row_by_row_uses_all_three_ids(skipped):
    by_id = {sample.id: sample for sample in skipped.samples}
    assert set(by_id) == {sid(("coco", "100", "1")), sid(("coco", "100", "2")), sid(("coco", "400", "4"))}
    for key in (("coco", "100", "1"), ("coco", "100", "2"), ("coco", "400", "4")):
        sample = by_id[sid(key)]
        np.testing.assert_array_equal(sample.binary_mask, box_mask(MASK_BOXES[key]) > 0, err_msg=sid(key))
        assert sample.image.getpixel((0, 0)) == colour(key, 1)  # source_img is the image
        assert sample.reference.getpixel((0, 0)) == colour(key, 2)  # target_img the reference


def test_missing_mask_and_size_mismatches_are_named_problems(skipped):
    problems = dict(skipped.problems)
    assert problems[sid(NO_MASK_KEY)] == NO_MASK
    assert "mask is 16x12 but the image is 32x24" in problems[sid(SMALL_MASK)]
    assert "reference is 30x20" in problems[sid(SMALL_REFERENCE)]
    assert len(skipped.problems) == 3
    assert any("1 PIPE row(s) have no mask" in note for note in skipped.notes)


def test_resize_fixes_mismatches_and_notes_the_rows(pipe_files):
    plan = plan_pipe(data_files=pipe_files, mismatched="resize")
    by_id = {sample.id: sample for sample in plan.samples}
    assert dict(plan.problems) == {sid(NO_MASK_KEY): NO_MASK}
    small = by_id[sid(SMALL_MASK)]
    expected = np.asarray(Image.fromarray(box_mask((1, 1, 8, 8), size=(W // 2, H // 2))).resize((W, H), Image.Resampling.NEAREST)) > 0
    np.testing.assert_array_equal(small.binary_mask, expected)
    assert set(np.unique(small.mask)) == {0.0, 1.0}  # nearest: still a hard mask
    assert by_id[sid(SMALL_REFERENCE)].reference.size == (W, H)
    assert any("resized 1 mask(s)" in note and sid(SMALL_MASK) in note for note in plan.notes)
    assert any("resized 1 reference(s)" in note and sid(SMALL_REFERENCE) in note for note in plan.notes)


def test_prompt_from_column_and_template(pipe_files, skipped):
    dog = sid(("coco", "100", "1"))
    assert {s.id: s.prompt for s in skipped.samples}[dog] == "add a dog"
    plan = plan_pipe(data_files=pipe_files, limit=1, prompt_column="Instruction_VLM-LLM")
    assert plan.samples[0].prompt == "add a dog near the window"
    plan = plan_pipe(data_files=pipe_files, limit=1, prompt_template="a photo: {prompt}, {object_location} ({Instruction_Ref_Dataset})")
    assert plan.samples[0].prompt == "a photo: add a dog, at the left (ref dog)"
    with pytest.raises(ValueError, match="unknown column.*nope"):
        plan_pipe(data_files=pipe_files, prompt_template="{nope}")
    with pytest.raises(ValueError, match="no column 'Caption'"):
        plan_pipe(data_files=pipe_files, prompt_column="Caption")


def test_metadata_keeps_scalar_columns_not_images(skipped):
    meta = {s.id: s.metadata for s in skipped.samples}[sid(("coco", "100", "2"))]
    assert meta["img_id"] == "100" and meta["ann_id"] == "2" and meta["target_img_dataset"] == "coco"
    assert meta["Instruction_VLM-LLM"] == "add a cat near the window"
    assert meta["Instruction_Ref_Dataset"] == "ref cat" and meta["object_location"] == "at the left"
    assert meta["source"] == "hf:paint-by-inpaint/PIPE" and meta["split"] == "test"
    assert not {"source_img", "target_img", "mask"} & set(meta)


def test_limit_reads_only_the_first_rows(pipe_files):
    plan = plan_pipe(data_files=pipe_files, limit=2)
    assert [s.id for s in plan.samples] == [sid(("coco", "100", "1")), sid(("coco", "100", "2"))]
    assert plan.problems == []
    plan = plan_pipe(data_files=pipe_files, limit=3)
    assert len(plan.samples) == 2 and plan.problems == [(sid(NO_MASK_KEY), NO_MASK)]


def test_inverted_masks_noted_and_flipped(pipe_files, skipped):
    big = sid(("coco", "400", "4"))
    assert any("likely inverted" in note and big in note for note in skipped.notes)
    assert not any(sid(("coco", "100", "1")) in note for note in skipped.notes if "inverted" in note)
    flipped = plan_pipe(data_files=pipe_files, limit=5, invert_masks=True)
    by_id = {s.id: s for s in flipped.samples}
    np.testing.assert_array_equal(by_id[big].binary_mask, box_mask(MASK_BOXES[("coco", "400", "4")]) == 0)
    np.testing.assert_array_equal(by_id[sid(("coco", "100", "1"))].binary_mask, box_mask(MASK_BOXES[("coco", "100", "1")]) == 0)
    assert any("before inverting" in note for note in flipped.notes)


def test_mask_scan_stops_once_every_key_is_found():
    class Table:
        def __init__(self):
            self.read = 0

        def cast_column(self, *_):
            return self

        def __iter__(self):
            for index in range(1000):
                self.read += 1
                yield {"mask": {"bytes": b"x", "path": None}, "target_img_dataset": "coco", "img_id": str(index), "ann_id": 1}

    table = Table()
    found = hf._find_masks(table, {("coco", "3", "1"), ("coco", "5", "1")})  # int ann_id still joins
    assert set(found) == {("coco", "3", "1"), ("coco", "5", "1")} and table.read == 6


def test_plan_hf_with_custom_columns(tmp_path):
    import datasets

    images = [Image.new("RGB", (W, H), (10 * i, 0, 0)) for i in range(3)]
    holes = [Image.fromarray(box_mask((i, i, i + 6, i + 6)), mode="L") for i in range(3)]
    table = datasets.Dataset.from_dict(
        {"photo": images, "hole": holes, "caption": ["a", "b", ""], "orig": images, "uid": ["x", "y", "z"], "score": [1.0, 2.0, 3.0]},
        features=datasets.Features({"photo": datasets.Image(), "hole": datasets.Image(), "caption": datasets.Value("string"),
                                    "orig": datasets.Image(), "uid": datasets.Value("string"), "score": datasets.Value("float32")}),
    )
    path = tmp_path / "custom.parquet"
    table.to_parquet(str(path))
    plan = plan_hf("me/custom", split="test", image_column="photo", mask_column="hole", prompt_column="caption",
                   reference_column="orig", id_column="uid", prompt_template="{prompt} {uid}", data_files=[path])
    assert [s.id for s in plan.samples] == ["custom-x", "custom-y"]
    assert [s.prompt for s in plan.samples] == ["a x", "b y"]
    np.testing.assert_array_equal(plan.samples[1].binary_mask, box_mask((1, 1, 7, 7)) > 0)
    assert plan.samples[1].reference.getpixel((0, 0)) == (10, 0, 0)
    assert plan.samples[0].metadata == {"source": "hf:me/custom", "split": "test", "caption": "a", "uid": "x", "score": 1.0}
    assert len(plan.problems) == 1 and plan.problems[0][0] == "custom-z" and "empty" in plan.problems[0][1]
    plan = plan_hf("me/custom", split="test", image_column="photo", mask_column="hole", prompt_column="caption",
                   limit=1, data_files=[path])
    assert [s.id for s in plan.samples] == ["custom-0"] and plan.samples[0].reference is None
    with pytest.raises(ValueError, match="no column 'mask'.*photo"):
        plan_hf("me/custom", split="test", image_column="photo", mask_column="mask", prompt_column="caption", data_files=[path])


def test_token_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_token() is None
    (tmp_path / ".env").write_text("# secrets\nOTHER=1\nexport HF_TOKEN='hf_fromfile'\n")
    assert resolve_token() == "hf_fromfile"
    monkeypatch.setenv("HF_TOKEN", "hf_fromenv")
    assert resolve_token() == "hf_fromenv"
    assert resolve_token("hf_arg") == "hf_arg"


def test_hub_path_streams_only_the_split_and_never_leaks_the_token(pipe_files, tmp_path, monkeypatch):
    import datasets

    real_load, calls, checked = datasets.load_dataset, [], []
    local = {hf.PIPE_REPO: pipe_files["pipe"], hf.PIPE_MASKS_REPO: pipe_files["masks"]}

    def fake_load(path, split, **kwargs):  # the hub, served from the local files
        calls.append((path, split, kwargs))
        return real_load("parquet", data_files=[str(f) for f in local[path]], split="train", streaming=kwargs["streaming"])

    monkeypatch.setattr(hf, "_offline", lambda: False)
    monkeypatch.setattr(hf, "_check_hub", lambda repo, token: checked.append((repo, token)))
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("HF_TOKEN=hf_secret123\n")
    plan = plan_pipe(limit=2)
    assert [s.id for s in plan.samples] == [sid(("coco", "100", "1")), sid(("coco", "100", "2"))]
    assert [(path, split) for path, split, _ in calls] == [(hf.PIPE_REPO, "test"), (hf.PIPE_MASKS_REPO, "test")]
    assert all(kwargs == {"streaming": True, "token": "hf_secret123"} for _, _, kwargs in calls)
    assert checked == [(hf.PIPE_REPO, "hf_secret123"), (hf.PIPE_MASKS_REPO, "hf_secret123")]
    assert "hf_secret123" not in repr((plan.notes, plan.problems, [s.metadata for s in plan.samples]))


def test_offline_and_uncached_fails_at_once():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # conftest
    with pytest.raises(SourceUnavailable, match="not in the local cache and HF_HUB_OFFLINE is set"):
        plan_pipe(limit=2)
    with pytest.raises(SourceUnavailable, match="HF_HUB_OFFLINE"):
        plan_hf("nobody/nothing", split="test", image_column="i", mask_column="m", prompt_column="p")


def test_unreachable_hub_is_a_clear_error(monkeypatch):
    import huggingface_hub

    def refuse(self, *args, **kwargs):
        raise ConnectionError("no route")

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", refuse)
    with pytest.raises(SourceUnavailable, match="hub cannot be reached"):
        hf._check_hub("someone/data", None)


def test_bad_options_are_refused(pipe_files):
    with pytest.raises(ValueError, match="mismatched"):
        plan_pipe(data_files=pipe_files, mismatched="crop")
    with pytest.raises(ValueError, match="'pipe' and 'masks'"):
        plan_pipe(data_files={"pipe": pipe_files["pipe"]})


@pytest.mark.skipif(
    os.environ.get("INPAINT_TUI_NETWORK_TESTS") != "1",
    reason="needs the Hugging Face hub (network); set INPAINT_TUI_NETWORK_TESTS=1 to run",
)
def test_real_pipe_two_rows():
    # A fresh interpreter: conftest forced HF_HUB_OFFLINE in this one before the hub libraries loaded.
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    code = (
        "from engine.sources.hf import plan_pipe\n"
        "plan = plan_pipe(limit=2)\n"
        "print(len(plan.samples), len(plan.problems), [s.id for s in plan.samples])\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[:2] == ["2", "0"], result.stdout
