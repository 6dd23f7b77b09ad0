"""What makes GIS tools label a class map: class names, a raster attribute table, a QGIS style.

QGIS and ArcGIS build legends from GDAL's category names and raster attribute table (RAT),
not from dataset metadata. GDAL's GeoTIFF driver keeps both in the PAM sidecar
``NAME_mask.tif.aux.xml`` (it cannot store them in the TIFF, and its COG driver only copies
them to another sidecar), so segpipe writes that sidecar beside the finished COG, in GDAL's
PAM format: category names, a colour table of exactly the classes (the TIFF's own colour
map always has 2^bits = 256 entries; GDAL reports the sidecar's instead) and a thematic RAT
``Value, Class, R, G, B``. ``NAME_mask.qml`` is a QGIS paletted style, loaded by QGIS as
the layer's default style when the mask is opened (every QGIS version, with or without
RAT support). Both are pure text here; :class:`LegendSink` writes them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from ...engine.bands import Band, BandField
from ...files import write_text_atomic
from ..base import FieldSink, remove

RGB = tuple[int, int, int]
# GDAL's enums (gdal.h): GDALRATFieldType and GDALRATFieldUsage.
GFT_INTEGER, GFT_STRING = 0, 2
GFU_NAME, GFU_MINMAX, GFU_RED, GFU_GREEN, GFU_BLUE = 2, 5, 6, 7, 8
RAT_COLUMNS = (("Value", GFT_INTEGER, GFU_MINMAX), ("Class", GFT_STRING, GFU_NAME), ("R", GFT_INTEGER, GFU_RED),
               ("G", GFT_INTEGER, GFU_GREEN), ("B", GFT_INTEGER, GFU_BLUE))


def pam_xml(names: Sequence[str], colors: Sequence[RGB]) -> str:
    """The PAM sidecar of a class map: category names, colour table and RAT of band 1."""
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    cats = ET.SubElement(band, "CategoryNames")
    for name in names:
        ET.SubElement(cats, "Category").text = name
    table = ET.SubElement(band, "ColorTable")
    for r, g, b in colors:
        ET.SubElement(table, "Entry", c1=str(r), c2=str(g), c3=str(b), c4="255")
    rat = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
    for i, (name, ftype, usage) in enumerate(RAT_COLUMNS):
        fd = ET.SubElement(rat, "FieldDefn", index=str(i))
        ET.SubElement(fd, "Name").text = name
        ET.SubElement(fd, "Type").text = str(ftype)
        ET.SubElement(fd, "Usage").text = str(usage)
    for value, (name, (r, g, b)) in enumerate(zip(names, colors)):
        row = ET.SubElement(rat, "Row", index=str(value))
        for v in (value, name, r, g, b):
            ET.SubElement(row, "F").text = str(v)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def qml_style(names: Sequence[str], colors: Sequence[RGB]) -> str:
    """A QGIS paletted renderer style: one legend entry per class, nodata transparent."""
    root = ET.Element("qgis", version="3.28.0", styleCategories="Symbology")
    pipe = ET.SubElement(root, "pipe")
    renderer = ET.SubElement(pipe, "rasterrenderer", type="paletted", band="1", opacity="1", alphaBand="-1",
                             nodataColor="")
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    for value, (name, (r, g, b)) in enumerate(zip(names, colors)):
        ET.SubElement(palette, "paletteEntry", value=str(value), color=f"#{r:02x}{g:02x}{b:02x}", alpha="255",
                      label=name)
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode") + "\n"


def legend_paths(mask: Path) -> tuple[Path, Path]:
    """(PAM sidecar, QGIS style) of a mask: ``NAME_mask.tif.aux.xml`` and ``NAME_mask.qml``."""
    return mask.with_name(mask.name + ".aux.xml"), mask.with_suffix(".qml")


class LegendSink:
    """The class map's COG sink, plus its legend (PAM sidecar and QGIS style) once the COG is in place.

    The two are sidecars of the mask, as a label volume's ``.ctbl`` is of it: not listed as
    outputs of their own.
    """

    def __init__(self, mask: FieldSink, names: Sequence[str], colors: Sequence[RGB]) -> None:
        self.mask, self.names, self.colors = mask, tuple(names), [tuple(int(v) for v in c) for c in colors]
        self.consumes: tuple[BandField, ...] = mask.consumes
        self._written: list[Path] = []

    def write(self, band: Band) -> None:
        self.mask.write(band)

    def finish(self) -> dict[str, Path]:
        out = self.mask.finish()
        pam, qml = legend_paths(out[self.mask.name])
        self._written = [pam, qml]
        write_text_atomic(pam, pam_xml(self.names, self.colors))
        write_text_atomic(qml, qml_style(self.names, self.colors))
        return out

    def abort(self) -> None:
        self.mask.abort()
        for p in self._written:
            remove(p)
