"""Input paths: local files, and GDAL's virtual file systems passed to GDAL untouched.

A GDAL path (``/vsizip//data/s.zip/a.tif``, ``/vsicurl/https://host/a.tif``, ``/vsis3/bucket/a.tif``,
``/vsigs/``, ``/vsiaz/``...) is kept as the string the user gave: ``Path()`` would collapse
its ``//`` (``/vsizip//data`` is an absolute path inside the archive syntax, ``https://`` a
URL) and ``os.path.exists`` knows nothing of it. Only GDAL opens it, with GDAL's own
configuration for credentials (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``,
``AZURE_STORAGE_*``, ``GDAL_HTTP_*``...): segpipe never reads or stores them, and what a
record keeps of a URL drops its user info and query values (a presigned URL's signature).

Network file systems get GDAL settings that keep the request count down (:data:`NETWORK_DEFAULTS`),
as defaults: a variable the user set in the environment wins. Measured with a local HTTP
server (``tests/pipeline/test_vsi_http.py``): without ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR``
opening a COG costs a directory listing and seven sidecar probes (``.aux.xml``, ``.aux``,
``.xml``...) besides the two header requests. That option also hides a *local* scene's
``.msk`` sidecar, so it is applied only while a network path is opened (:func:`opening`);
the options read while pixels stream are set process-wide, where they touch network reads
only.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

InputPath = str | Path

# /vsizip/, /vsicurl/, /vsicurl?url=..., /vsis3_streaming/ ...
_GDAL = re.compile(r"^/vsi[a-z0-9_]+(/|\?|\{|$)")
_NETWORK = re.compile(r"/vsi(curl|s3|gs|az|adls|oss|swift|webhdfs|hdfs)(_streaming)?[/?]")
# An archive file system and the archive it reads: /vsizip//data/s.zip/a.tif, /vsizip/{/data/s.zip}/a.tif.
_ARCHIVE = re.compile(r"^/vsi(zip|tar|7z|rar|gzip)/(\{(?P<braced>.+?)\}|"
                      r"(?P<plain>.+?\.(zip|kmz|tar|tgz|tar\.gz|7z|rar|gz)))(/|$)", re.IGNORECASE)

# Opening: no directory listing, hence no sidecar probes (a remote scene's masks must be internal).
OPEN_DEFAULTS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
# Reading: consecutive byte ranges in one request; a few retries of a failed request (503s of
# object stores at night). These affect network reads only, so they are process defaults.
READ_DEFAULTS = {"GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES", "GDAL_HTTP_MULTIPLEX": "YES",
                 "GDAL_HTTP_MAX_RETRY": "3", "GDAL_HTTP_RETRY_DELAY": "1"}
NETWORK_DEFAULTS = {**OPEN_DEFAULTS, **READ_DEFAULTS}
# Where the input's name has one of these suffixes, GDAL may open only such names on the network
# (no probing of anything else, whatever the user set for directory listings).
ALLOWED_EXTENSIONS = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".ovr", ".msk")


def is_gdal_path(path: InputPath) -> bool:
    """A GDAL virtual file system path (``/vsi...``), to be passed to GDAL as it is."""
    return bool(_GDAL.match(str(path)))


def is_network(path: InputPath) -> bool:
    """A path GDAL reads over the network (``/vsicurl/``, ``/vsis3/``..., also inside ``/vsizip/``)."""
    return is_gdal_path(path) and bool(_NETWORK.search(str(path)))


def as_input(path: InputPath) -> InputPath:
    """The input as segpipe keeps it: a GDAL path unchanged (a str), a local one as a ``Path``."""
    return str(path) if is_gdal_path(path) else Path(path).expanduser()


def absolute(path: InputPath, base: Path | None = None) -> InputPath:
    """A local path made absolute (against ``base``, default the working directory); a GDAL path unchanged."""
    if is_gdal_path(path):
        return str(path)
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base or Path.cwd()).absolute() / p


def input_name(path: InputPath) -> str:
    """The file name of the input: the last component (of a URL: without its query)."""
    if not is_gdal_path(path):
        return Path(path).name
    s = str(path).split("?", 1)[0].rstrip("/}")
    return s.rsplit("/", 1)[-1]


def public(path: InputPath) -> str:
    """The path as records and tags keep it: absolute, and a URL without user info or query values."""
    if not is_gdal_path(path):
        return str(Path(path).expanduser().resolve())
    s = str(path)
    m = re.search(r"[a-z][a-z0-9+.-]*://", s)
    if m is None:
        return s
    head, url = s[: m.start()], s[m.start():]
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = "&".join(f"{kv.split('=', 1)[0]}=..." for kv in parts.query.split("&") if kv) if parts.query else ""
    return head + urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def shown(path: InputPath) -> str:
    """The path as messages name it: as given, less a URL's credentials (messages reach logs and records)."""
    return public(path) if is_gdal_path(path) else str(path)


def archive_of(path: InputPath) -> str | None:
    """The archive an archive path reads (``/vsizip//data/s.zip/a.tif`` -> ``/data/s.zip``), else None."""
    m = _ARCHIVE.match(str(path)) if is_gdal_path(path) else None
    return None if m is None else (m.group("braced") or m.group("plain"))


def open_options(path: InputPath) -> dict[str, str]:
    """GDAL configuration for opening ``path``: the network defaults the environment does not set."""
    if not is_network(path):
        return {}
    opts = {k: v for k, v in OPEN_DEFAULTS.items() if k not in os.environ}
    if ("CPL_VSIL_CURL_ALLOWED_EXTENSIONS" not in os.environ and archive_of(path) is None
            and input_name(path).lower().endswith(ALLOWED_EXTENSIONS)):
        opts["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"] = ",".join(ALLOWED_EXTENSIONS)
    return opts


def set_read_defaults() -> None:
    """The network read settings, as process defaults (GDAL reads them per request, in every thread)."""
    for key, value in READ_DEFAULTS.items():
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def opening(path: InputPath) -> Iterator[None]:
    """Around ``rasterio.open(path)``: the open-time defaults for a network path, nothing for others."""
    opts = open_options(path)
    if not is_network(path):
        yield
        return
    set_read_defaults()
    import rasterio

    with rasterio.Env(**opts):
        yield
