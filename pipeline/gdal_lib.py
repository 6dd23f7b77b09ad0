"""The few GDAL functions rasterio does not wrap, called in the GDAL library rasterio itself loaded.

rasterio has no API for a file's HTTP headers (``VSIGetFileMetadata``: how a remote input is
recognised unchanged without downloading it), for clearing GDAL's cache of a URL's size and
date (so a long-lived worker sees a replaced object), or for a driver's list of creation
options (how ``--co`` is checked before a night's run). GDAL's own Python bindings are not
installable from wheels, so these go through ``ctypes`` into the very library rasterio
loaded: the same configuration, credentials and caches. Where that library cannot be found
(an unusual build), every function here returns None and the callers fall back (a sampled
content hash; GDAL's own warning for a bad option).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import logging
import os
import xml.etree.ElementTree as ET
from typing import Any

log = logging.getLogger(__name__)


@functools.cache
def _lib() -> ctypes.CDLL | None:
    """rasterio's libgdal (already loaded: opening it again returns the same handle), or None."""
    import rasterio  # noqa: F401 - loads libgdal

    try:
        lib = ctypes.CDLL(_library_path() or "")
        for name, res, args in _SIGNATURES:
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        return lib
    except (OSError, AttributeError, TypeError) as exc:
        log.debug("GDAL library not reachable through ctypes: %s", exc)
        return None


def _library_path() -> str | None:
    """rasterio's own libgdal: the one its wheel bundles, else the system GDAL this process mapped.

    Never another package's bundled copy (pyogrio's wheel brings a GDAL of its own, with other
    drivers and codecs, and both are loaded in a run that writes vectors).
    """
    import rasterio

    here = os.path.dirname(rasterio.__file__)
    for pattern in (here + ".libs/libgdal*", here + "/.dylibs/libgdal*", here + ".libs/gdal*.dll"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    try:  # Linux, rasterio built against a system GDAL: the libgdal mapped outside any wheel's .libs
        with open("/proc/self/maps") as f:
            mapped = sorted({line.split()[-1] for line in f if "libgdal" in line.rsplit("/", 1)[-1]})
        system = [p for p in mapped if ".libs/" not in p and "/.dylibs/" not in p]
        if system:
            return system[0]
    except OSError:
        pass
    return ctypes.util.find_library("gdal")


_P = ctypes.c_void_p
_STRS = ctypes.POINTER(ctypes.c_char_p)
_SIGNATURES: tuple[tuple[str, Any, list[Any]], ...] = (
    ("VSIGetFileMetadata", _STRS, [ctypes.c_char_p, ctypes.c_char_p, _P]),
    ("VSICurlPartialClearCache", None, [ctypes.c_char_p]),
    ("CSLDestroy", None, [_STRS]),
    ("GDALAllRegister", None, []),
    ("GDALVersionInfo", ctypes.c_char_p, [ctypes.c_char_p]),
    ("GDALGetDriverByName", _P, [ctypes.c_char_p]),
    ("GDALGetMetadataItem", ctypes.c_char_p, [_P, ctypes.c_char_p, ctypes.c_char_p]),
)


def available() -> bool:
    return _lib() is not None


def version() -> str | None:
    """The GDAL release these functions call (rasterio's: ``rasterio.__gdal_version__``)."""
    lib = _lib()
    return None if lib is None else lib.GDALVersionInfo(b"RELEASE_NAME").decode()


def file_headers(path: str) -> dict[str, str] | None:
    """The HTTP headers GDAL gets for a network path (one HEAD request), or None (not known, not reachable)."""
    lib = _lib()
    if lib is None:
        return None
    items = lib.VSIGetFileMetadata(path.encode(), b"HEADERS", None)
    if not items:
        return None
    out: dict[str, str] = {}
    try:
        i = 0
        while items[i] is not None:
            key, _, value = items[i].decode("utf-8", "replace").partition("=")
            out[key.strip().lower()] = value.strip()
            i += 1
    finally:
        lib.CSLDestroy(items)
    return out


def forget(path: str) -> None:
    """Drop what GDAL cached of a network path (size, date, blocks): the next look asks the server again."""
    lib = _lib()
    if lib is not None:
        lib.VSICurlPartialClearCache(path.encode())


def creation_options(driver: str) -> dict[str, ET.Element] | None:
    """A driver's creation options by name (each ``<Option>`` element of GDAL's list), or None."""
    lib = _lib()
    if lib is None:
        return None
    lib.GDALAllRegister()  # rasterio registers the drivers lazily; registering again is a no-op
    drv = lib.GDALGetDriverByName(driver.encode())
    text = lib.GDALGetMetadataItem(drv, b"DMD_CREATIONOPTIONLIST", None) if drv else None
    if not text:
        return None
    return {o.get("name", "").upper(): o for o in ET.fromstring(text.decode()).iter("Option")}
