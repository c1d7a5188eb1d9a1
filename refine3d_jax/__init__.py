"""refine3d_jax: Refine3DNet (multi-view 3D voxel reconstruction) in JAX/Flax."""
