"""Public name of the CT tools: ``from femur.ct import bone_from_ct``.

A facade at the top of the package (like ``femur/__init__``): the CT readers, calibration
and bone builder live in ``femur.geometry.ct``, the strength of a CT bone in
``femur.workflows.strength.ct_strength``, a scan as the bone and patient of a treatment run
in ``femur.workflows.scans`` (``femur.simulate(bone=bone_from_ct(...))``).
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
from femur.workflows.scans import CTScan, scan_bone, scan_patient  # noqa: F401
from femur.workflows.strength import ct_strength  # noqa: F401

__all__ = [
    "CTImage", "CTScan", "InternalCalibration", "PhantomCalibration", "bone_from_ct", "calibrate",
    "check_image_units", "ct_strength", "load_calibration", "read_ct", "read_image", "read_labels",
    "scan_bone", "scan_patient",
]
