"""Datasets: TFDS builders (ShapeNet as rendered by 3D-R2N2, synthetic shapes) and tools."""
