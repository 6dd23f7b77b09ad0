"""Write label / confidence volumes back in the input's own geometry, checked after writing.

The header is a copy of the input's, so affine, qform/sform and their codes, pixdim and
units stay the input's own (FIELD_NOTES "Geometry (NIfTI)": ``nib.Nifti1Image(data,
affine)`` without the header would reset qform_code to 0 and sform_code to 2). The file
is written under a temporary name in the output folder, reopened, compared with the
input's geometry, and only then renamed into place; label names travel in sidecars.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from ...engine.bands import PROB_SCALE
from ...errors import GeometryError, OutputError
from ...files import temp_path, write_text_atomic
from ...readers.nifti.header import one_line
from ...readers.nifti.volume import Volume
from ..base import remove
from . import labelfiles
from .pgzip import ParallelGzipWriter

log = logging.getLogger(__name__)

OutputKind = Literal["labels", "confidence", "probability"]

# Tolerance for the after-write geometry comparison (affines are float32 in the header).
GEOMETRY_ATOL = 1e-5


@dataclass(frozen=True)
class _KindSpec:
    """Header settings of one output kind."""

    intent: str  # nibabel intent name
    intent_name: str  # <= 16 bytes, shown by some viewers


OUTPUT_KINDS: dict[str, _KindSpec] = {
    "labels": _KindSpec("label", "segpipe labels"),  # NIFTI_INTENT_LABEL = 1002
    "confidence": _KindSpec("none", "confidence"),
    "probability": _KindSpec("none", "probability"),
}


def write_label_volume(path: str | os.PathLike, data: np.ndarray, vol: Volume, *,
                       label_names: Sequence[str] = (),
                       colors: Sequence[tuple[int, int, int]] | None = None,
                       kind: OutputKind = "labels", description: str | None = None) -> Path:
    """Write a canonical-order label (or confidence) array in the input's own geometry.

    The header is a copy of the input's: same affine, qform and sform with their codes,
    pixdim, xyzt_units, dim_info and NIfTI version. Only what must change does: data type
    (uint8, or uint16 past 255 labels), scaling reset to (1, 0), cal_min/cal_max, intent
    (NIFTI_INTENT_LABEL for labels), description; header extensions of the input (which
    describe its intensities) are dropped. A 4D input (a selected or squeezed volume)
    gives a 3D output of shape ``(x, y, z)``.

    Sidecars (labels): ``<stem>.labels.json`` (names, values, colours),
    ``<stem>.ctbl`` (3D Slicer colour table: ``index name R G B A`` lines; load it in
    Slicer and pick it as the label map's colour table) and ``<stem>.itksnap.txt``
    (ITK-SNAP label description: Segmentation > Import Label Descriptions). Confidence
    and probability volumes get only the JSON, which states the encoding
    ``value / 254``, 255 = no data.

    Args:
        path: output file; ``.nii.gz`` is appended unless it ends in .nii or .nii.gz.
        data: canonical-order array of ``vol.shape``; integer labels >= 0 for ``labels``,
            uint8 codes (see ``volume.encode_unit``) for confidence/probability.
        vol: the Volume the prediction was made on.
        label_names: one name per label value (label i is ``label_names[i]``).
        colors: RGB per label; defaults to ``spec.default_colors``.
        kind: ``labels``, ``confidence`` or ``probability``.
        description: header ``descrip`` (80 bytes max); a default names the kind and input.

    Returns:
        The path written.

    Raises:
        GeometryError: the reopened file's geometry differs from the input's (the output
            and its sidecars are removed).
        OutputError: the folder or file cannot be written.
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"kind must be one of {tuple(OUTPUT_KINDS)}, got {kind!r}")
    if tuple(data.shape) != vol.shape:
        raise ValueError(f"expected a canonical array of shape {vol.shape}, got {data.shape}")
    final = output_path(path)
    dtype, n_labels = _output_dtype(data, kind, label_names)
    # Fortran order is NIfTI's on-disk order: nibabel then writes it without another copy.
    source = np.asfortranarray(vol.orientation.to_source(data), dtype=dtype)
    header = _output_header(vol, dtype, kind, n_labels, description)
    klass = nib.Nifti2Image if isinstance(vol.header, nib.Nifti2Header) else nib.Nifti1Image
    img = klass(source, vol.affine, header)
    # The image constructor resets scaling to NaN ("compute on save"); pin it to identity.
    img.header.set_slope_inter(1.0, 0.0)
    names = tuple(label_names) or tuple(f"label_{i}" for i in range(n_labels))
    _write_checked(img, final, vol, dtype, kind, _write_sidecars(final, kind, names, colors, vol))
    # the name only: the folder is the run's staging folder until the scene is swapped in
    log.info("wrote %s volume %s (%s, %s)", kind, final.name, dtype.name, "x".join(map(str, source.shape)))
    return final


def _write_checked(img: nib.Nifti1Image, final: Path, vol: Volume, dtype: np.dtype, kind: str,
                   sidecars: list[Path]) -> None:
    """Save to a temporary name, reopen, compare the geometry with the input's, rename into place.

    On any failure the temporary file and the sidecars go, and an OS error is an OutputError.
    """
    tmp = temp_path(final, _suffix(final))
    try:
        _save(img, tmp)
        problems = compare_geometry(_reopen_header(tmp), vol, dtype)
        if problems:
            raise GeometryError(f"{final}: written geometry differs from input {vol.path}: " + "; ".join(problems))
        os.replace(tmp, final)
    except BaseException as exc:
        _remove(tmp, *sidecars)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"{final}: cannot write the {kind} volume ({one_line(exc)})") from exc
        raise


def output_path(path: str | os.PathLike) -> Path:
    """``path`` with a NIfTI suffix: ``.nii.gz`` appended unless it already ends in .nii/.nii.gz."""
    path = Path(path)
    return path if path.name.lower().endswith((".nii", ".nii.gz")) else path.with_name(path.name + ".nii.gz")


def _suffix(path: Path) -> str:
    return ".nii.gz" if path.name.lower().endswith(".nii.gz") else ".nii"


def _stem(path: Path) -> str:
    return path.name[: -len(_suffix(path))]


def _output_dtype(data: np.ndarray, kind: str, names: Sequence[str]) -> tuple[np.dtype, int]:
    if kind != "labels":
        if data.dtype != np.uint8:
            raise ValueError(f"{kind} volumes are uint8 codes (0..254, 255 = no data), got {data.dtype}")
        return np.dtype(np.uint8), PROB_SCALE + 1
    if data.dtype.kind not in "biu":
        raise ValueError(f"labels must be an integer array, got {data.dtype}")
    lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
    if lo < 0 or hi > np.iinfo(np.uint16).max:
        raise ValueError(f"label values must be in 0..65535, got {lo}..{hi}")
    if names and hi >= len(names):
        raise ValueError(f"label value {hi} present but only {len(names)} label names given")
    n_labels = max(len(names), hi + 1)
    return np.dtype(np.uint8 if n_labels <= 256 else np.uint16), n_labels


def _output_header(vol: Volume, dtype: np.dtype, kind: str, n_labels: int,
                   description: str | None) -> nib.Nifti1Header:
    hdr = vol.header.copy()
    # copy() shares the extension list with the input header: replace, never clear().
    hdr.extensions = type(hdr.extensions)()
    hdr.set_data_offset(0)  # recomputed on write (the input's extensions are gone)
    hdr.set_data_shape(vol.orientation.source_shape)
    hdr.set_data_dtype(dtype)
    spec = OUTPUT_KINDS[kind]
    hdr.set_intent(spec.intent, (), name=spec.intent_name)
    hdr["cal_min"], hdr["cal_max"] = (0, n_labels - 1) if kind == "labels" else (0, PROB_SCALE)
    text = description or f"segpipe {kind} of {vol.path.name}"
    hdr["descrip"] = text.encode("utf-8", "replace")[:79]
    hdr["aux_file"] = b""
    return hdr


def compare_geometry(written: nib.Nifti1Header, vol: Volume, dtype: np.dtype | None = None) -> list[str]:
    """Differences between a written header and the input's geometry (empty list: identical).

    Compared: 3D shape, best affine (atol 1e-5), qform and sform matrices and codes,
    zooms, and (when given) the data type and an identity scaling.
    """
    src = vol.header
    problems = []
    if tuple(written.get_data_shape()) != vol.orientation.source_shape:
        problems.append(f"shape {written.get_data_shape()} != {vol.orientation.source_shape}")
    if not np.allclose(written.get_best_affine(), vol.affine, atol=GEOMETRY_ATOL):
        problems.append("affine differs")
    for form in ("qform", "sform"):
        (m_out, c_out), (m_in, c_in) = _form(written, form), _form(src, form)
        if c_out != c_in:
            problems.append(f"{form}_code {c_out} != {c_in}")
        if not np.allclose(m_out, m_in, atol=GEOMETRY_ATOL):
            problems.append(f"{form} matrix differs")
    if not np.allclose(written.get_zooms()[:3], src.get_zooms()[:3], atol=GEOMETRY_ATOL):
        problems.append(f"zooms {written.get_zooms()[:3]} != {src.get_zooms()[:3]}")
    if dtype is not None:
        if written.get_data_dtype().newbyteorder("=") != np.dtype(dtype).newbyteorder("="):
            problems.append(f"dtype {written.get_data_dtype()} != {dtype}")
        if (float(written["scl_slope"]), float(written["scl_inter"])) != (1.0, 0.0):
            problems.append(f"scaling {written.get_slope_inter()} is not identity")
    return problems


def _form(header: nib.Nifti1Header, form: str) -> tuple[np.ndarray, int]:
    matrix, code = getattr(header, f"get_{form}")(coded=True)
    # An uncoded form still has a matrix on disk: compare it too (zeros when absent).
    matrix = getattr(header, f"get_{form}")() if matrix is None else matrix
    return np.asarray(matrix, dtype=float), int(code)


def _save(img: nib.Nifti1Image, path: Path) -> None:
    """``nib.save``, but a ``.gz`` is compressed on every core (:mod:`.pgzip`), at nibabel's level 1."""
    if path.suffix != ".gz":
        nib.save(img, str(path))
        return
    with ParallelGzipWriter(path, level=1) as f:
        img.to_file_map({"image": nib.fileholders.FileHolder(fileobj=f)})


def _reopen_header(path: Path) -> nib.Nifti1Header:
    """The header exactly as stored (``nib.load`` would hide scl_slope/scl_inter as NaN)."""
    try:
        header_class = type(nib.load(str(path))).header_class
        with nib.openers.ImageOpener(str(path)) as f:
            return header_class.from_fileobj(f)
    except (ImageFileError, HeaderDataError, OSError, EOFError, ValueError) as exc:
        raise OutputError(f"{path}: written file cannot be reopened ({one_line(exc)})") from exc


def sidecars(final: Path, kind: str) -> list[Path]:
    """The label-name files written next to a volume of ``kind``: JSON; Slicer and ITK-SNAP for labels."""
    stem = _stem(final)
    exts = (".labels.json", ".ctbl", ".itksnap.txt") if kind == "labels" else (".labels.json",)
    return [final.with_name(stem + ext) for ext in exts]


def _write_sidecars(final: Path, kind: str, names: Sequence[str],
                    colors: Sequence[tuple[int, int, int]] | None, vol: Volume) -> list[Path]:
    """Write the label-name files next to ``final`` (each atomically); return their paths."""
    texts = [labelfiles.sidecar_json(kind, names, colors, vol.path.name, vol.series_note, final.name)]
    if kind == "labels":
        texts += [labelfiles.slicer_ctbl(names, colors), labelfiles.itksnap_labels(names, colors)]
    written: list[Path] = []
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        for target, text in zip(sidecars(final, kind), texts):
            written.append(write_text_atomic(target, text))
    except OSError as exc:
        _remove(*written)
        raise OutputError(f"{final.parent}: cannot write label files ({one_line(exc)})") from exc
    return written


def _remove(*paths: Path) -> None:
    for p in paths:
        remove(p)
