"""Decode a volume while its first slices are already being segmented.

``volume.iter_volumes`` decodes the whole file before the first slice reaches the model: for
a large ``.nii.gz`` single-threaded inflate plus the float32 conversion take about as long
as a GPU needs for the whole volume, all of it time the GPU waits (bench/RESULTS.md).
When the file's slowest axis *is* the slice axis, in canonical order and unflipped (the
usual axial CT or MR written inferior to superior), the file holds the slices in the
order the engine takes them, so a decoder thread can fill the volume slice by slice while
the engine runs a few slices behind it (:class:`Arrival`).

Only files that need nothing from the whole volume before the first slice stream: a
single 3D volume (or one with trailing singleton dimensions) of an integer type whose
scaling cannot overflow float32, so that no voxel can be NaN/Inf and the validity mask is
known to be None before decoding. Everything else, and every header problem, goes the
whole-file way (``open_streamed`` returns None or raises before any thread starts).

Errors in the data (a truncated or corrupt ``.nii.gz``, fewer bytes than the header
says) are raised, as the same one-line ``InputError`` the whole-file reader gives, by
:meth:`Arrival.wait` or :meth:`Arrival.finish` in the engine's threads. The
run writes nothing until every slice has been predicted and ``finish()`` has checked the
gzip trailer (CRC and length), so a bad file still leaves no output behind.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import nibabel as nib
import numpy as np
from nibabel import orientations as nio
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from ...errors import InputError
from ...threads import Producer, StopToken
from .header import (GZIP_ERRORS, HEADER_BYTES, check_header, gzip_error, one_line, open_nifti, scaling_of,
                     series_plan, sniff, spatial_shape, warn_geometry)
from .orient import orientation_of
from .slicing import default_slice_axis
from .volume import Volume

# Raw bytes decoded per step: a handful of 512 x 512 int16 planes.
CHUNK_BYTES = 8 << 20


class Arrival:
    """How many canonical slices (along the volume's slice axis) the decoder has filled so far.

    The decoder is a :class:`~pipeline.threads.Producer` of slice counts, running ahead
    without bound (it fills the volume's own array; the counts are tiny). Whoever needs
    slices (the engine's reader thread, then the run) pulls counts until enough have
    arrived; the decoder's error is raised there (threads rule 2).
    """

    def __init__(self, n_slices: int, decode: Callable[[Arrival], Iterator[int]]) -> None:
        self.n_slices = n_slices
        self.stop = StopToken()
        self.seconds = 0.0  # the decoder thread's own time
        self._ready = 0
        self._error: BaseException | None = None
        self._counts = Producer(decode(self), role="decode", maxsize=0, stop=self.stop)

    def wait(self, count: int) -> None:
        """Block until slices ``[0, count)`` are in the volume; raise the decoder's error."""
        count = min(count, self.n_slices)
        while self._ready < count:
            if self._next() is None:
                how = "cancelled" if self.stop.stopped else "stopped"
                raise RuntimeError(f"decoding {how} after {self._ready} of {self.n_slices} slices")

    def finish(self) -> None:
        """Block until the whole file has been read (gzip trailer checked); raise its error."""
        while self._next() is not None:
            pass
        if self.stop.stopped:
            raise RuntimeError(f"decoding cancelled after {self._ready} of {self.n_slices} slices")

    def _next(self) -> int | None:
        """The next count (None at the end); the decoder's error, again for every later caller."""
        if self._error is None:
            try:
                n = next(self._counts, None)
            except BaseException as exc:
                self._error = exc
                raise
            if n is not None:
                self._ready = n
            return n
        raise self._error

    def cancel(self) -> None:
        """Stop the decoder early (the run failed elsewhere); safe to call at any time.

        Anyone still waiting for slices is released with an error, never left blocked.
        """
        self.stop.set()

    @property
    def ready(self) -> int:
        return self._ready


def open_streamed(path: str | Path, *, slice_axis: int | None = None, volume: int | None = None) -> Volume | None:
    """A :class:`Volume` whose ``data`` is being decoded in a background thread, or None.

    None when the file cannot stream (see the module docstring): the caller then reads
    it whole with ``volume.iter_volumes``, which also reports every header problem. The
    returned volume's ``arrival`` says which slices are in ``data`` so far.
    """
    path = Path(path)
    name = path.name.lower()
    if not path.is_file() or not name.endswith((".nii", ".nii.gz")):
        return None
    gz = name.endswith(".nii.gz")
    try:
        with open_nifti(path, gz) as f:
            klass = sniff(path, f.read(HEADER_BYTES))
            f.seek(0)
            header = klass.header_class.from_fileobj(f)
    except (InputError, EOFError, OSError, zlib.error, ImageFileError, HeaderDataError, ValueError):
        return None  # the whole-file reader says what is wrong, in its words
    check_header(path, header)
    shape = tuple(int(s) for s in header.get_data_shape())
    spatial, n_series = spatial_shape(path, shape)
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
    (_, note), = series_plan(path, shape, None, volume, "error")
    warn_geometry(path, header, orientation)
    canonical = orientation.canonical_shape
    planes = np.empty((canonical[axis], *(n for i, n in enumerate(canonical) if i != axis)), dtype=np.float32)
    arrival = Arrival(planes.shape[0],
                      lambda a: _decode(path, gz, header, spatial, orientation.ornt, scaling, planes, a))
    return Volume(
        data=np.moveaxis(planes, 0, axis), valid=None, n_invalid=0, orientation=orientation, zooms=zooms,
        header=header.copy(), affine=np.array(header.get_best_affine(), dtype=float), source_shape=shape,
        source_dtype=str(dtype.newbyteorder("=")), scaling=scaling, slice_axis=axis, path=path, series_note=note,
        arrival=arrival)


def _fits_float32(dtype: np.dtype, scaling: tuple[float, float]) -> bool:
    """Whether ``value * slope + inter`` stays finite in float32 for every value of ``dtype``."""
    info = np.iinfo(dtype)
    slope, inter = scaling
    return abs(slope) * max(abs(int(info.min)), abs(int(info.max))) + abs(inter) < float(np.finfo(np.float32).max)


def _decode(path: Path, gz: bool, header: nib.Nifti1Header, spatial: tuple[int, int, int],
            ornt: tuple[tuple[int, int], ...], scaling: tuple[float, float], planes: np.ndarray,
            arrival: Arrival) -> Iterator[int]:
    """Fill ``planes`` (canonical slices, slice-major) from the file; yield how many have arrived.

    Every failure is the whole-file reader's one-line InputError for the same damage.
    """
    t = time.perf_counter()
    try:
        yield from _fill(path, gz, header, spatial, ornt, scaling, planes, arrival)
    except InputError:
        raise
    except GZIP_ERRORS as exc:
        raise gzip_error(path, exc) from exc
    except Exception as exc:
        raise InputError(f"{path}: unreadable volume data ({one_line(exc)}); expected a complete "
                         ".nii or .nii.gz volume") from exc
    finally:
        arrival.seconds = time.perf_counter() - t


def _fill(path: Path, gz: bool, header: nib.Nifti1Header, spatial: tuple[int, int, int],
          ornt: tuple[tuple[int, int], ...], scaling: tuple[float, float], planes: np.ndarray,
          arrival: Arrival) -> Iterator[int]:
    """Convert chunks of file planes into canonical float32 slices as the inflating thread
    (``_raw_chunks``, one step ahead in a thread of its own) delivers them."""
    nx, ny, nz = spatial
    dtype = header.get_data_dtype()
    plane_bytes = nx * ny * dtype.itemsize
    step = max(1, CHUNK_BYTES // plane_bytes)
    scaled = scaling != (1.0, 0.0)
    wide = np.empty((step, *planes.shape[1:]), dtype=np.float64) if scaled else None
    orientation = np.asarray(ornt, dtype=float)
    chunks = Producer(_raw_chunks(path, gz, header, nz, plane_bytes, step), role="inflate", stop=arrival.stop.child())
    try:
        for z0, view in chunks:
            n = len(view) // plane_bytes
            chunk = np.frombuffer(view, dtype=dtype).reshape((nx, ny, n), order="F")
            # file axis 2 is the slice axis, unflipped: in-plane axes are permuted/flipped per chunk
            moved = np.moveaxis(nio.apply_orientation(chunk, orientation), int(ornt[2][0]), 0)
            if wide is None:
                planes[z0:z0 + n] = moved
            else:  # as volume._to_float32: float64 scaling, rounded once to float32
                w = wide[:n]
                np.multiply(np.ascontiguousarray(moved), scaling[0], out=w)
                w += scaling[1]
                planes[z0:z0 + n] = w
            del chunk, moved
            yield z0 + n
    finally:
        chunks.close()


def _raw_chunks(path: Path, gz: bool, header: nib.Nifti1Header, nz: int, plane_bytes: int,
                step: int) -> Iterator[tuple[int, memoryview]]:
    """(first plane, raw bytes of ``step`` file planes), in order; then the rest of the file is
    read to its end, where a ``.nii.gz``'s CRC and length are checked.

    Three buffers take turns: one being converted, one waiting, one being filled (the
    consumer is at most one chunk behind, a Producer of ``maxsize=1``)."""
    buffers = [bytearray(step * plane_bytes) for _ in range(3)]
    offset = header.get_data_offset()
    with open(path, "rb") as f:
        src: _Inflated | IO[bytes] = _Inflated(f) if gz else f
        _skip(src, offset)
        for i, z0 in enumerate(range(0, nz, step)):
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
    pass per 128 KiB, a measurable part of a volume's decode (bench/RESULTS.md). Several
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
