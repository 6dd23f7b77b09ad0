"""The multi-threaded gzip writer makes ordinary single-member gzip files."""

from __future__ import annotations

import gzip
import zlib

import numpy as np
import pytest

from pipeline.sinks.nifti.pgzip import ParallelGzipWriter


def _payloads():
    rng = np.random.default_rng(0)
    labels = np.repeat(rng.integers(0, 4, 5000, dtype=np.uint8), 40)  # runs: compressible, like label maps
    noise = rng.integers(0, 256, 70_001, dtype=np.uint8)  # incompressible, odd length
    return {"empty": b"", "one byte": b"\x07", "labels": labels.tobytes(), "noise": noise.tobytes(),
            "exact chunks": bytes(range(256)) * 64}  # 16384 = 4 chunks of 4096


@pytest.mark.parametrize("name", list(_payloads()))
@pytest.mark.parametrize("threads", [1, 3])
def test_round_trip_is_one_gzip_member(tmp_path, name, threads):
    data = _payloads()[name]
    path = tmp_path / "x.gz"
    with ParallelGzipWriter(path, level=1, threads=threads, chunk=4096) as f:
        for i in range(0, len(data), 10_000):  # writes that do not line up with chunks
            f.write(data[i:i + 10_000])
    raw = path.read_bytes()
    assert gzip.decompress(raw) == data
    d = zlib.decompressobj(31)  # one gzip member, checked CRC and size, nothing after it
    assert d.decompress(raw) == data and d.eof and d.unused_data == b""


def test_chunks_see_their_predecessor(tmp_path):
    """A chunk primed with the previous chunk's tail compresses repeats across the border."""
    block = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with ParallelGzipWriter(tmp_path / "b.gz", threads=2, chunk=4096) as f:
        f.write(block * 8)
    assert gzip.decompress((tmp_path / "b.gz").read_bytes()) == block * 8
    assert (tmp_path / "b.gz").stat().st_size < 2 * 4096  # 8 chunks of the same random 4 KiB


def test_seek_forward_pads_with_zeros_and_backward_fails(tmp_path):
    path = tmp_path / "x.gz"
    with ParallelGzipWriter(path, chunk=4096) as f:
        f.write(b"head")
        assert f.seek(352) == 352 and f.tell() == 352
        f.write(b"data")
        with pytest.raises(OSError, match="backwards"):
            f.seek(10)
    assert gzip.decompress(path.read_bytes()) == b"head" + b"\x00" * 348 + b"data"


def test_an_error_inside_leaves_no_valid_file(tmp_path):
    path = tmp_path / "x.gz"
    with pytest.raises(RuntimeError):
        with ParallelGzipWriter(path, chunk=4096) as f:
            f.write(b"x" * 20_000)
            raise RuntimeError("model failed")
    with pytest.raises((EOFError, OSError, zlib.error)):
        gzip.decompress(path.read_bytes())
