"""Decode a volume while its first slices are already being segmented.

``io.iter_volumes`` decodes the whole file before the first slice reaches the model: for
a 512 x 512 x 400 int16 ``.nii.gz`` that is ~0.55 s of single-threaded inflate plus the
float32 conversion, all of it time a GPU waits (its model takes ~0.4 s for the volume).
When the file's slowest axis *is* the slice axis, in canonical order and unflipped (the
usual axial CT or MR written inferior to superior), the file holds the slices in the
order the engine takes them, so a decoder thread can fill the volume slice by slice while
the engine runs a few slices behind it (:class:`SliceArrival`).

Only files that need nothing from the whole volume before the first slice stream: a
single 3D volume (or one with trailing singleton dimensions) of an integer type whose
scaling cannot overflow float32, so that no voxel can be NaN/Inf and the validity mask is
known to be None before decoding. Everything else, and every header problem, goes the
whole-file way (``open_streamed`` returns None or raises before any thread starts).

Errors in the data (a truncated or corrupt ``.nii.gz``, fewer bytes than the header
says) are raised, as the same one-line ``InputError`` the whole-file reader gives, by
:meth:`SliceArrival.wait` or :meth:`SliceArrival.finish` in the engine's threads. The
run writes nothing until every slice has been predicted and ``finish()`` has checked the
gzip trailer (CRC and length), so a bad file still leaves no output behind.
"""

from __future__ import annotations

import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import nibabel as nib
import numpy as np
from nibabel import orientations as nio
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from ..errors import InputError, SegpipeError
from ..prefetch import prefetch
from .io import (_HEADER_BYTES, GZIP_ERRORS, Volume, _check_header, _series_plan, _sniff, _spatial_shape,
                 _warn_geometry, gzip_error, one_line, open_nifti, scaling_of)
from .orient import orientation_of
from .slicing import default_slice_axis

# Raw bytes decoded per step: a handful of 512 x 512 int16 planes.
CHUNK_BYTES = 8 << 20


class SliceArrival:
    """How many canonical slices (along the volume's slice axis) a decoder thread has filled."""

    def __init__(self, n_slices: int) -> None:
        self.n_slices = n_slices
        self._ready = 0
        self._done = False
        self._error: BaseException | None = None
        self._cancelled = False
        self._cond = threading.Condition()
        self.seconds = 0.0  # the decoder thread's own time

    def wait(self, count: int) -> None:
        """Block until slices ``[0, count)`` are in the volume; raise the decoder's error."""
        count = min(count, self.n_slices)
        with self._cond:
            self._cond.wait_for(lambda: self._error is not None or self._ready >= count or self._done)
            if self._error is not None:
                raise self._error
            if self._ready < count:
                raise RuntimeError(f"decoding stopped after {self._ready} of {self.n_slices} slices")

    def finish(self) -> None:
        """Block until the whole file has been read (gzip trailer checked); raise its error."""
        with self._cond:
            self._cond.wait_for(lambda: self._error is not None or self._done)
            if self._error is not None:
                raise self._error

    def cancel(self) -> None:
        """Stop the decoder early (the run failed elsewhere); safe to call at any time.

        Anyone still waiting for slices is released with an error, never left blocked.
        """
        self._cancelled = True

    @property
    def ready(self) -> int:
        return self._ready

    # -- decoder side ----------------------------------------------------------------------
    def _advance(self, ready: int) -> None:
        with self._cond:
            self._ready = ready
            self._cond.notify_all()

    def _end(self, error: BaseException | None) -> None:
        with self._cond:
            self._error, self._done = error, True
            self._cond.notify_all()


def open_streamed(path: str | Path, *, slice_axis: int | None = None, volume: int | None = None) -> Volume | None:
    """A :class:`Volume` whose ``data`` is being decoded in a background thread, or None.

    None when the file cannot stream (see the module docstring): the caller then reads
    it whole with ``io.iter_volumes``, which also reports every header problem. The
    returned volume's ``arrival`` says which slices are in ``data`` so far.
    """
    path = Path(path)
    name = path.name.lower()
    if not path.is_file() or not name.endswith((".nii", ".nii.gz")):
        return None
    gz = name.endswith(".nii.gz")
    try:
        with open_nifti(path, gz) as f:
            klass = _sniff(path, f.read(_HEADER_BYTES))
            f.seek(0)
            header = klass.header_class.from_fileobj(f)
    except (InputError, EOFError, OSError, zlib.error, ImageFileError, HeaderDataError, ValueError):
        return None  # the whole-file reader says what is wrong, in its words
    _check_header(path, header)
    shape = tuple(int(s) for s in header.get_data_shape())
    spatial, n_series = _spatial_shape(path, shape)
    if n_series is not None or volume not in (None, 0):
        return None  # a series, and its policies, are the whole-file reader's
    dtype = header.get_data_dtype()
    scaling = scaling_of(header, path)
    if dtype.kind not in "iu" or not _fits_float32(dtype, scaling):
        return None  # NaN/Inf possible: validity must be known before the first slice
    orientation = orientation_of(header.get_best_affine(), spatial)
    zooms = orientation.canonical_zooms(header.get_zooms()[:3])
    axis = default_slice_axis(zooms) if slice_axis is None else slice_axis
    if orientation.ornt[2] != (axis, 1):
        return None  # the file's slowest axis is not the slice axis, in order
    (_, note), = _series_plan(path, shape, None, volume, "error")
    _warn_geometry(path, header, orientation)
    canonical = orientation.canonical_shape
    planes = np.empty((canonical[axis], *(n for i, n in enumerate(canonical) if i != axis)), dtype=np.float32)
    arrival = SliceArrival(planes.shape[0])
    vol = Volume(
        data=np.moveaxis(planes, 0, axis), valid=None, n_invalid=0, orientation=orientation, zooms=zooms,
        header=header.copy(), affine=np.array(header.get_best_affine(), dtype=float), source_shape=shape,
        source_dtype=str(dtype.newbyteorder("=")), scaling=scaling, slice_axis=axis, path=path, series_note=note,
        arrival=arrival)
    threading.Thread(target=_decode, args=(path, gz, header, spatial, orientation.ornt, scaling, planes, arrival),
                     name="segpipe-decode", daemon=True).start()
    return vol


def _fits_float32(dtype: np.dtype, scaling: tuple[float, float]) -> bool:
    """Whether ``value * slope + inter`` stays finite in float32 for every value of ``dtype``."""
    info = np.iinfo(dtype)
    slope, inter = scaling
    return abs(slope) * max(abs(int(info.min)), abs(int(info.max))) + abs(inter) < float(np.finfo(np.float32).max)


def _decode(path: Path, gz: bool, header: nib.Nifti1Header, spatial: tuple[int, int, int],
            ornt: tuple[tuple[int, int], ...], scaling: tuple[float, float], planes: np.ndarray,
            arrival: SliceArrival) -> None:
    """Fill ``planes`` (canonical slices, slice-major) from the file, a chunk of file planes at a time."""
    t = time.perf_counter()
    error: BaseException | None = None
    try:
        _fill(path, gz, header, spatial, ornt, scaling, planes, arrival)
    except InputError as exc:
        error = exc
    except GZIP_ERRORS as exc:
        error = gzip_error(path, exc)
    except BaseException as exc:  # noqa: BLE001 - handed to the engine's threads
        error = InputError(f"{path}: unreadable volume data ({one_line(exc)}); expected a complete "
                           ".nii or .nii.gz volume")
    if error is None and arrival._cancelled:
        error = RuntimeError(f"{path}: decoding cancelled")
    arrival.seconds = time.perf_counter() - t
    arrival._end(error)


def _fill(path: Path, gz: bool, header: nib.Nifti1Header, spatial: tuple[int, int, int],
          ornt: tuple[tuple[int, int], ...], scaling: tuple[float, float], planes: np.ndarray,
          arrival: SliceArrival) -> None:
    """Convert chunks of file planes into canonical float32 slices as the inflating thread
    (``_raw_chunks``, one step ahead in a thread of its own) delivers them."""
    nx, ny, nz = spatial
    dtype = header.get_data_dtype()
    plane_bytes = nx * ny * dtype.itemsize
    step = max(1, CHUNK_BYTES // plane_bytes)
    scaled = scaling != (1.0, 0.0)
    wide = np.empty((step, *planes.shape[1:]), dtype=np.float64) if scaled else None
    orientation = np.asarray(ornt, dtype=float)
    chunks = _raw_chunks(path, gz, header, nz, plane_bytes, step, arrival)
    for z0, view in prefetch(chunks, maxsize=1, name="segpipe-inflate"):
        n = len(view) // plane_bytes
        chunk = np.frombuffer(view, dtype=dtype).reshape((nx, ny, n), order="F")
        # file axis 2 is the slice axis, unflipped: in-plane axes are permuted/flipped per chunk
        moved = np.moveaxis(nio.apply_orientation(chunk, orientation), int(ornt[2][0]), 0)
        if wide is None:
            planes[z0:z0 + n] = moved
        else:  # as io._to_float32: float64 scaling, rounded once to float32
            w = wide[:n]
            np.multiply(np.ascontiguousarray(moved), scaling[0], out=w)
            w += scaling[1]
            planes[z0:z0 + n] = w
        del chunk, moved
        arrival._advance(z0 + n)


def _raw_chunks(path: Path, gz: bool, header: nib.Nifti1Header, nz: int, plane_bytes: int, step: int,
                arrival: SliceArrival) -> Iterator[tuple[int, memoryview]]:
    """(first plane, raw bytes of ``step`` file planes), in order; then the rest of the file is
    read to its end, where a ``.nii.gz``'s CRC and length are checked.

    Three buffers take turns: one being converted, one waiting, one being filled (the
    consumer is at most one chunk behind, ``prefetch(maxsize=1)``)."""
    buffers = [bytearray(step * plane_bytes) for _ in range(3)]
    offset = header.get_data_offset()
    with open(path, "rb") as f:
        src: _Inflated | IO[bytes] = _Inflated(f) if gz else f
        _skip(src, offset)
        for i, z0 in enumerate(range(0, nz, step)):
            if arrival._cancelled:
                return
            n = min(step, nz - z0)
            view = memoryview(buffers[i % 3])[: n * plane_bytes]
            got = _read_exactly(src, view)
            if got < len(view):
                raise InputError(f"{path}: header dimensions {header.get_data_shape()} disagree with the data "
                                 f"size (it holds {z0 * plane_bytes + got} of {nz * plane_bytes} data bytes); "
                                 "expected a complete file")
            yield z0, view
        if gz:
            src.drain()  # type: ignore[union-attr]


class _Inflated:
    """A ``.nii.gz`` inflated straight into the caller's buffers (zlib in C checks CRC and length).

    ``gzip.GzipFile`` does the same with a Python-level loop, a copy and a separate CRC
    pass per 128 KiB; this takes ~0.1-0.2 s off a 512 x 512 x 400 int16 volume. Several
    gzip members one after another (``cat a.gz b.gz``) are one stream, as for gzip.
    """

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self._d = zlib.decompressobj(wbits=31)
        self._out = b""  # inflated bytes not handed out yet
        self._pos = 0
        self._input_done = False

    def readinto(self, view: memoryview) -> int:
        while len(self._out) - self._pos == 0:
            if not self._more(len(view)):
                return 0
        n = min(len(view), len(self._out) - self._pos)
        view[:n] = self._out[self._pos:self._pos + n]
        self._pos += n
        return n

    def drain(self) -> None:
        """Inflate (and discard) the rest, to the trailer of the last member."""
        while self._more(1 << 22):
            self._out, self._pos = b"", 0

    def _more(self, want: int) -> bool:
        """Inflate up to ``want`` more bytes; False at the end of the stream."""
        d = self._d
        if d.eof:  # between members; zero bytes padding the end are allowed, as gzip allows them
            rest = d.unused_data.lstrip(b"\0")
            while not rest:
                more = self._f.read(1 << 20)
                if not more:
                    return False
                rest = more.lstrip(b"\0")
            self._d = d = zlib.decompressobj(wbits=31)  # the next member
        else:
            rest = d.unconsumed_tail
            if not rest:
                rest = self._f.read(1 << 20)
                if not rest:
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        self._out, self._pos = d.decompress(rest, max(want, 1 << 16)), 0
        return True


def _skip(src: _Inflated | IO[bytes], n: int) -> None:
    """Skip the header and extensions (``vox_offset`` bytes: a few hundred) of the stream."""
    if _read_exactly(src, memoryview(bytearray(n))) < n:
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")


def _read_exactly(f: _Inflated | IO[bytes], view: memoryview) -> int:
    """Fill ``view`` from ``f`` (readinto may return short counts); the number of bytes read."""
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])  # type: ignore[union-attr]
        if not n:
            break
        got += n
    return got


# -- reading the next volume of a batch ahead ------------------------------------------------
# A batch on a GPU is bounded by decoding, one volume after another (inflate is one core's
# work). The batch flow calls read_ahead() for the next input before it runs this one, so its
# decode overlaps this volume's model; segment_volume() takes it. One slot per process.

_AHEAD_LOCK = threading.Lock()
_AHEAD: tuple[tuple[str, int, int], int | None, Volume, list[warnings.WarningMessage]] | None = None


def read_ahead(path: str | Path, *, slice_axis: int | None = None) -> bool:
    """Start decoding ``path`` now, for this process's next ``segment_volume`` of it.

    Replaces (and stops) a read-ahead nobody took. Nothing happens, False, for a file that
    cannot stream or cannot be read: the run itself reports that, in its own words. Warnings
    about the file are kept and given again when the volume is taken.
    """
    global _AHEAD
    key = _stat_key(Path(path))
    if key is None:
        return False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            vol = open_streamed(path, slice_axis=slice_axis)
    except SegpipeError:
        return False
    if vol is None:
        return False
    with _AHEAD_LOCK:
        old, _AHEAD = _AHEAD, (key, slice_axis, vol, list(caught))
    if old is not None and old[2].arrival is not None:
        old[2].arrival.cancel()
    return True


def take_read_ahead(path: str | Path, slice_axis: int | None) -> Volume | None:
    """The volume ``read_ahead`` started for ``path`` (same file, unchanged; same slice axis), or None."""
    global _AHEAD
    key = _stat_key(Path(path))
    with _AHEAD_LOCK:
        entry = _AHEAD
        if entry is None or key is None or entry[0] != key or entry[1] != slice_axis:
            return None
        _AHEAD = None
    for w in entry[3]:  # in the run's own warning capture now
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return entry[2]


def _stat_key(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path.resolve()), st.st_size, st.st_mtime_ns
