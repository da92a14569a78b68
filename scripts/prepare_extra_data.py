"""Copy the extra training photographs that come with a PyPI package into ``data/extra/`` (not committed).

The training sets in ``../shared/data/train`` are small, so SR stages from session 4 on add the real colour
photographs bundled inside the ``scikit-image`` wheel (a core dependency; nothing is downloaded). Each was
checked by eye; they are copied byte for byte (lossless PNG), and ``<folder>.json`` beside the folder records
package version, file, sha256, licence and source. ``scripts/ship_weights.py`` records the folder (through the
option file's ``dataroot_gt``) in the manifest.

Left out on purpose:
* ``camera.png`` (the cameraman) is in Set12, a test set;
* ``coffee.png`` is the project's example input (``web/examples/coffee.png``, README's before/after crop);
* ``rocket.jpg`` and ``hubble_deep_field.jpg`` are JPEG (block artefacts would be learnt as detail);
* ``motorcycle_right.png`` is the other view of the stereo pair already used;
* textures (brick, grass, gravel) are gray, and medical/microscopy/text/synthetic images are not photographs.

Usage: ``python scripts/prepare_extra_data.py [--out data/extra/skimage_photos]``; it is idempotent and
``scripts/train_release.py`` runs it before any stage that reads the folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("data/extra/skimage_photos")  # relative to the project root, as option files name it

# file in skimage/data -> (licence, source), from the docstrings of skimage.data's loaders
PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut.png": ("public domain (NASA)", "skimage.data.astronaut: Eileen Collins, NASA Great Images"),
    "chelsea.png": ("CC0 (Stefan van der Walt)", "skimage.data.chelsea: Chelsea the cat"),
    "motorcycle_left.png": ("Middlebury 2014 stereo benchmark, research use",
                            "skimage.data.stereo_motorcycle: left view, down-sampled by 4"),
}


def skimage_data_dir() -> Path:
    import skimage  # a core dependency of restore

    return Path(skimage.__file__).resolve().parent / "data"


def prepare(out: Path = OUT, *, root: Path = ROOT) -> Path:
    """Copy :data:`PHOTOS` into ``root/out`` (skipping files already there with the right hash); return the folder."""
    import skimage

    src, dst = skimage_data_dir(), root / out
    dst.mkdir(parents=True, exist_ok=True)
    records = []
    for name, (licence, source) in PHOTOS.items():
        if not (src / name).is_file():
            raise SystemExit(f"{src / name} is missing from this scikit-image install")
        digest = hashlib.sha256((src / name).read_bytes()).hexdigest()
        target = dst / name
        if not target.is_file() or hashlib.sha256(target.read_bytes()).hexdigest() != digest:
            tmp = target.with_name(f".{name}.{os.getpid()}.part")  # two training queues may run this at once
            shutil.copyfile(src / name, tmp)
            tmp.replace(target)
        records.append({"file": name, "sha256": digest, "licence": licence, "source": source})
    sources = {"package": f"scikit-image {skimage.__version__}", "photos": records}
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(sources, indent=2) + "\n")
    tmp.replace(dst.with_name(dst.name + ".json"))
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT, help=f"folder, relative to the project root (default {OUT})")
    a = ap.parse_args(argv)
    dst = prepare(a.out)
    print(f"{len(PHOTOS)} photographs in {dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
