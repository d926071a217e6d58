"""Import samples from a folder of files (torch-free: numpy and PIL only).

Two layouts are read, and a folder may mix them:

structured::

    images/NAME.png|jpg|jpeg|webp|...   the photo
    masks/NAME.png (or any image type)  white = inpaint; masks/NAME_mask.* also accepted
    prompts.csv                         header `name,prompt` (quoted commas are fine)
      or images/NAME.txt, prompts/NAME.txt, NAME.txt
    references/NAME.*                   optional ground truth

flat::

    NAME.png|jpg|...  NAME_mask.png  NAME.txt  [NAME_reference.* | NAME_ref.*]

`plan_folder` never stops at the first bad file: every sample it can build is in
`plan.samples`, every one it cannot is in `plan.problems` as (name, reason), and
`plan.notes` says which layout was found and flags masks that look inverted.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from engine.samples import Sample, SampleError, keep_source_png, make_sample, normalise_mask
from engine.sources import ImportPlan

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MASK_SUFFIX = "_mask"
REFERENCE_SUFFIXES = ("_reference", "_ref")
PROMPTS_CSV = "prompts.csv"
# A mask whose white (>= 0.5) area is larger than this is probably drawn white = keep.
INVERTED_COVERAGE = 0.5

LAYOUT_HELP = (
    "expected images/NAME.png + masks/NAME.png (+ prompts.csv or NAME.txt), "
    "or NAME.png + NAME_mask.png + NAME.txt side by side"
)


@dataclass
class _Entry:
    """The files found for one sample name (paths relative to the folder)."""

    images: list[Path] = field(default_factory=list)
    masks: list[Path] = field(default_factory=list)
    references: list[Path] = field(default_factory=list)


def plan_folder(path: str | Path, *, invert_masks: bool = False, follow_links: bool = False) -> ImportPlan:
    """Read a folder of images, masks and prompts into an ImportPlan (sorted by name).

    With `invert_masks=True` every mask is flipped (1 - m) before validation, for folders
    whose masks are drawn white = keep. A file reached through a symbolic link that points
    outside the folder is skipped with a note naming the link, unless `follow_links=True`:
    importing a folder should not read files elsewhere on the machine behind the user's back.

    Raises FileNotFoundError for a missing folder, NotADirectoryError for a file, and
    ValueError for a folder with nothing that looks like either layout.
    """
    folder = Path(path).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"sample folder {folder} does not exist")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder; {LAYOUT_HELP}")

    plan = ImportPlan()
    entries: dict[str, _Entry] = {}
    layouts = []
    if _scan_structured(folder, entries):
        layouts.append("structured (images/ + masks/)")
    if _scan_flat(folder, entries):
        layouts.append("flat (NAME.png + NAME_mask.png)")
    if not layouts:
        raise ValueError(f"no images found in {folder}: {LAYOUT_HELP}")
    outside = _outside(folder, follow_links)
    for entry in entries.values():
        for found in (entry.images, entry.masks, entry.references):
            for relative in [r for r in found if outside(r)]:
                found.remove(relative)
                plan.note(_link_note(folder, relative))
    for name in [n for n, entry in entries.items() if not (entry.images or entry.masks or entry.references)]:
        del entries[name]
    plan.note(f"layout: {' and '.join(layouts)} in {folder}")
    if invert_masks:
        plan.note("invert_masks: every mask was flipped (1 - m) before validation, so white in the files means keep")

    csv_prompts = {} if outside(Path(PROMPTS_CSV)) else _read_prompts_csv(folder, plan)
    if outside(Path(PROMPTS_CSV)):
        plan.note(_link_note(folder, Path(PROMPTS_CSV)))
    unused = sorted(set(csv_prompts) - set(entries))
    if unused:
        plan.note(f"{PROMPTS_CSV} has prompts for names with no image: {', '.join(unused)}")

    def build_each():  # one sample's files decoded at a time (see ImportPlan)
        for name in sorted(entries):
            try:
                yield _build(folder, name, entries[name], csv_prompts, invert_masks, plan, outside)
            except SampleError as error:
                plan.problem(name, str(error))
        plan.sort_problems()

    plan.expected = len(entries)
    return plan.follow(build_each())


def _outside(folder: Path, follow_links: bool):
    """A test for relative paths: True for an existing one that resolves outside `folder`
    (through a link), always False with `follow_links`."""
    root = folder.resolve()

    def outside(relative: Path) -> bool:
        path = folder / relative
        if follow_links or not path.exists():
            return False
        return not path.resolve().is_relative_to(root)

    return outside


def _link_note(folder: Path, relative: Path) -> str:
    return (f"skipped link {relative.as_posix()} -> {(folder / relative).resolve()}: it points outside "
            f"the folder (use --follow-links to read it)")


def _scan_structured(folder: Path, entries: dict[str, _Entry]) -> bool:
    """Collect images/, masks/ and references/; True if the layout is present."""
    images_dir, masks_dir = folder / "images", folder / "masks"
    if not images_dir.is_dir() and not masks_dir.is_dir():
        return False
    image_names = {file.stem for file in _image_files(images_dir)}
    for file in _image_files(images_dir):
        entries.setdefault(file.stem, _Entry()).images.append(file.relative_to(folder))
    for file in _image_files(masks_dir):
        name = file.stem
        # masks/NAME_mask.png is a common variant; use it only when it names a real image.
        if name not in image_names and name.endswith(MASK_SUFFIX) and name[: -len(MASK_SUFFIX)] in image_names:
            name = name[: -len(MASK_SUFFIX)]
        entries.setdefault(name, _Entry()).masks.append(file.relative_to(folder))
    for file in _image_files(folder / "references"):
        entries.setdefault(file.stem, _Entry()).references.append(file.relative_to(folder))
    return True


def _scan_flat(folder: Path, entries: dict[str, _Entry]) -> bool:
    """Collect NAME.*, NAME_mask.*, NAME_ref(erence).* at the top level; True if any."""
    files = _image_files(folder)
    for file in files:
        stem, relative = file.stem, file.relative_to(folder)
        if stem.endswith(MASK_SUFFIX):
            entries.setdefault(stem[: -len(MASK_SUFFIX)], _Entry()).masks.append(relative)
            continue
        suffix = next((s for s in REFERENCE_SUFFIXES if stem.endswith(s)), None)
        if suffix is not None:
            entries.setdefault(stem[: -len(suffix)], _Entry()).references.append(relative)
            continue
        entries.setdefault(stem, _Entry()).images.append(relative)
    return bool(files)


def _image_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    # Hidden files include macOS's "._NAME.png" resource forks, which are not images.
    return sorted(
        file
        for file in directory.iterdir()
        if file.is_file() and not file.name.startswith(".") and file.suffix.lower() in IMAGE_EXTENSIONS
    )


def _read_prompts_csv(folder: Path, plan: ImportPlan) -> dict[str, str | None]:
    """name -> prompt from prompts.csv; a malformed file or row is a problem, not a crash."""
    path = folder / PROMPTS_CSV
    if not path.is_file():
        return {}
    prompts: dict[str, str | None] = {}
    try:
        # utf-8-sig: spreadsheet programs often write a byte-order mark before the header.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = [name.strip().lower() for name in reader.fieldnames or []]
            if "name" not in fields or "prompt" not in fields:
                plan.problem(PROMPTS_CSV, f"header is {','.join(reader.fieldnames or []) or 'missing'}; expected name,prompt")
                return {}
            name_key = reader.fieldnames[fields.index("name")]
            prompt_key = reader.fieldnames[fields.index("prompt")]
            for row in reader:
                name = (row.get(name_key) or "").strip()
                if not name:
                    continue
                if name in prompts:
                    # Ambiguous: None makes _find_prompt report it once, under the sample's name.
                    prompts[name] = None
                    continue
                prompts[name] = (row.get(prompt_key) or "").strip()
    except (UnicodeDecodeError, csv.Error) as error:
        plan.problem(PROMPTS_CSV, f"cannot read {path}: {error}")
        return {}
    return prompts


def _find_prompt(
    folder: Path, name: str, csv_prompts: dict[str, str | None], *, structured: bool, outside=lambda _: False,
    plan: ImportPlan | None = None,
) -> tuple[str, str]:
    """(prompt, relative file) for a name, or raise SampleError saying where it was looked for."""
    if name in csv_prompts:
        prompt = csv_prompts[name]
        if prompt is None:
            raise SampleError(f"sample {name!r}: duplicate name, {PROMPTS_CSV} has more than one row for it")
        if not prompt:
            raise SampleError(f"sample {name!r}: its prompt in {PROMPTS_CSV} is empty")
        return prompt, PROMPTS_CSV
    candidates = (Path("images") / f"{name}.txt", Path("prompts") / f"{name}.txt", Path(f"{name}.txt"))
    for relative in candidates:
        path = folder / relative
        if path.is_file() and outside(relative):
            if plan is not None:
                plan.note(_link_note(folder, relative))
            continue
        if path.is_file():
            try:
                prompt = path.read_text(encoding="utf-8-sig").strip()
            except UnicodeDecodeError as error:
                raise SampleError(f"sample {name!r}: prompt file {relative.as_posix()} is not UTF-8 text: {error}") from None
            if not prompt:
                raise SampleError(f"sample {name!r}: prompt file {relative.as_posix()} is empty")
            return prompt, relative.as_posix()
    # Suggest the files that fit the layout the sample is in; all of them are accepted.
    suggested = candidates[:2] if structured else candidates[2:]
    raise SampleError(
        f"sample {name!r}: no prompt; add a row to {PROMPTS_CSV} or a file "
        + " or ".join(candidate.as_posix() for candidate in suggested)
    )


def _build(
    folder: Path,
    name: str,
    entry: _Entry,
    csv_prompts: dict[str, str | None],
    invert_masks: bool,
    plan: ImportPlan,
    outside=lambda _: False,
) -> Sample:
    for role, found in (("image", entry.images), ("mask", entry.masks), ("reference", entry.references)):
        if len(found) > 1:
            raise SampleError(f"sample {name!r}: duplicate name, {len(found)} {role} files: " + ", ".join(p.as_posix() for p in found))
    if not entry.images:
        orphans = entry.masks or entry.references
        role = "mask" if entry.masks else "reference"
        raise SampleError(f"sample {name!r}: {role} {orphans[0].as_posix()} has no image (expected images/{name}.png or {name}.png)")
    image_rel = entry.images[0]
    if not entry.masks:
        expected = f"masks/{name}.png" if image_rel.parent.name == "images" else f"{name}{MASK_SUFFIX}.png"
        raise SampleError(f"sample {name!r}: image {image_rel.as_posix()} has no mask (expected {expected})")
    mask_rel = entry.masks[0]
    prompt, prompt_rel = _find_prompt(folder, name, csv_prompts, structured=image_rel.parent.name == "images",
                                      outside=outside, plan=plan)

    image = _open(folder, image_rel, name, "image")
    mask = normalise_mask(_open(folder, mask_rel, name, "mask"), sample_id=name)
    if invert_masks:
        mask = 1.0 - mask
    reference = _open(folder, entry.references[0], name, "reference") if entry.references else None

    files = {"image": image_rel.as_posix(), "mask": mask_rel.as_posix(), "prompt": prompt_rel}
    if entry.references:
        files["reference"] = entry.references[0].as_posix()
    metadata = {"source": "folder", "folder": str(folder.resolve()), "files": files}
    if invert_masks:
        metadata["mask_inverted"] = True  # the stored mask is not the file's pixels
    try:
        sample = make_sample(name, image, mask, prompt, reference=reference, metadata=metadata)
    except SampleError as error:
        # make_sample names the sample; add the files so the user knows which one to fix.
        message = f"{error} (image {image_rel.as_posix()}, mask {mask_rel.as_posix()})"
        if "whole image" in str(error) and not invert_masks:
            message += "; use --invert-masks if white means keep"
        raise SampleError(message) from None

    coverage = float(sample.binary_mask.mean())
    if coverage > INVERTED_COVERAGE:
        hint = (
            "masks were already flipped by --invert-masks; is this one drawn white = inpaint?"
            if invert_masks
            else "use --invert-masks if white means keep"
        )
        plan.note(f"{name}: likely inverted: {mask_rel.as_posix()} covers {coverage:.0%} — {hint}")
    return sample


def _open(folder: Path, relative: Path, name: str, role: str) -> Image.Image:
    """Open an image file fully, turning every decoding failure into a SampleError."""
    try:
        data = (folder / relative).read_bytes()
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            if opened.format == "PNG":
                keep_source_png(opened, data)  # stored as is unless the pixels change below
            # Phone photos store their rotation in EXIF; masks are painted on the upright view.
            return ImageOps.exif_transpose(opened)
    except UnidentifiedImageError:
        raise SampleError(f"sample {name!r}: {role} file {relative.as_posix()} is not an image PIL can read") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        # Truncated files surface as OSError, broken PNG chunks as SyntaxError.
        raise SampleError(f"sample {name!r}: cannot read {role} file {relative.as_posix()}: {error}") from None

