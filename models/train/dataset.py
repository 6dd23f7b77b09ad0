"""Labelled pairs: find them (manifest or folder convention), check their grids, read them.

Two kinds of pair, never mixed in one training run (the model's input differs):

    scene   image GeoTIFF (any GDAL raster) + single-band integer mask on the same grid
    volume  image NIfTI + label NIfTI with the same shape and affine

Where pairs come from:

    manifest  a CSV with columns ``image,label[,split]`` (header optional; relative paths
              are relative to the manifest's folder; split is ``train`` or ``val``)
    folder    ``DIR/images/X.tif`` + ``DIR/labels/X.tif`` (and ``.nii.gz``/``.nii``)

Mask value 255 (``IGNORE_INDEX``, also the mask's nodata) and pixels where the image is
nodata are ignored by the loss and the metrics. This module only reads; it computes nothing.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
import rasterio
from rasterio.errors import RasterioIOError

from pipeline.errors import InputError
from pipeline.readers.geotiff import open_raster, validity

log = logging.getLogger(__name__)

# Label value ignored by the loss and the metrics: masks' nodata, image nodata, padding.
IGNORE_INDEX = 255
SCENE_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")
VOLUME_SUFFIXES = (".nii.gz", ".nii")
# Geometry tolerance: pixel/voxel sizes and origins are float32 in many headers.
_GEOMETRY_ATOL = 1e-4

Kind = Literal["scene", "volume"]


@dataclass(frozen=True)
class Pair:
    """One labelled example: image file, label file, and an optional fixed split."""

    image: Path
    label: Path
    split: Literal["train", "val"] | None = None

    @property
    def kind(self) -> Kind:
        return "volume" if is_volume(self.image) else "scene"

    @property
    def name(self) -> str:
        return stem(self.image)


@dataclass(frozen=True)
class LabelledScene:
    """A scene read whole: raw bands (C, H, W) float32, labels (H, W) uint8 (255 = ignore).

    ``valid`` is the image's validity (nodata, masks, NaN); labels are already 255 where
    it is False. ``class_names``/``colors`` are what the mask file declares, if anything.
    """

    pair: Pair
    image: np.ndarray
    valid: np.ndarray
    label: np.ndarray
    nodata: float | None
    class_names: tuple[str, ...] = ()
    colors: dict[int, tuple[int, int, int]] | None = None


def is_volume(path: str | Path) -> bool:
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def stem(path: Path) -> str:
    name = path.name
    for ext in VOLUME_SUFFIXES + SCENE_SUFFIXES:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem


# --------------------------------------------------------------------------- finding pairs


def find_pairs(source: str | Path) -> list[Pair]:
    """Pairs listed in a CSV manifest, or found as ``images/X`` + ``labels/X`` under a folder.

    Raises:
        InputError: no such path, an empty folder, an image without its label, a missing
            file named by a manifest, or scenes and volumes mixed.
    """
    source = Path(source)
    if source.is_file():
        pairs = read_manifest(source)
    elif source.is_dir():
        pairs = _folder_pairs(source)
    else:
        raise InputError(f"{source}: training data not found; expected a folder with images/ and labels/, "
                         "or a CSV manifest with columns image,label[,split]")
    if not pairs:
        raise InputError(f"{source}: no labelled pairs found")
    kinds = {p.kind for p in pairs}
    if len(kinds) > 1:
        raise InputError(f"{source}: mixes scenes (GeoTIFF) and volumes (NIfTI); a model takes one kind, "
                         "train them separately")
    return pairs


def read_manifest(path: Path) -> list[Pair]:
    """Rows ``image,label[,split]``; a first row naming the columns is optional."""
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r) and not r[0].startswith("#")]
    if rows and rows[0][0].strip().lower() == "image":
        header = [c.strip().lower() for c in rows[0]]
        rows = [dict(zip(header, r)) for r in rows[1:]]
    else:
        rows = [dict(zip(("image", "label", "split"), r)) for r in rows]
    pairs = []
    for i, row in enumerate(rows, start=2):
        image, label = (row.get(k, "").strip() for k in ("image", "label"))
        split = (row.get("split") or "").strip().lower() or None
        if not image or not label:
            raise InputError(f"{path}: row {i} needs an image and a label path, got {row}")
        if split not in (None, "train", "val"):
            raise InputError(f"{path}: row {i}: split {split!r} must be 'train', 'val' or empty")
        pair = Pair(_resolve(path.parent, image), _resolve(path.parent, label), split)  # type: ignore[arg-type]
        for f in (pair.image, pair.label):
            if not f.is_file():
                raise InputError(f"{path}: row {i}: {f} not found")
        pairs.append(pair)
    return pairs


def _resolve(base: Path, p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else base / q


def _folder_pairs(root: Path) -> list[Pair]:
    images, labels = root / "images", root / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise InputError(f"{root}: expected sub-folders images/ and labels/ (labels/X.tif for images/X.tif), "
                         "or pass a CSV manifest")
    suffixes = SCENE_SUFFIXES + VOLUME_SUFFIXES
    found = sorted(p for p in images.iterdir() if p.is_file() and p.name.lower().endswith(suffixes))
    pairs = []
    for image in found:
        label = labels / image.name
        if not label.is_file():
            raise InputError(f"{image}: has no label {label}; every image needs a label with the same name")
        pairs.append(Pair(image, label))
    return pairs


# --------------------------------------------------------------------------- scenes


def check_scene_pair(pair: Pair) -> None:
    """The mask must be one integer band on the image's grid: size, transform and CRS.

    Raises:
        InputError: naming both files and what differs.
    """
    img = open_raster(pair.image)
    try:
        with rasterio.open(pair.label) as lab:
            size, transform, crs, count, dtype = (lab.width, lab.height), lab.transform, lab.crs, lab.count, lab.dtypes[0]
    except RasterioIOError as exc:
        raise InputError(f"{pair.label}: not a readable raster mask for {pair.image} ({exc})") from exc
    problems = []
    if size != (img.width, img.height):
        problems.append(f"size {size[0]} x {size[1]} vs {img.width} x {img.height}")
    if not transform.almost_equals(img.transform, precision=_GEOMETRY_ATOL * max(1.0, abs(img.transform.a))):
        problems.append(f"transform {tuple(transform)[:6]} vs {tuple(img.transform)[:6]}")
    if (crs or None) != (img.crs or None):
        problems.append(f"CRS {crs.to_string() if crs else None} vs {img.crs.to_string() if img.crs else None}")
    if problems:
        raise InputError(f"label {pair.label} is not on the grid of image {pair.image}: {'; '.join(problems)}. "
                         "Masks must share the image's size, transform and CRS (rasterize or warp the mask "
                         "onto the image grid first).")
    if count != 1 or np.dtype(dtype).kind not in "iu":
        raise InputError(f"label {pair.label} (for {pair.image}) has {count} band(s) of {dtype}; expected one "
                         "integer band of class values (255 = ignore)")


def read_scene_pair(pair: Pair, bands: tuple[int, ...] | None = None) -> LabelledScene:
    """Read a (checked) scene pair whole. Training scenes are chips or modest scenes."""
    info = open_raster(pair.image, bands)
    with rasterio.open(pair.image) as ds:
        data = ds.read(list(info.bands))
        mask = ds.dataset_mask() if info.mask_kind == "dataset" else None
    valid = validity(data, info, mask)
    with rasterio.open(pair.label) as lab:
        label = lab.read(1)
        names = tuple(n for n in (lab.tags().get("CLASS_NAMES") or "").split(",") if n)
        colors = _colormap(lab)
    if label.min(initial=0) < 0 or label.max(initial=0) > IGNORE_INDEX:
        raise InputError(f"label {pair.label} has values outside 0..255; expected class indices (255 = ignore)")
    label = label.astype(np.uint8)
    label[~valid] = IGNORE_INDEX
    image = np.where(valid[None], data, 0).astype(np.float32)
    return LabelledScene(pair, image, valid, label, info.nodata, names, colors)


def _colormap(ds) -> dict[int, tuple[int, int, int]] | None:
    try:
        cmap = ds.colormap(1)
    except ValueError:  # no colour table
        return None
    return {int(k): tuple(int(c) for c in v[:3]) for k, v in cmap.items()}


# --------------------------------------------------------------------------- volumes


def check_volume_pair(pair: Pair) -> None:
    """Image and label must have the same voxel grid: spatial shape and affine.

    Raises:
        InputError: naming both files and what differs.
    """
    try:
        img, lab = nib.load(pair.image), nib.load(pair.label)
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise InputError(f"cannot read the NIfTI pair {pair.image} / {pair.label}: {exc}") from exc
    problems = []
    if tuple(img.shape[:3]) != tuple(lab.shape[:3]):
        problems.append(f"shape {tuple(lab.shape[:3])} vs {tuple(img.shape[:3])}")
    elif not np.allclose(img.affine, lab.affine, atol=_GEOMETRY_ATOL):
        problems.append(f"affine differs (max |diff| {np.abs(img.affine - lab.affine).max():.4g})")
    if len(lab.shape) > 3 and any(n > 1 for n in lab.shape[3:]):
        problems.append(f"label is {len(lab.shape)}-D {tuple(lab.shape)}")
    if problems:
        raise InputError(f"label {pair.label} does not match the geometry of image {pair.image}: "
                         f"{'; '.join(problems)}. Labels must be on the image's voxel grid (same shape and affine).")
