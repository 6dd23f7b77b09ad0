"""Sample data for tests, the demo, benchmarks and demo-model training.

``data.synthetic`` writes GeoTIFF scenes and NIfTI volumes with known geometry and
ground truth; nothing here is imported by the engine (``pipeline``).
"""
