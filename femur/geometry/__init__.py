"""Bone models: parametric femur and vertebra, user meshes."""
from femur.geometry.bone import Bone, ROI

__all__ = ["Bone", "ROI"]
