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

Session 5 adds a second folder, ``data/extra/debian_wallpapers``: the real photographs among the wallpapers of
Debian 12's ``plasma-workspace-wallpapers`` package (4:5.27.5-2, LGPLv3 per each wallpaper's metadata.json). The
package is fetched by name with ``apt-get download`` (or read from ``--deb FILE``), its sha256 checked, and each
chosen wallpaper's largest ``contents/images/WxH.jpg`` halved with a 2 x 2 box filter (``PIL.Image.reduce(2)``,
exact and deterministic; it also averages away the JPEG blocks) and written as RGB PNG. All 35 wallpapers of the
package (and gnome-backgrounds 43.1's) were looked at by eye; the rest are renders or illustrations (Altai,
Autumn, Canopee, Kite has a drawn kite, Volna is a render, ...), and DarkestHour / summer_1am are photographs of
nearly flat sky and water, left out because a random patch of them is almost always flat.

Usage: ``python scripts/prepare_extra_data.py [--out data/extra/skimage_photos] [--wallpapers] [--deb FILE]``;
it is idempotent and ``scripts/train_release.py`` runs it before any stage that reads either folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record_path(dst: Path) -> Path:
    """``<folder>.json`` beside the folder: what was put in it, from where."""
    return dst.with_name(dst.name + ".json")


def _write_record(dst: Path, sources: dict[str, object]) -> None:
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")  # two training queues may run this at once
    tmp.write_text(json.dumps(sources, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(_record_path(dst))


def prepare(out: Path = OUT, *, root: Path = ROOT) -> Path:
    """Copy :data:`PHOTOS` into ``root/out`` (skipping files already there with the right hash); return the folder."""
    import skimage

    src, dst = skimage_data_dir(), root / out
    dst.mkdir(parents=True, exist_ok=True)
    records = []
    for name, (licence, source) in PHOTOS.items():
        if not (src / name).is_file():
            raise SystemExit(f"{src / name} is missing from this scikit-image install")
        digest = _sha256(src / name)
        target = dst / name
        if not target.is_file() or _sha256(target) != digest:
            tmp = target.with_name(f".{name}.{os.getpid()}.part")  # two training queues may run this at once
            shutil.copyfile(src / name, tmp)
            tmp.replace(target)
        records.append({"file": name, "sha256": digest, "licence": licence, "source": source})
    _write_record(dst, {"package": f"scikit-image {skimage.__version__}", "photos": records})
    return dst


# ------------------------------------------------------------------------------------ Debian wallpapers

WALLPAPERS_OUT = Path("data/extra/debian_wallpapers")
WALLPAPER_PACKAGE = "plasma-workspace-wallpapers"
WALLPAPER_VERSION = "4:5.27.5-2"
WALLPAPER_DEB_SHA256 = "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b"
# wallpaper folder -> author (from its metadata.json; every one says LGPLv3)
WALLPAPERS: dict[str, str] = {
    "BytheWater": "Maciej Wiklo",
    "ColdRipple": "Risto Saukonpää",
    "ColorfulCups": "Dmitri Popov",
    "EveningGlow": "Ian Hex",
    "FallenLeaf": "Martin Klapetek",
    "Grey": "Sigi Sagi",
    "OneStandsOut": "Risto Saukonpää",
    "Path": "Risto Saukonpää",
}


def fetch_wallpaper_deb(workdir: Path) -> Path:
    """``apt-get download`` the pinned package version into ``workdir``; a clear error when apt cannot."""
    cmd = ["apt-get", "download", f"{WALLPAPER_PACKAGE}={WALLPAPER_VERSION}"]
    try:
        subprocess.run(cmd, cwd=workdir, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise SystemExit(f"could not fetch {WALLPAPER_PACKAGE} {WALLPAPER_VERSION} with apt-get ({detail.strip()}); "
                         "download the .deb on a Debian 12 machine and pass it with --deb FILE") from None
    return next(workdir.glob(f"{WALLPAPER_PACKAGE}_*.deb"))


def halve(src: Path, dst: Path) -> None:
    """``src`` (any PIL-readable photo) -> RGB PNG at half size by 2 x 2 box averaging, written atomically."""
    from PIL import Image

    with Image.open(src) as im:
        small = im.convert("RGB").reduce(2)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    small.save(tmp, format="PNG")
    tmp.replace(dst)


def prepare_wallpapers(out: Path = WALLPAPERS_OUT, *, root: Path = ROOT, deb: Path | None = None) -> Path:
    """Extract :data:`WALLPAPERS` from the package (fetched unless ``deb`` is given) into ``root/out`` as halved
    PNGs and record them in ``<folder>.json``. Does nothing when the record lists every file with its hash."""
    dst = root / out
    if _record_path(dst).is_file():
        done = json.loads(_record_path(dst).read_text())["photos"]
        if len(done) == len(WALLPAPERS) and all(
                (dst / e["file"]).is_file() and _sha256(dst / e["file"]) == e["sha256"] for e in done):
            return dst
    with tempfile.TemporaryDirectory() as tmpdir:
        work = Path(tmpdir)
        deb = fetch_wallpaper_deb(work) if deb is None else deb
        if (digest := _sha256(deb)) != WALLPAPER_DEB_SHA256:
            raise SystemExit(f"{deb}: sha256 {digest} is not the pinned {WALLPAPER_PACKAGE} "
                             f"{WALLPAPER_VERSION} ({WALLPAPER_DEB_SHA256})")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)
        base = work / "x" / "usr" / "share" / "wallpapers"
        dst.mkdir(parents=True, exist_ok=True)
        records = []
        for name, author in WALLPAPERS.items():
            images = list((base / name / "contents" / "images").glob("*x*.jpg"))  # one per screen size, WxH.jpg
            if not images:
                raise SystemExit(f"{WALLPAPER_PACKAGE}: no JPEG for {name}")
            largest = max(images, key=lambda f: math.prod(int(v) for v in f.stem.split("x")))
            target = dst / f"{name}.png"
            halve(largest, target)
            records.append({"file": target.name, "sha256": _sha256(target),
                            "source": f"usr/share/wallpapers/{name}/contents/images/{largest.name}",
                            "source_sha256": _sha256(largest), "author": author, "licence": "LGPLv3",
                            "processing": "PIL convert('RGB').reduce(2), PNG"})
    _write_record(dst, {"package": f"{WALLPAPER_PACKAGE} {WALLPAPER_VERSION} (Debian 12)",
                        "deb_sha256": WALLPAPER_DEB_SHA256, "photos": records})
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT, help=f"folder, relative to the project root (default {OUT})")
    ap.add_argument("--wallpapers", action="store_true", help=f"also prepare {WALLPAPERS_OUT} (Debian package)")
    ap.add_argument("--deb", type=Path, help=f"a downloaded {WALLPAPER_PACKAGE} {WALLPAPER_VERSION} .deb")
    a = ap.parse_args(argv)
    dst = prepare(a.out)
    print(f"{len(PHOTOS)} photographs in {dst}")
    if a.wallpapers or a.deb:
        dst = prepare_wallpapers(deb=a.deb.resolve() if a.deb else None)
        print(f"{len(WALLPAPERS)} photographs in {dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
