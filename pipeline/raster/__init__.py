"""GeoTIFF (any GDAL raster) input and COG output, through rasterio."""
