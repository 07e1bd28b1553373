"""The ground-truth toy model of METHOD section 3."""

from .model import DEFAULT_TEMPERATURES, DEFAULT_TRAIN_TEMPERATURE, EXTRAS, ToyModel, ToySample, toy_from_params

__all__ = ["ToyModel", "ToySample", "EXTRAS", "DEFAULT_TEMPERATURES", "DEFAULT_TRAIN_TEMPERATURE", "toy_from_params"]
