"""A write-only gzip file compressed on several threads (pigz's method), for ``.nii.gz`` outputs.

Python's ``gzip`` compresses on one core, which on a GPU machine takes as long as segmenting
a good part of the volume (bench/RESULTS.md). Here the stream is cut into
chunks that threads compress at once (zlib releases the GIL); each chunk is primed with
the previous chunk's last 32 KiB as its dictionary, so matches across chunk borders are
kept, and ends on a sync flush, so the pieces join into one ordinary deflate stream.
The file is a single-member gzip any reader takes (nibabel, gzip, zlib's gzread in ITK
and 3D Slicer); its CRC-32 and size are computed in order by the writing thread.
"""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from collections import deque
from concurrent.futures import Future

from ...threads import pool

CHUNK = 1 << 21  # 2 MiB per compression job
WINDOW = 1 << 15  # deflate's window: the dictionary carried from one chunk to the next


def _compress(data: bytes, zdict: bytes, level: int, last: bool) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -15, zdict=zdict) if zdict else zlib.compressobj(
        level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class ParallelGzipWriter(io.RawIOBase):
    """Binary file object: ``write`` bytes, ``close`` finishes the gzip member.

    Seeking is forward-only (the gap is filled with zeros), which is all nibabel needs to
    place the data after the header. Compressed chunks are written in order as they
    finish; at most ``2 x threads`` chunks are in flight, so memory stays a few MiB.
    """

    def __init__(self, path: str | os.PathLike, level: int = 1, threads: int | None = None,
                 chunk: int = CHUNK) -> None:
        super().__init__()
        self.level, self.chunk = level, chunk
        self._threads = max(1, threads or os.cpu_count() or 1)
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._file.write(b"\x1f\x8b\x08\x00" + struct.pack("<I", int(time.time())) + b"\x00\xff")
        self._pool = pool("gzip", self._threads)
        self._jobs: deque[Future[bytes]] = deque()
        self._buf = bytearray()
        self._tail = b""
        self._crc = 0
        self._size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._size + offset if whence == io.SEEK_CUR else -1
        if target < self._size:
            raise OSError(f"cannot seek backwards in a gzip stream being written (to {target}, at {self._size})")
        if target > self._size:
            self.write(b"\x00" * (target - self._size))
        return self._size

    def write(self, b) -> int:  # type: ignore[override]
        view = memoryview(b).cast("B")
        n = len(view)
        self._crc = zlib.crc32(view, self._crc)
        self._size += n
        pos = 0
        if self._buf:  # top up the partial chunk first
            pos = min(n, self.chunk - len(self._buf))
            self._buf += view[:pos]
            if len(self._buf) == self.chunk:
                self._submit(bytes(self._buf), last=False)
                self._buf.clear()
        while n - pos >= self.chunk:  # whole chunks straight from the caller's buffer
            self._submit(bytes(view[pos: pos + self.chunk]), last=False)
            pos += self.chunk
        self._buf += view[pos:]
        return n

    def _submit(self, data: bytes, last: bool) -> None:
        self._jobs.append(self._pool.submit(_compress, data, self._tail, self.level, last))
        self._tail = data[-WINDOW:]
        while len(self._jobs) > 2 * self._threads or (self._jobs and self._jobs[0].done()):
            self._file.write(self._jobs.popleft().result())

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._submit(bytes(self._buf), last=True)
            self._buf.clear()
            while self._jobs:
                self._file.write(self._jobs.popleft().result())
            self._file.write(struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._file.close()
            super().close()

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[override]
        if exc_type is None:
            self.close()
        else:
            self.abort()  # never end a half-written stream with a valid trailer

    def abort(self) -> None:
        """Stop without finishing the member (the caller removes the file)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._file.close()
        io.RawIOBase.close(self)

