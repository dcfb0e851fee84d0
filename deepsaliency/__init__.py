"""deep-saliency: how far can an image classifier's explanations be trusted?

The library behind the DVC pipeline; every stage calls these functions.
"""
from .data import load_img
from .explain import METHODS, attribute, reduce_map
from .models import Model, load_model
from .rise import RiseMasks, explain, generate_masks

__all__ = ["Model", "load_model", "load_img", "generate_masks", "RiseMasks", "explain", "attribute", "reduce_map", "METHODS"]
