"""Kept in one file: the generic table reader and PIPE share loading, row checks and `_plan_rows`.

Samples from Hugging Face datasets: any dataset with image/mask/prompt columns, and PIPE.

`plan_hf` reads one table whose rows hold an image, a mask and a prompt. `plan_pipe` reads
the PIPE test set (Paint by Inpaint), whose masks live in a second dataset, PIPE_Masks, and
joins them on (target_img_dataset, img_id, ann_id) -- img_id alone repeats, one image has
several annotated objects. Both turn rows into samples through the same `_plan_rows`.

Downloads: PIPE's train split is ~80 GB, and `datasets.load_dataset(repo, split="test")`
prepares *every* split before slicing. So online we stream the requested split only: rows
are read lazily, `limit` stops after N rows, and the mask table is scanned only until every
needed key has been seen. With HF_HUB_OFFLINE set, a copy already in the datasets cache is
used (non-streaming, sliced); anything else fails at once with `SourceUnavailable`.

`datasets` is imported inside functions: importing this module stays torch- and
arrow-free so the CLI can list sources cheaply.
"""

from __future__ import annotations

import io
import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import numpy as np
from PIL import Image

from engine.samples import SampleError, make_sample, normalise_mask
from engine.sources import ImportPlan

PIPE_REPO = "paint-by-inpaint/PIPE"
PIPE_MASKS_REPO = "paint-by-inpaint/PIPE_Masks"
PIPE_KEYS = ("target_img_dataset", "img_id", "ann_id")
PIPE_IMAGE, PIPE_REFERENCE, PIPE_MASK = "source_img", "target_img", "mask"
NO_MASK = "no mask in PIPE_Masks"
INVERTED_FRACTION = 0.5  # a mask more than half white is more likely "white = keep"
_LISTED_IDS = 10  # notes name at most this many rows, then count the rest

Mismatched = Literal["skip", "resize"]


class SourceUnavailable(RuntimeError):
    """The dataset cannot be had: hub unreachable or offline and not cached, or not found."""


# --- hub access ---------------------------------------------------------------------------

def resolve_token(token: str | None = None, *, cwd: str | Path | None = None) -> str | None:
    """The hub token: the argument, else $HF_TOKEN, else `HF_TOKEN=...` in ./.env.

    The token only ever goes to `datasets`/`huggingface_hub`; callers must not put it in
    metadata, notes or messages.
    """
    if token:
        return token
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    env_file = Path(cwd or Path.cwd()) / ".env"
    try:
        lines = env_file.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):].strip()
        key, sep, value = line.partition("=")
        if sep and key.strip() == "HF_TOKEN":
            value = value.split(" #", 1)[0].strip().strip("'\"")
            return value or None
    return None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _check_hub(repo: str, token: str | None) -> None:
    """Fail fast (10 s) instead of letting a download hang on an unreachable hub."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().dataset_info(repo, token=token, timeout=10)
    except GatedRepoError:
        raise SourceUnavailable(
            f"dataset {repo!r} is gated: accept its terms on huggingface.co and set HF_TOKEN "
            "(environment or a .env file) or pass a token"
        ) from None
    except RepositoryNotFoundError:
        raise SourceUnavailable(
            f"dataset {repo!r} was not found on the hub (a private one needs HF_TOKEN)"
        ) from None
    except Exception as error:  # any other failure means the download would fail as well
        raise SourceUnavailable(
            f"dataset {repo!r}: the Hugging Face hub cannot be reached ({type(error).__name__}). "
            "Set HF_HUB_OFFLINE=1 to use a cached copy, or import from local files."
        ) from None


def _load(
    source: str,
    split: str,
    *,
    limit: int | None = None,
    token: str | None = None,
    data_files: Iterable[str | Path] | None = None,
    streaming: bool | None = None,
):
    """One table, from the hub or from local parquet files, as a (possibly streamed) dataset.

    `data_files` reads those parquet files (their single split is "train") through the very
    same calls the hub path uses. `streaming` defaults to True online (only the requested
    split is read, lazily) and False for local files and the offline cache.
    """
    import datasets

    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    kwargs: dict[str, Any] = {}
    if data_files is not None:
        path, split = "parquet", "train"
        kwargs["data_files"] = [str(file) for file in data_files]
        if not kwargs["data_files"]:
            raise ValueError(f"no parquet files given for {source!r}")
        streaming = bool(streaming)
    elif _offline():
        path, streaming = source, False
    else:
        _check_hub(source, token)
        path, streaming = source, True if streaming is None else streaming
        kwargs["token"] = token
    try:
        if streaming:
            table = datasets.load_dataset(path, split=split, streaming=True, **kwargs)
            return table if limit is None else table.take(limit)
        sliced = split if limit is None else f"{split}[:{limit}]"
        return datasets.load_dataset(path, split=sliced, **kwargs)
    except SourceUnavailable:
        raise
    except Exception as error:
        if data_files is None and _offline():
            raise SourceUnavailable(
                f"dataset {source!r} (split {split!r}) is not in the local cache and HF_HUB_OFFLINE "
                f"is set; unset it to download, or import from local files ({type(error).__name__})"
            ) from None
        raise


def _length(table) -> int | None:
    """Rows in a table; None for a streamed one (an IterableDataset has no length)."""
    try:
        return len(table)
    except TypeError:
        return None


def _columns(table) -> list[str]:
    names = table.column_names
    if names is None:  # some streamed datasets only know their columns once read
        names = list(table.features or {})
    return list(names)


def _require_columns(table, wanted: Iterable[str | None], what: str) -> list[str]:
    names = _columns(table)
    missing = [name for name in wanted if name is not None and names and name not in names]
    if missing:
        raise ValueError(f"{what} has no column {', '.join(map(repr, missing))}; columns: {', '.join(names)}")
    return names


# --- rows to samples (shared by plan_hf and plan_pipe) -----------------------------------

@dataclass(frozen=True)
class _Spec:
    image: str
    prompt: str
    reference: str | None
    template: str | None
    mismatched: Mismatched
    invert: bool
    metadata_base: dict[str, Any]
    skip_metadata: frozenset[str]


def _check_template(template: str | None, columns: list[str]) -> None:
    if template is None or not columns:  # a stream that does not list its columns: checked per row
        return
    try:
        fields = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError as error:
        raise ValueError(f"prompt template {template!r} is malformed: {error}") from None
    if "" in fields or any(field.isdigit() for field in fields):
        raise ValueError(f"prompt template {template!r}: use named fields, e.g. {{prompt}}")
    unknown = sorted(field for field in fields if field != "prompt" and field not in columns)
    if unknown:
        raise ValueError(
            f"prompt template {template!r} names unknown column(s) {', '.join(unknown)}; "
            f"available: prompt, {', '.join(columns)}"
        )


def _as_image(value: Any) -> Image.Image | None:
    """PIL from a decoded Image feature, an undecoded {"bytes", "path"} dict, or a path."""
    if value is None or isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        if value.get("bytes"):
            image = Image.open(io.BytesIO(value["bytes"]))
        elif value.get("path"):
            image = Image.open(value["path"])
        else:
            return None
        image.load()
        return image
    if isinstance(value, (str, Path)):
        with Image.open(value) as opened:
            opened.load()
            return opened.copy()
    if isinstance(value, np.ndarray):
        return Image.fromarray(value)
    raise TypeError(f"not an image: {type(value).__name__}")


def _scalar_metadata(row: dict[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    """The row's JSON-friendly columns (ids, instructions, locations), never image data."""

    def plain(value: Any) -> bool:
        if value is None or isinstance(value, (str, bool, int, float)):
            return True
        if isinstance(value, (list, tuple)):
            return all(plain(item) for item in value)
        return False

    return {key: value for key, value in row.items() if key not in skip and plain(value)}


class _Tally:
    """Rows to mention in notes (ids listed up to _LISTED_IDS, then counted)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def add(self, sample_id: str) -> None:
        self.ids.append(sample_id)

    def listed(self) -> str:
        shown = ", ".join(self.ids[:_LISTED_IDS])
        more = len(self.ids) - _LISTED_IDS
        return shown + (f" and {more} more" if more > 0 else "")


def _plan_rows(
    rows: Iterable[dict[str, Any]],
    spec: _Spec,
    *,
    sample_id: Callable[[int, dict[str, Any]], str],
    mask_of: Callable[[dict[str, Any]], Any],
    plan: ImportPlan,
    finish: Callable[[ImportPlan], None] | None = None,
) -> ImportPlan:
    """Each row to a sample or, by id, to a problem; size fixes and likely inversions as notes.
    Lazy: rows are decoded one at a time as the plan is read (see ImportPlan); the notes, and
    `finish(plan)`, come after the last row.

    `mask_of` returns the row's raw mask, or raises LookupError with the reason it has none.
    """
    def build_each():
        resized_masks, resized_refs, inverted, seen = _Tally(), _Tally(), _Tally(), set()
        for index, row in enumerate(rows):
            name = sample_id(index, row)
            if name in seen:
                plan.problem(name, "duplicate sample id (the row repeats an earlier one)")
                continue
            seen.add(name)
            try:
                sample = _row_to_sample(name, row, spec, mask_of, resized_masks, resized_refs, inverted)
            except LookupError as missing:
                plan.problem(name, str(missing.args[0]) if missing.args else "no mask")
                continue
            except SampleError as error:
                plan.problem(name, str(error))
                continue
            except (OSError, TypeError, ValueError) as error:
                plan.problem(name, f"unreadable row: {error}")
                continue
            yield sample
        _tally_notes(plan, spec, resized_masks, resized_refs, inverted)
        if finish is not None:
            finish(plan)

    return plan.follow(build_each())


def _tally_notes(plan: ImportPlan, spec: _Spec, resized_masks: _Tally, resized_refs: _Tally, inverted: _Tally) -> None:
    if resized_masks.ids:
        plan.note(
            f"resized {len(resized_masks.ids)} mask(s) to their image size (nearest neighbour): {resized_masks.listed()}"
        )
    if resized_refs.ids:
        plan.note(
            f"resized {len(resized_refs.ids)} reference(s) to their image size (bicubic): {resized_refs.listed()}"
        )
    if inverted.ids:
        if spec.invert:
            plan.note(
                f"{len(inverted.ids)} mask(s) were more than half white before inverting (invert_masks is on): "
                f"{inverted.listed()}"
            )
        else:
            plan.note(
                f"{len(inverted.ids)} mask(s) are more than half white, likely inverted (here white = inpaint); "
                f"use invert_masks if the dataset paints the kept area white: {inverted.listed()}"
            )


def _row_to_sample(name, row, spec: _Spec, mask_of, resized_masks, resized_refs, inverted):
    image = _as_image(row.get(spec.image))
    if image is None:
        raise SampleError(f"sample {name!r}: no image in column {spec.image!r}")
    raw_mask = mask_of(row)
    if raw_mask is None:
        raise LookupError("empty mask cell")
    raw_mask = _as_image(raw_mask) if not isinstance(raw_mask, np.ndarray) else raw_mask
    mask = normalise_mask(raw_mask, sample_id=name)
    if mask.shape != (image.height, image.width):
        if spec.mismatched != "resize":
            raise SampleError(
                f"sample {name!r}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                f"{image.width}x{image.height} (mismatched='resize' would resize the mask)"
            )
        # Nearest keeps a hard mask hard; a soft one keeps its own values.
        mask = np.asarray(Image.fromarray(mask, mode="F").resize(image.size, Image.Resampling.NEAREST), dtype=np.float32)
        resized_masks.add(name)
    if (mask >= 0.5).mean() > INVERTED_FRACTION:
        inverted.add(name)
    if spec.invert:
        mask = (1.0 - mask).astype(np.float32)

    reference = None
    if spec.reference is not None:
        reference = _as_image(row.get(spec.reference))
        if reference is None:
            raise SampleError(f"sample {name!r}: no reference in column {spec.reference!r}")
        if reference.size != image.size:
            if spec.mismatched != "resize":
                raise SampleError(
                    f"sample {name!r}: reference is {reference.width}x{reference.height} but the image is "
                    f"{image.width}x{image.height} (mismatched='resize' would resize the reference)"
                )
            reference = reference.convert("RGB").resize(image.size, Image.Resampling.BICUBIC)
            resized_refs.add(name)

    value = row.get(spec.prompt)
    text = "" if value is None else str(value).strip()
    if not text:
        raise SampleError(f"sample {name!r}: column {spec.prompt!r} is empty, no prompt")
    if spec.template is not None:
        fields = {key: ("" if cell is None else cell) for key, cell in row.items()}
        fields["prompt"] = text
        try:
            text = spec.template.format(**fields).strip()
        except KeyError as error:  # only reachable when the columns were not known up front
            raise SampleError(f"sample {name!r}: prompt template names {error}, not a column of this row") from None

    metadata = dict(spec.metadata_base)
    metadata.update(_scalar_metadata(row, spec.skip_metadata))
    return make_sample(name, image, mask, text, reference=reference, metadata=metadata)


# --- public entry points ------------------------------------------------------------------

def plan_hf(
    repo: str,
    *,
    split: str,
    image_column: str,
    mask_column: str,
    prompt_column: str,
    reference_column: str | None = None,
    id_column: str | None = None,
    limit: int | None = None,
    prompt_template: str | None = None,
    mismatched: Mismatched = "skip",
    invert_masks: bool = False,
    data_files: Iterable[str | Path] | None = None,
    token: str | None = None,
) -> ImportPlan:
    """Samples from a dataset whose rows carry image, mask and prompt (and maybe reference).

    Ids are `{name}-{id_column value}` or `{name}-{row index}`, name = the repo's last part.
    `data_files` (parquet paths) reads local files instead of the hub, same code path.
    """
    _check_mismatched(mismatched)
    table = _load(repo, split, limit=limit, token=resolve_token(token), data_files=data_files)
    columns = _require_columns(
        table, (image_column, mask_column, prompt_column, reference_column, id_column), f"dataset {repo!r}"
    )
    _check_template(prompt_template, columns)
    short = repo.rstrip("/").split("/")[-1] or "hf"
    spec = _Spec(
        image=image_column,
        prompt=prompt_column,
        reference=reference_column,
        template=prompt_template,
        mismatched=mismatched,
        invert=invert_masks,
        metadata_base={"source": f"hf:{repo}", "split": split},
        skip_metadata=frozenset({image_column, mask_column, reference_column} - {None}),
    )

    def sample_id(index: int, row: dict[str, Any]) -> str:
        key = row.get(id_column) if id_column else None
        return f"{short}-{index if key is None else key}"

    return _plan_rows(table, spec, sample_id=sample_id, mask_of=lambda row: row.get(mask_column),
                      plan=ImportPlan(expected=_length(table)))


def plan_pipe(
    *,
    split: str = "test",
    limit: int | None = None,
    prompt_column: str = "Instruction_Class",
    prompt_template: str | None = None,
    mismatched: Mismatched = "skip",
    invert_masks: bool = False,
    data_files: dict[str, Iterable[str | Path]] | None = None,
    token: str | None = None,
) -> ImportPlan:
    """The PIPE split joined with its PIPE_Masks masks: image = source_img (object removed),
    mask = the removed object, reference = target_img (the original photo), prompt = a column.

    `data_files={"pipe": [...], "masks": [...]}` reads local parquet files of the two tables.
    With `limit`, only the first N PIPE rows are read; PIPE_Masks is scanned until their
    masks are found (a row whose key never turns up is a problem, "no mask in PIPE_Masks").
    """
    _check_mismatched(mismatched)
    if data_files is not None and set(data_files) != {"pipe", "masks"}:
        raise ValueError(f"data_files needs exactly the keys 'pipe' and 'masks', got {sorted(data_files)}")
    token = resolve_token(token)
    pipe = _load(PIPE_REPO, split, limit=limit, token=token, data_files=None if data_files is None else data_files["pipe"])
    columns = _require_columns(pipe, (PIPE_IMAGE, PIPE_REFERENCE, prompt_column, *PIPE_KEYS), PIPE_REPO)
    _check_template(prompt_template, columns)

    # First pass over the key columns only (cheap, no image decoding), to know which masks to find.
    needed = {_pipe_key(row) for row in pipe.select_columns(list(PIPE_KEYS))}
    masks_table = _load(
        PIPE_MASKS_REPO, split, token=token, data_files=None if data_files is None else data_files["masks"]
    )
    _require_columns(masks_table, (PIPE_MASK, *PIPE_KEYS), PIPE_MASKS_REPO)
    masks = _find_masks(masks_table, needed)

    spec = _Spec(
        image=PIPE_IMAGE,
        prompt=prompt_column,
        reference=PIPE_REFERENCE,
        template=prompt_template,
        mismatched=mismatched,
        invert=invert_masks,
        metadata_base={"source": f"hf:{PIPE_REPO}", "split": split},
        skip_metadata=frozenset({PIPE_IMAGE, PIPE_REFERENCE}),
    )

    def mask_of(row: dict[str, Any]) -> Any:
        try:
            return masks[_pipe_key(row)]
        except KeyError:
            raise LookupError(NO_MASK) from None

    def note_missing(plan: ImportPlan) -> None:
        missing = [name for name, reason in plan.problems if reason == NO_MASK]
        if missing:
            plan.note(f"{len(missing)} PIPE row(s) have no mask in PIPE_Masks and were left out")

    return _plan_rows(
        pipe,
        spec,
        sample_id=lambda index, row: "pipe-" + "-".join(_pipe_key(row)),
        mask_of=mask_of,
        plan=ImportPlan(expected=_length(pipe)),
        finish=note_missing,
    )


def _pipe_key(row: dict[str, Any]) -> tuple[str, str, str]:
    # str() on both sides: the join must not fail because one table stores ids as int.
    return tuple(str(row[key]) for key in PIPE_KEYS)  # type: ignore[return-value]


def _find_masks(table, needed: set[tuple[str, str, str]]) -> dict[tuple[str, str, str], Any]:
    """Undecoded masks for the needed keys; stops reading as soon as all are found."""
    import datasets

    # Decoding waits until a mask is used: the scan may pass many masks it does not keep.
    table = table.cast_column(PIPE_MASK, datasets.Image(decode=False))
    found: dict[tuple[str, str, str], Any] = {}
    if not needed:
        return found
    for row in table:
        key = _pipe_key(row)
        if key in needed and key not in found:  # the first mask of a repeated key wins
            found[key] = row[PIPE_MASK]
            if len(found) == len(needed):
                break
    return found


def _check_mismatched(mismatched: str) -> None:
    if mismatched not in ("skip", "resize"):
        raise ValueError(f"mismatched must be 'skip' or 'resize', got {mismatched!r}")
