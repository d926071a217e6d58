"""Folder import: storing a PNG source's own bytes against encoding the decoded image again.

Reads a folder of N photo-like 512 px RGB PNGs with masks (`plan_folder(...).each()`) and
turns each sample into the rows an import writes (`to_new_sample`: the PNG bytes of image
and mask, the content hash), once with the source bytes kept (engine.samples.keep_source_png,
the default) and once with them dropped (every image re-encoded, as before). Rounds
alternate the order (bench._common.interleaved); reported: ms per sample of each and the
median of the per-round ratios.

Usage: python bench/import_bytes.py [--samples 20] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import interleaved, run_benchmark  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import numpy as np
    from PIL import Image
    from skimage import data

    import engine.sources.folder as folder
    from inpaint_tui.jobs.samples import to_new_sample

    root = Path(tempfile.mkdtemp(prefix="bench-import-bytes-"))
    (root / "images").mkdir()
    (root / "masks").mkdir()
    photo = data.astronaut()  # 512 x 512 RGB
    for k in range(args.samples):
        Image.fromarray(np.roll(photo, 7 * k, axis=1)).save(root / "images" / f"s{k}.png")
        mask = np.zeros((512, 512), np.uint8)
        mask[100:300, 150 + k % 50 : 350] = 255
        Image.fromarray(mask).save(root / "masks" / f"s{k}.png")
    (root / "prompts.csv").write_text("name,prompt\n" + "".join(f"s{k},a thing\n" for k in range(args.samples)))

    keep = folder.keep_source_png

    def import_with(kept):
        def run():
            folder.keep_source_png = kept
            try:
                for sample in folder.plan_folder(root).each():
                    to_new_sample(sample, "folder")
            finally:
                folder.keep_source_png = keep
        return run

    times = interleaved({"source bytes": import_with(keep),
                         "re-encoded": import_with(lambda image, data: image)}, args.rounds)
    for name, values in times.items():
        print(f"{name:>12}: {statistics.median(values) / args.samples * 1000:.1f} ms per sample")
    ratio = statistics.median(b / a for a, b in zip(times["source bytes"], times["re-encoded"]))
    print(f"re-encoded / source bytes: {ratio:.2f}x (median of {args.rounds} per-round ratios)")


if __name__ == "__main__":
    run_benchmark(main, "import bytes")
