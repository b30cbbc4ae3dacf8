"""Multi-task networks by name: `create_model("resnet18", num_classes=8)`."""

from fer_lightning.models.multitask import MultiTaskNet
from fer_lightning.models.registry import create_model, register_model_configs

__all__ = ["MultiTaskNet", "create_model", "register_model_configs"]
