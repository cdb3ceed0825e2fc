"""Patient-specific bones from CT: calibrated images -> density fields -> FE bones.

Public API: :func:`read_ct`, :func:`read_labels`, :class:`CTImage`,
:class:`PhantomCalibration`, :class:`InternalCalibration`, :func:`load_calibration`,
:func:`bone_from_ct`, :func:`ct_strength`.
"""

from femur.ct.image import CTImage, read_ct, read_image, read_labels  # noqa: F401
from femur.ct.calibration import (  # noqa: F401
    InternalCalibration, PhantomCalibration, check_image_units, load_calibration,
)
from femur.ct.bone import bone_from_ct, calibrate  # noqa: F401

__all__ = [
    "CTImage", "read_ct", "read_image", "read_labels", "PhantomCalibration",
    "InternalCalibration", "load_calibration", "check_image_units", "bone_from_ct",
    "calibrate", "ct_strength",
]
