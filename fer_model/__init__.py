"""FER2013 data, CNN recipes, training and evaluation for fer-pipeline."""

from fer_model.classes import CLASSES

__all__ = ["CLASSES"]
