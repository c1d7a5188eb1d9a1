"""ShapeNetVox32 grids rendered by us: `ShapenetVox` TFDS builder (`shapenet_vox`)."""

from refine3d_jax.data.shapenet_vox.builder import ShapenetVox

__all__ = ['ShapenetVox']
