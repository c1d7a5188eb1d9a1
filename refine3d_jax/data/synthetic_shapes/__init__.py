"""Procedural R2N2-like dataset: `SyntheticShapes` TFDS builder (`synthetic_shapes`)."""

from refine3d_jax.data.synthetic_shapes.builder import SyntheticShapes

__all__ = ['SyntheticShapes']
