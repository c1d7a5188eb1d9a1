"""ShapeNet as rendered by 3D-R2N2: the `shapenet_r2n2` TFDS builder."""

from refine3d_jax.data.shapenet_r2n2.shapenet_r2n2 import ShapenetR2n2
from refine3d_jax.data.shapenet_r2n2.shapenet_r2n2 import ShapenetR2n2Config

__all__ = ['ShapenetR2n2', 'ShapenetR2n2Config']
