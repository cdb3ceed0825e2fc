"""Patient-specific bones from CT: calibrated images -> density fields -> FE bones.

Public API: :func:`read_ct`, :func:`read_labels`, :class:`CTImage`,
:class:`PhantomCalibration`, :class:`InternalCalibration`, :func:`load_calibration`,
:func:`bone_from_ct`. The strength of a CT bone (`femur strength --ct`) is
``femur.workflows.strength.ct_strength``.
"""

from femur.geometry.ct.image import CTImage, read_ct, read_image, read_labels  # noqa: F401
from femur.geometry.ct.calibration import (  # noqa: F401
    InternalCalibration, PhantomCalibration, check_image_units, load_calibration,
)
from femur.geometry.ct.bone import bone_from_ct, calibrate  # noqa: F401

__all__ = [
    "CTImage", "read_ct", "read_image", "read_labels", "PhantomCalibration",
    "InternalCalibration", "load_calibration", "check_image_units", "bone_from_ct",
    "calibrate",
]
