"""Public name of the CT tools: ``from femur.ct import bone_from_ct``.

A facade at the top of the package (like ``femur/__init__``): the CT readers, calibration
and bone builder live in ``femur.geometry.ct``, the strength of a CT bone in
``femur.workflows.strength.ct_strength``.
"""

from femur.geometry.ct import (  # noqa: F401
    CTImage,
    InternalCalibration,
    PhantomCalibration,
    bone_from_ct,
    calibrate,
    check_image_units,
    load_calibration,
    read_ct,
    read_image,
    read_labels,
)
from femur.workflows.strength import ct_strength  # noqa: F401

__all__ = [
    "CTImage", "InternalCalibration", "PhantomCalibration", "bone_from_ct", "calibrate",
    "check_image_units", "ct_strength", "load_calibration", "read_ct", "read_image", "read_labels",
]
