"""Bone models: the `Bone` object, parametric femur and vertebra, mesh files, CT bones
(`femur.geometry.ct`), which cells are bone (`compartments`), density fields (`density`)
and body-size scaling (`population`)."""

from femur.geometry.bone import ROI, Bone

__all__ = ["Bone", "ROI"]
