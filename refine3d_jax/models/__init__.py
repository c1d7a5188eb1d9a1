"""Refine3DNet's modules: encoder, fusion (`attention`), decoder, refiner."""

from refine3d_jax.models.refine3d import SUBTREES, Refine3DNet, create_model, init_variables

__all__ = ['SUBTREES', 'Refine3DNet', 'create_model', 'init_variables']
