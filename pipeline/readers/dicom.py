"""DICOM is not read (yet): recognise it and say how to convert, instead of "not a GDAL raster".

A DICOM file is recognised by its suffix (``.dcm``, ``.dicom``) or its magic (``DICM`` at
byte 128, the Part 10 preamble); a DICOM series folder by its first few files.
"""

from __future__ import annotations

from pathlib import Path

DICOM_SUFFIXES = (".dcm", ".dicom")
MAGIC_OFFSET, MAGIC = 128, b"DICM"
FOLDER_PROBE = 8  # files of a folder looked at


def is_dicom_file(path: Path) -> bool:
    if path.name.lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(MAGIC_OFFSET)
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def is_dicom(path: str | Path) -> bool:
    """A DICOM file, or a folder whose first files are DICOM (local paths only)."""
    p = Path(path)
    if p.is_dir():
        try:
            files = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith("."))[:FOLDER_PROBE]
        except OSError:
            return False
        return bool(files) and any(is_dicom_file(q) for q in files)
    return p.is_file() and is_dicom_file(p)


def dicom_message(path: str | Path) -> str:
    """The one-line error for a DICOM input: what is read instead, and the conversion command."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    return (f"{path}: DICOM is not read by segpipe; convert the series to NIfTI first, e.g. "
            f"'dcm2niix -z y -o OUT_FOLDER {folder}', then segment the .nii.gz it writes")
