"""What an input is, for deciding later whether it changed: without downloading a remote one.

``record.json`` keeps ``input.identity = {"method": ..., "value": ...}``:

    sha256          a local file: the sha256 of its bytes (as before: ``input.sha256`` too)
    archive-sha256  an archive path over a local archive (``/vsizip//data/s.zip/a.tif``):
                    the sha256 of the archive
    http-etag       a network path: ``ETag`` and ``Content-Length`` as GDAL's HEAD request
                    returns them (an object store changes the ETag with the content)
    http-modified   a network path whose server sends no ETag: ``Last-Modified`` and size
    sample-sha256   anything else (or GDAL's headers unreachable): the sha256 of the header
                    (size, bands, types, CRS, transform, nodata, blocks, tags) and of the
                    pixels of :data:`SAMPLE_BLOCKS` blocks spread over the scene

A re-run's skip decision of a network input therefore costs one HEAD request.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .. import gdal_lib
from ..files import file_sha256
from .vsi import InputPath, archive_of, is_gdal_path, is_network, opening

SAMPLE_BLOCKS = 16
Identity = dict[str, Any]


def input_identity(path: InputPath) -> Identity:
    """The identity of ``path`` (see the module docstring); reads a local file whole, a remote one not at all."""
    if not is_gdal_path(path):
        return {"method": "sha256", "value": file_sha256(path)}
    archive = archive_of(path)
    if archive is not None and not is_gdal_path(archive) and Path(archive).is_file():
        return {"method": "archive-sha256", "value": file_sha256(archive), "archive": archive}
    target = archive if archive is not None and is_network(archive) else str(path)
    if is_network(target):
        ident = _http_identity(target)
        if ident is not None:
            return ident
    return {"method": "sample-sha256", "value": sample_hash(str(path))}


def input_size(path: InputPath) -> int | None:
    """The input's size in bytes where it is known without reading it (a local file), else None."""
    return None if is_gdal_path(path) else Path(path).stat().st_size


def identity_changed(recorded: dict[str, Any], path: InputPath) -> str | None:
    """Why the input differs from the one a record's ``input`` describes, or None when it is the same.

    Cheap checks first: a local file's size before its hash. A record without ``identity``
    (written before it existed) is compared by its ``sha256``.
    """
    ident = recorded.get("identity") or {"method": "sha256", "value": recorded.get("sha256")}
    method = ident.get("method")
    try:
        if not is_gdal_path(path) and recorded.get("size_bytes") not in (None, input_size(path)):
            return "input changed (size)"
        current = _current(method, path)
    except OSError:
        return "input unreadable"
    if current is None:
        return "input unreadable"
    if current.get("method") != method:
        return f"input changed (now identified by {current.get('method')}, was {method})"
    return None if current.get("value") == ident.get("value") else "input changed (content)"


def _current(method: str | None, path: InputPath) -> Identity | None:
    if is_gdal_path(path) and is_network(archive_of(path) or str(path)):
        gdal_lib.forget(archive_of(path) or str(path))  # a long-lived worker must not see a cached size/date
    if method == "sample-sha256":
        return {"method": method, "value": sample_hash(str(path))}
    return input_identity(path)


def _http_identity(path: str) -> Identity | None:
    headers = gdal_lib.file_headers(path)
    if not headers:
        return None
    size = headers.get("content-length", "")
    if headers.get("etag"):
        return {"method": "http-etag", "value": f"{headers['etag']} {size}".strip()}
    if headers.get("last-modified"):
        return {"method": "http-modified", "value": f"{headers['last-modified']} {size}".strip()}
    return None


def sample_hash(path: str) -> str:
    """sha256 of a raster's header facts and of the pixels of up to :data:`SAMPLE_BLOCKS` blocks."""
    import rasterio

    from .geotiff.strips import sample_windows

    h = hashlib.sha256()
    with opening(path), rasterio.open(path) as ds:
        facts = dict(size=(ds.width, ds.height, ds.count), dtypes=ds.dtypes, crs=ds.crs.to_wkt() if ds.crs else None,
                     transform=list(ds.transform), nodata=ds.nodata, blocks=ds.block_shapes, tags=ds.tags(),
                     overviews=ds.overviews(1))
        h.update(json.dumps(facts, sort_keys=True, default=str).encode())
        side = min(512, max(ds.block_shapes[0]))  # a block (of a striped file: 512 of its rows)
        for win in sample_windows(ds.height, ds.width, ds.block_shapes[0], n=SAMPLE_BLOCKS, side=side):
            h.update(ds.read(window=win).tobytes())
    return h.hexdigest()
