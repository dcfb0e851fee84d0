"""deep-saliency: how far can an image classifier's explanations be trusted?"""
from .models import Model, load_model
from .data import load_img

__all__ = ["Model", "load_model", "load_img"]
