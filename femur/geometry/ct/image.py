"""CT image readers that keep the scanner geometry.

Every reader returns a :class:`CTImage`: a float array indexed ``[i, j, k]`` plus a 4x4
``affine`` that maps voxel indices to the *centre* of that voxel in world coordinates,
in mm, in the RAS+ frame.

World frame convention (the one nibabel uses for NIfTI): RAS+, i.e. +x towards the
patient's Right, +y Anterior, +z Superior (cranial).

* DICOM, ITK, VTK image data and NRRD files written by 3D Slicer/ITK use LPS+ (+x left,
  +y posterior, +z superior).  Readers of those formats convert LPS -> RAS by negating
  x and y, so that an image and a label image read from different formats share one frame.
  Pass ``frame="RAS"`` when a VTK/NRRD file is known to hold RAS coordinates.

Supported formats: NIfTI (.nii, .nii.gz; nibabel), VTK image data (.vti, legacy .vtk
structured points) and MetaImage (.mha, .mhd) through pyvista/VTK, NRRD (.nrrd, .nhdr;
pynrrd, optional; the header's 'space' sets LPS/RAS), and a DICOM series (a directory or
one file of the series; pydicom, optional: slices sorted by position along the slice
normal, rescale slope/intercept applied, evenly spaced slices required).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from femur.core.errors import InputError

#: LPS <-> RAS: negate the first two world axes
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

_UNITS = ("HU", "mg/cm3", "label", "unknown")


@dataclass
class CTImage:
    """A 3D image with its scanner geometry.

    array   float (or integer for label images) array, shape (ni, nj, nk)
    affine  4x4, voxel index (i, j, k) -> world RAS+ position (mm) of the voxel centre
    units   "HU" | "mg/cm3" (K2HPO4- or HA-equivalent mineral density) | "label" | "unknown"
    path    the file the image came from (for error messages)
    """

    array: np.ndarray
    affine: np.ndarray
    units: str = "unknown"
    path: str = "<array>"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.affine = np.asarray(self.affine, dtype=float)
        if self.units not in _UNITS:
            raise InputError(f"{self.path}: units must be one of {_UNITS}, got {self.units!r}")
        check_geometry(self.array.shape, self.affine, self.path)

    # ---------------------------------------------------------------- geometry
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k (mm)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def origin(self) -> np.ndarray:
        """World position (mm, RAS) of the centre of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit world directions of the i, j, k axes."""
        return self.affine[:3, :3] / self.spacing

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def index_to_world(self, ijk) -> np.ndarray:
        """(n, 3) continuous voxel indices -> (n, 3) world coordinates (mm)."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=float))
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_index(self, xyz) -> np.ndarray:
        """(n, 3) world coordinates (mm) -> (n, 3) continuous voxel indices."""
        xyz = np.atleast_2d(np.asarray(xyz, dtype=float))
        inv = np.linalg.inv(self.affine)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def world_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned world box (mm) covering the whole image, voxel extents included."""
        n = np.array(self.shape, dtype=float)
        corners = np.array(
            [[a, b, c] for a in (-0.5, n[0] - 0.5) for b in (-0.5, n[1] - 0.5)
             for c in (-0.5, n[2] - 0.5)]
        )
        w = self.index_to_world(corners)
        return w.min(axis=0), w.max(axis=0)


# --------------------------------------------------------------------- checks
def check_geometry(shape, affine, path) -> None:
    """Raise InputError if the image has no usable spacing or orientation."""
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"{path}: expected a 3D image, got array shape {tuple(shape)}")
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(
            f"{path}: the image has no valid orientation/spacing (affine must be a finite 4x4 "
            f"matrix, got {affine.tolist() if affine.size <= 16 else affine.shape})"
        )
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if not np.all(spacing > 1e-6):
        raise InputError(
            f"{path}: the image has no valid voxel spacing (got {spacing.tolist()} mm); "
            "expected positive voxel sizes in mm"
        )
    det = np.linalg.det(affine[:3, :3] / spacing)
    if abs(det) < 1e-3:
        raise InputError(
            f"{path}: the image orientation is singular (direction determinant {det:.3g}); "
            "expected three independent axis directions"
        )


def _squeeze3d(arr: np.ndarray, path) -> np.ndarray:
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise InputError(f"{path}: expected a 3D scalar image, got array shape {arr.shape}")
    return arr


# -------------------------------------------------------------------- readers
def _read_nifti(path: Path):
    try:
        import nibabel as nib

        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises various errors for broken files
        raise InputError(f"{path}: cannot read NIfTI image ({exc})") from None
    hdr = img.header
    qcode = int(hdr["qform_code"]) if "qform_code" in hdr else 1
    scode = int(hdr["sform_code"]) if "sform_code" in hdr else 1
    if qcode == 0 and scode == 0:
        raise InputError(
            f"{path}: NIfTI header has no orientation (qform_code = sform_code = 0); "
            "expected a scanner affine (set the sform/qform, e.g. with nibabel)"
        )
    zooms = np.asarray(hdr.get_zooms()[:3], dtype=float)
    try:  # nibabel silently replaces zero pixdim by 1 on load: read the raw header too
        from nibabel.openers import ImageOpener

        with ImageOpener(str(path)) as fobj:
            raw = type(hdr).from_fileobj(fobj, check=False)
        zooms = np.minimum(zooms, np.abs(np.asarray(raw["pixdim"][1:4], dtype=float)))
    except Exception:
        pass
    if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
        raise InputError(
            f"{path}: NIfTI header has no valid voxel spacing (pixdim {zooms.tolist()}); "
            "expected positive voxel sizes"
        )
    affine = np.asarray(img.affine, dtype=float)
    unit = hdr.get_xyzt_units()[0]
    scale = {"mm": 1.0, "unknown": 1.0, "meter": 1000.0, "micron": 1e-3}.get(unit, 1.0)
    if scale != 1.0:
        affine = affine.copy()
        affine[:3, :] *= scale
    arr = _squeeze3d(np.asanyarray(img.dataobj), path)
    return arr, affine, {"format": "nifti", "spatial_unit": unit}


def _read_pyvista_image(path: Path, frame: str):
    try:
        import pyvista as pv

        data = pv.read(str(path))
    except SystemExit:
        raise InputError(f"{path}: cannot read image (reader exited)") from None
    except Exception as exc:
        raise InputError(f"{path}: cannot read image ({exc})") from None
    if not isinstance(data, pv.ImageData):
        raise InputError(
            f"{path}: expected VTK image data (regular grid), got {type(data).__name__}"
        )
    return _from_pyvista(data, path, frame, {"format": path.suffix.lstrip(".").lower()})


def _from_pyvista(data, path, frame, meta):
    dims = tuple(int(d) for d in data.dimensions)
    names = list(data.point_data.keys())
    if not names:
        raise InputError(f"{path}: the image holds no point (voxel) scalars")
    name = data.point_data.active_scalars_name or names[0]
    arr = np.asarray(data.point_data[name])
    if arr.ndim != 1:
        raise InputError(f"{path}: expected scalar voxels, array '{name}' has shape {arr.shape}")
    arr = arr.reshape(dims, order="F")
    spacing = np.asarray(data.spacing, dtype=float)
    origin = np.asarray(data.origin, dtype=float)
    try:
        direction = np.asarray(data.direction_matrix, dtype=float)
    except Exception:
        direction = np.eye(3)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(
            f"{path}: the image has no valid voxel spacing (got {spacing.tolist()}); "
            "expected positive voxel sizes in mm"
        )
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    affine[:3, 3] = origin
    if frame.upper() == "LPS":
        affine = _LPS_TO_RAS @ affine
    elif frame.upper() != "RAS":
        raise InputError(f"{path}: frame must be 'LPS' or 'RAS', got {frame!r}")
    meta = dict(meta, scalars=name, file_frame=frame.upper())
    return arr, affine, meta


def _read_nrrd(path: Path, frame: str):
    """NRRD through pynrrd (VTK's vtkNrrdReader reads the first axis of a 3D scalar volume
    as vector components, so it is not used).  The NRRD 'space' field sets the frame."""
    try:
        import nrrd
    except ImportError:
        raise InputError(
            f"{path}: reading NRRD needs the 'pynrrd' package (pip install pynrrd); or convert "
            "the image to NIfTI / .vti"
        ) from None
    try:
        arr, hdr = nrrd.read(str(path), index_order="F")
    except Exception as exc:
        raise InputError(f"{path}: cannot read NRRD image ({exc})") from None
    arr = _squeeze3d(np.asarray(arr), path)
    if "space directions" in hdr and hdr["space directions"] is not None:
        d = np.asarray(hdr["space directions"], dtype=float)
        d = d[np.all(np.isfinite(d), axis=1)] if d.ndim == 2 else d
        if d.shape != (3, 3):
            raise InputError(f"{path}: expected 3 space directions, got {d.tolist()}")
        lin = d.T  # rows of 'space directions' are the world vectors of the i, j, k axes
        origin = np.asarray(hdr.get("space origin", np.zeros(3)), dtype=float)
    elif "spacings" in hdr:
        lin = np.diag(np.asarray(hdr["spacings"], dtype=float)[:3])
        origin = np.asarray(hdr.get("axis mins", np.zeros(3)), dtype=float)[:3]
    else:
        raise InputError(
            f"{path}: NRRD header has neither 'space directions' nor 'spacings'; expected the "
            "voxel spacing and orientation"
        )
    affine = np.eye(4)
    affine[:3, :3] = lin
    affine[:3, 3] = origin
    space = str(hdr.get("space", "")).lower()
    file_frame = {"left-posterior-superior": "LPS", "lps": "LPS",
                  "right-anterior-superior": "RAS", "ras": "RAS"}.get(space, frame.upper())
    if file_frame == "LPS":
        affine = _LPS_TO_RAS @ affine
    return arr, affine, {"format": "nrrd", "file_frame": file_frame}


def _read_dicom(path: Path):
    """DICOM series through pydicom (optional dependency).

    VTK's vtkDICOMImageReader is not used: on a test series it returned the rows
    bottom-up and the slices ordered by instance number instead of position.
    """
    folder = path if path.is_dir() else path.parent
    try:
        import pydicom  # noqa: F401
    except ImportError:
        raise InputError(
            f"{folder}: reading a DICOM series needs the 'pydicom' package (pip install "
            "pydicom); or convert the series to NIfTI (e.g. dcm2niix)"
        ) from None
    return _read_dicom_pydicom(folder)


def _read_dicom_pydicom(folder: Path):
    import pydicom

    slices = []
    for f in sorted(folder.iterdir()):
        if not f.is_file():
            continue
        try:
            ds = pydicom.dcmread(str(f))
        except Exception:
            continue
        if "PixelData" in ds and "ImagePositionPatient" in ds:
            slices.append(ds)
    if len(slices) < 2:
        raise InputError(f"{folder}: expected a DICOM series of >= 2 slices with positions")
    iop = np.asarray(slices[0].ImageOrientationPatient, dtype=float)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    pos = np.array([np.asarray(s.ImagePositionPatient, dtype=float) for s in slices])
    order = np.argsort(pos @ normal)
    slices = [slices[i] for i in order]
    pos = pos[order]
    dz = np.diff(pos @ normal)
    if np.any(dz <= 1e-6) or np.ptp(dz) > 1e-3 * max(abs(dz.mean()), 1.0):
        raise InputError(f"{folder}: DICOM slices are not evenly spaced (gaps {np.unique(dz)})")
    ps = np.asarray(slices[0].PixelSpacing, dtype=float)  # (row spacing, column spacing)
    vols = []
    for s in slices:
        try:
            a = s.pixel_array.astype(float)
        except Exception as exc:  # compressed transfer syntax without a decoder, ...
            raise InputError(f"{folder}: cannot decode DICOM pixel data ({exc})") from None
        a = a * float(getattr(s, "RescaleSlope", 1.0)) + float(getattr(s, "RescaleIntercept", 0.0))
        vols.append(a.T)  # pixel_array is [row, column]; make index i run along a row
    arr = np.stack(vols, axis=-1)
    affine = np.eye(4)
    affine[:3, 0] = row * ps[1]
    affine[:3, 1] = col * ps[0]
    affine[:3, 2] = normal * dz.mean()
    affine[:3, 3] = pos[0]
    return arr, _LPS_TO_RAS @ affine, {"format": "dicom", "reader": "pydicom"}


def _format_of(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir() or name.endswith(".dcm") or name.endswith(".ima"):
        return "dicom"
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        return "nifti"
    if name.endswith((".nrrd", ".nhdr")):
        return "nrrd"
    if name.endswith((".vti", ".vtk", ".mha", ".mhd")):
        return "vtk"
    raise InputError(
        f"{path}: unknown image format; expected .nii/.nii.gz, .vti/.vtk, .nrrd/.nhdr, "
        ".mha/.mhd or a DICOM series directory"
    )


def read_image(path, units: str = "unknown", frame: str = "LPS") -> CTImage:
    """Read any supported image file; ``frame`` applies to VTK/NRRD/MetaImage files only."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: image file not found")
    fmt = _format_of(path)
    if fmt == "nifti":
        arr, affine, meta = _read_nifti(path)
    elif fmt == "dicom":
        arr, affine, meta = _read_dicom(path)
    elif fmt == "nrrd":
        arr, affine, meta = _read_nrrd(path, frame)
    else:
        arr, affine, meta = _read_pyvista_image(path, frame)
    return CTImage(array=np.asarray(arr), affine=affine, units=units, path=str(path), meta=meta)


def read_ct(path, units: str = "HU", frame: str = "LPS") -> CTImage:
    """Read a CT volume as float; ``units`` is "HU" or "mg/cm3" (already calibrated)."""
    if units not in ("HU", "mg/cm3"):
        raise InputError(f"{path}: CT units must be 'HU' or 'mg/cm3', got {units!r}")
    img = read_image(path, units=units, frame=frame)
    img.array = np.asarray(img.array, dtype=float)
    if not np.all(np.isfinite(img.array)):
        raise InputError(f"{path}: the CT image holds NaN or infinite voxel values")
    return img


def read_labels(path, reference: CTImage | None = None, frame: str = "LPS",
                atol_mm: float = 1e-3) -> CTImage:
    """Read a label image (integer voxels) and check it against ``reference``.

    Checks: integer-valued labels; same grid shape and affine as the CT image (a label image
    on another grid must be resampled first); labels that overlap the CT image.
    """
    img = read_image(path, units="label", frame=frame)
    arr = np.asarray(img.array)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InputError(f"{path}: label image must hold integer labels, found fractional values")
    arr = arr.astype(np.int32)
    if arr.min() < 0:
        raise InputError(f"{path}: label image must hold non-negative labels, found {arr.min()}")
    img.array = arr
    if reference is not None:
        check_labels_match(img, reference)
    return img


def check_labels_match(labels: CTImage, image: CTImage, atol_mm: float = 1e-3) -> None:
    lo_l, hi_l = labels.world_bounds()
    lo_i, hi_i = image.world_bounds()
    overlap = np.minimum(hi_l, hi_i) - np.maximum(lo_l, lo_i)
    if np.any(overlap <= 0):
        raise InputError(
            f"{labels.path}: the labels do not overlap the image {image.path} "
            f"(label box {lo_l.round(2).tolist()}..{hi_l.round(2).tolist()} mm, image box "
            f"{lo_i.round(2).tolist()}..{hi_i.round(2).tolist()} mm, RAS); expected both on "
            "the same scanner grid"
        )
    if labels.shape != image.shape:
        raise InputError(
            f"{labels.path}: label image shape {labels.shape} does not match the CT image "
            f"{image.path} shape {image.shape}; expected the same voxel grid"
        )
    if not np.allclose(labels.affine, image.affine, atol=atol_mm, rtol=0):
        raise InputError(
            f"{labels.path}: label image geometry (affine) differs from the CT image "
            f"{image.path}; expected the same voxel grid (max difference "
            f"{np.abs(labels.affine - image.affine).max():.3g} mm). Resample the labels first."
        )


def write_nifti(path, array, affine) -> None:
    """Write an array + RAS affine as NIfTI (used by tests and examples)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=float))
    img.set_qform(np.asarray(affine, dtype=float), code=1)
    img.set_sform(np.asarray(affine, dtype=float), code=1)
    nib.save(img, str(path))


def write_vti(path, array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
              direction=None, name="values") -> None:
    """Write an array as VTK image data (.vti); origin/direction in the file's frame (LPS)."""
    import pyvista as pv

    arr = np.asarray(array)
    grid = pv.ImageData(dimensions=arr.shape, spacing=spacing, origin=origin)
    if direction is not None:
        grid.direction_matrix = np.asarray(direction, dtype=float)
    grid.point_data[name] = arr.ravel(order="F")
    grid.save(str(path))
