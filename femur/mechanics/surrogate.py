"""The strength surrogate: a linear-FE predictor of the nonlinear (pushover) strength.

Trials need thousands of strength evaluations; a material-nonlinear pushover per load case
and visit costs far more than a linear solve (femur.mechanics.pushover). The surrogate
predicts the pushover's peak load of one load case from what the linear solve of the same
bone gives, as a power law fitted in log space::

    log F_nonlinear = c0 + sum_i c_i log x_i + sum_j g_j a_j

with the features ``x_i`` taken from the linear quantities of the load case
(femur.mechanics.strength): ``load`` (the first-element fracture load, N),
``stiffness`` (N/mm) and, for displacement-controlled cases, ``strain_load`` (the load at
0.2 % apparent strain, N); and, where the fit chose them, the bone's own anatomy ``a_j``
(mm, degrees: :data:`GEOMETRY_FEATURES`, as the built bone records it in
``parameters["anatomy"]``; the anatomical femur's head radius, neck length, ...). A power
law keeps predictions positive.

A fit may also have a *change* part: slopes ``b_i`` of the within-woman log ratio, fitted on
pairs of one woman's bone before and after treatment (no intercept: an unchanged bone keeps
its strength)::

    F(t) = F_level(x(0), a) * prod_i (x_i(t) / x_i(0))^b_i

where ``F_level`` is the power law above evaluated on the *reference* bone ``x(0)`` (a run's
month 0). Between women, strength follows other relations than within one woman on
treatment (a woman's anatomy and density distribution go with her stiffness; a drug changes
only the density), so a single set of slopes fitted across all bones mixes the two. Without
a reference bone (a single strength evaluation) the prediction is ``F_level(x)``. Without a
change part the change on treatment follows the level slopes:
F1/F0 = prod (x_i,1 / x_i,0)^c_i.

The coefficients are FITTED values: they live in ``femur/data/strength_surrogate.json``
with their provenance and the samples they were fitted to, written by
``python -m femur.calibration.strength_surrogate --write`` (issue 10: trained on one set of
virtual patients' bones at baseline and after treatment, tested on another). This module
only reads them and predicts; it never holds a coefficient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from femur.core.datafiles import data_path, read_fitted
from femur.core.errors import InputError

#: the data file of the fitted surrogate
DATA_FILE = "strength_surrogate.json"

#: the command that (re)fits it
FIT_COMMAND = "python -m femur.calibration.strength_surrogate --write"

#: feature name -> quantity kind of femur.mechanics.strength (``<prefix>_strength_n`` is the
#: linear first-element load when the linear model runs)
FEATURE_KINDS = {"load": "strength", "stiffness": "stiffness", "strain_load": "surrogate"}

#: the anatomy a fit may add (linear terms of log strength; keys of a built anatomical
#: femur's ``parameters["anatomy"]``, femur.geometry.anatomical: mm and degrees)
GEOMETRY_FEATURES = ("head_radius_mm", "neck_length_mm", "neck_width_mm", "neck_shaft_angle_deg",
                     "anteversion_deg", "offset_mm")


@dataclass(frozen=True)
class SurrogateFit:
    """The fitted power law of one load case (quantity prefix, e.g. ``"femoral_fall"``)."""

    prefix: str
    features: tuple[str, ...]
    #: c0 (log-space intercept), one slope per feature, then one per geometry feature
    coef: tuple[float, ...]
    #: the bone's anatomy terms (:data:`GEOMETRY_FEATURES`), linear in log strength
    geometry: tuple[str, ...] = ()
    #: {anatomy term: (lowest, highest)} over the training bones (None: not recorded)
    geometry_range: dict | None = None
    #: the change part (module docstring): features and one within-woman slope each
    change_features: tuple[str, ...] = ()
    change_coef: tuple[float, ...] = ()

    def __post_init__(self):
        unknown = [f for f in self.features if f not in FEATURE_KINDS]
        unknown_geo = [g for g in self.geometry if g not in GEOMETRY_FEATURES]
        if (unknown or unknown_geo or not self.features
                or len(self.coef) != len(self.features) + len(self.geometry) + 1):
            raise InputError(
                f"strength surrogate '{self.prefix}': features {list(self.features)} and geometry "
                f"{list(self.geometry)} with {len(self.coef)} coefficients; expected 1+ of "
                f"{sorted(FEATURE_KINDS)}, 0+ of {list(GEOMETRY_FEATURES)} and one coefficient more "
                "than both together (the intercept)")
        bad = [f for f in self.change_features if f not in FEATURE_KINDS]
        if bad or len(self.change_coef) != len(self.change_features):
            raise InputError(
                f"strength surrogate '{self.prefix}': change features {list(self.change_features)} with "
                f"{len(self.change_coef)} slopes; expected 0+ of {sorted(FEATURE_KINDS)} and one slope each")

    def _log_feature(self, features: dict, name: str, what: str = "feature") -> float:
        v = (features or {}).get(name)
        if v is None or not np.isfinite(v) or v <= 0:
            raise InputError(f"strength surrogate '{self.prefix}': {what} '{name}' must be a "
                             f"positive number, got {v!r}")
        return float(np.log(float(v)))

    def predict(self, features: dict, geometry: dict | None = None, reference: dict | None = None) -> float:
        """Predicted nonlinear strength (N) from the feature values (N, N/mm) and, for a fit
        with geometry terms, the bone's anatomy (``parameters["anatomy"]``: mm, degrees).
        ``reference``: the feature values of the same bone at the run's reference state (its
        month 0); a fit with a change part takes the level from it and the change from the
        ratios (module docstring). None: this bone is its own reference."""
        if self.change_features and reference is not None:
            return float(self.predict(reference, geometry) * self.change_ratio(features, reference, geometry))
        logs = [self._log_feature(features, name) for name in self.features]
        for name in self.geometry:
            v = (geometry or {}).get(name)
            if v is None or not np.isfinite(v):
                raise InputError(
                    f"strength surrogate '{self.prefix}': the fit reads the bone's anatomy '{name}' "
                    f"(mm or degrees), and this bone gives {v!r} (the fit is made on the built-in "
                    "anatomical femur, whose anatomy every built bone records)")
            logs.append(float(v))
        c = np.asarray(self.coef, dtype=float)
        return float(np.exp(c[0] + np.dot(c[1:], logs)))

    def change_ratio(self, features: dict, reference: dict, geometry: dict | None = None) -> float:
        """The predicted strength ratio F(features) / F(reference) of one bone between its
        reference state and a later one: the change part's ``prod (x_i / x_i,ref)^b_i``, or
        without a change part the level's (its anatomy terms cancel)."""
        if self.change_features:
            logs = [self._log_feature(features, f) - self._log_feature(reference, f, "reference feature")
                    for f in self.change_features]
            return float(np.exp(np.dot(np.asarray(self.change_coef, dtype=float), logs)))
        return float(self.predict(features, geometry) / self.predict(reference, geometry))

    def outside_range(self, geometry: dict | None) -> list[str]:
        """The anatomy terms of ``geometry`` that lie outside the training bones' range
        (where a prediction extrapolates), as text, e.g. "head_radius_mm 27.1 (training
        20.3-25.9)"."""
        out = []
        for name, (lo, hi) in (self.geometry_range or {}).items():
            v = (geometry or {}).get(name)
            if v is not None and not lo <= float(v) <= hi:
                out.append(f"{name} {float(v):.1f} (training {lo:.1f}-{hi:.1f})")
        return out

    def to_dict(self) -> dict:
        out = {"features": list(self.features), "coef": [float(c) for c in self.coef]}
        if self.geometry:
            out["geometry"] = list(self.geometry)
        if self.geometry_range:
            out["geometry_range"] = {k: [float(lo), float(hi)] for k, (lo, hi) in self.geometry_range.items()}
        if self.change_features:
            out["change_features"] = list(self.change_features)
            out["change_coef"] = [float(c) for c in self.change_coef]
        return out

    @classmethod
    def from_dict(cls, prefix: str, spec: dict) -> "SurrogateFit":
        rng = spec.get("geometry_range")
        return cls(prefix, tuple(spec["features"]), tuple(float(c) for c in spec["coef"]),
                   tuple(spec.get("geometry") or ()),
                   {k: (float(v[0]), float(v[1])) for k, v in rng.items()} if rng else None,
                   tuple(spec.get("change_features") or ()), tuple(float(c) for c in spec.get("change_coef") or ()))


def fit_log_linear(features: np.ndarray, target: np.ndarray, geometry: np.ndarray | None = None) -> np.ndarray:
    """Least-squares coefficients [c0, c1, ..., g1, ...] of log target = c0 + sum c_i log
    feature_i + sum g_j geometry_j (``features``: (n, k) positive values; ``geometry``: (n, m)
    finite values or None; ``target``: (n,) positive)."""
    X = np.asarray(features, dtype=float)
    y = np.asarray(target, dtype=float)
    G = np.zeros((y.size, 0)) if geometry is None else np.asarray(geometry, dtype=float).reshape(y.size, -1)
    if X.ndim != 2 or X.shape[0] != y.size:
        raise InputError(f"surrogate fit: features of shape {X.shape} do not match {y.size} targets")
    if X.shape[0] < X.shape[1] + G.shape[1] + 2:
        raise InputError(f"surrogate fit: {X.shape[0]} samples are too few for {X.shape[1] + G.shape[1]} features")
    if (np.any(~np.isfinite(X)) or np.any(X <= 0) or np.any(~np.isfinite(y)) or np.any(y <= 0)
            or np.any(~np.isfinite(G))):
        raise InputError("surrogate fit: features and targets must be positive and finite (geometry finite)")
    A = np.column_stack([np.ones(X.shape[0]), np.log(X), G])
    coef, *_ = np.linalg.lstsq(A, np.log(y), rcond=None)
    return coef


def fit_log_ratio(ratios: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares slopes [b1, ...] of log target = sum b_i log ratio_i, without an intercept
    (``ratios``: (n, k) positive within-woman feature ratios, treated over reference;
    ``target``: (n,) positive strength ratios)."""
    X = np.asarray(ratios, dtype=float)
    y = np.asarray(target, dtype=float)
    if X.ndim != 2 or X.shape[0] != y.size:
        raise InputError(f"surrogate change fit: ratios of shape {X.shape} do not match {y.size} targets")
    if X.shape[0] < X.shape[1] + 1:
        raise InputError(f"surrogate change fit: {X.shape[0]} pairs are too few for {X.shape[1]} features")
    if np.any(~np.isfinite(X)) or np.any(X <= 0) or np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise InputError("surrogate change fit: ratios must be positive and finite")
    coef, *_ = np.linalg.lstsq(np.log(X), np.log(y), rcond=None)
    return coef


def surrogate_file_exists() -> bool:
    return data_path(DATA_FILE).is_file()


def load_fits() -> dict[str, SurrogateFit]:
    """{prefix: SurrogateFit} from the data file (InputError naming the file and the fit
    command if it is missing or malformed)."""
    if not surrogate_file_exists():
        raise InputError(f"the strength surrogate is not fitted: {data_path(DATA_FILE)} is missing; "
                         f"run `{FIT_COMMAND}`")
    fitted = read_fitted(DATA_FILE)
    fits = {}
    for prefix, spec in fitted.values.items():
        if not isinstance(spec, dict) or "features" not in spec or "coef" not in spec:
            raise InputError(f"{fitted.path}: entry '{prefix}' needs 'features' and 'coef'")
        fits[prefix] = SurrogateFit.from_dict(prefix, spec)
    return fits


def fits_for(prefixes, where: str = "strength_model") -> dict[str, SurrogateFit]:
    """The fits of ``prefixes`` (InputError naming the missing load cases otherwise)."""
    fits = load_fits()
    missing = [p for p in prefixes if p not in fits]
    if missing:
        raise InputError(
            f"{where}: the strength surrogate in {data_path(DATA_FILE)} has no fit for "
            f"{', '.join(missing)} (it has {', '.join(sorted(fits)) or 'none'}); refit it with "
            f"`{FIT_COMMAND}` (all load cases are the default) or use 'linear' or 'nonlinear'")
    return {p: fits[p] for p in prefixes}


def case_verdicts(prefixes) -> dict[str, str]:
    """{load case: verdict} of ``prefixes`` from the test the data file records (a full,
    not ``--quick``, fit): "met" (the fit meets the accuracy target on its own test
    patients), "anchored" (it misses it, and the same fit anchored on each woman's month-0
    pushover, its change part after it, meets it: the report's ``anchored`` test), "missed"
    or "absent" (no fit, no full fit, no data file). Says nothing about the run's bones:
    :func:`surrogate_status` does."""
    prefixes = list(prefixes)
    if not surrogate_file_exists():
        return dict.fromkeys(prefixes, "absent")
    fitted = read_fitted(DATA_FILE)
    prov = fitted.provenance or {}
    report = prov.get("report") or {} if prov.get("mode") == "full" else {}
    out = {}
    for p in prefixes:
        rep = report.get(p) if p in fitted.values else None
        if not rep:
            out[p] = "absent"
        elif rep.get("meets_target"):
            out[p] = "met"
        elif (rep.get("anchored") or {}).get("meets_target"):
            out[p] = "anchored"
        else:
            out[p] = "missed"
    return out


def surrogate_status(prefixes, mesh_size_mm=None, builtin: bool = True) -> tuple[str, str]:
    """Whether the fitted surrogate may stand in for the nonlinear strength of load cases
    ``prefixes`` on a run's bones (``builtin``: the built-in anatomical femur and vertebra
    of the virtual patients, as the fit's; ``mesh_size_mm``: their element size, None: the
    bones' defaults), from what its data file records of its own test (issue 10's target:
    test R^2 >= 0.9 and a percent-change error under 2 percentage points):

    * ``("validated", why)``: a full (not ``--quick``) fit with a fit for every case, each
      meeting the target on its test set, made on bones like the run's;
    * ``("failed", why)``: such a fit whose test misses the target for one of the cases or
      more (:func:`case_verdicts` says which, and which of the misses meet it when anchored
      on a month-0 pushover);
    * ``("outside", why)``: the run's bones are not those the fit was made and tested on
      (a CT scan, another femur model, another mesh size: the linear quantities it reads
      depend on the mesh);
    * ``("missing", why)``: no data file, a quick (machinery-check) fit, or no fit for one
      of the cases.

    ``why`` says which, naming the file, the cases and the command that fits them."""
    prefixes = list(prefixes)
    if not surrogate_file_exists():
        return "missing", f"the strength surrogate is not fitted ({data_path(DATA_FILE)} is missing; `{FIT_COMMAND}`)"
    fitted = read_fitted(DATA_FILE)
    prov = fitted.provenance or {}
    if prov.get("mode") != "full":
        return "missing", f"{fitted.path} holds a quick (machinery-check) fit, not a validated one"
    fit_mesh = (prov.get("settings") or {}).get("mesh_size_mm")
    if not builtin:
        return "outside", ("the strength surrogate is fitted and tested on the built-in bones of virtual "
                           "patients, not on this run's bones")
    if fit_mesh is not None and (mesh_size_mm is None or abs(float(mesh_size_mm) - float(fit_mesh)) > 0.25):
        here = "the bones' default meshes" if mesh_size_mm is None else f"{float(mesh_size_mm):g} mm"
        return "outside", (f"the strength surrogate is fitted and tested on {float(fit_mesh):g} mm meshes "
                           f"(the trial mesh), and this run's are {here}")
    report = prov.get("report") or {}
    absent = [p for p in prefixes if p not in fitted.values or p not in report]
    if absent:
        return "missing", (f"the strength surrogate has no fit for {', '.join(absent)} "
                           f"(it has {', '.join(sorted(fitted.values)) or 'none'}; `{FIT_COMMAND} --cases ...` "
                           "adds load cases)")
    failed = [p for p in prefixes if not report[p].get("meets_target")]
    if failed:
        t = {p: report[p].get("test") or {} for p in failed}
        detail = "; ".join(f"{p}: test R2 {t[p].get('r2', float('nan')):.3f}, change error "
                           f"{t[p].get('change_mae_pp', float('nan')):.2f} pp" for p in failed)
        return "failed", f"the strength surrogate misses its accuracy target ({detail})"
    t = {p: report[p]["test"] for p in prefixes}
    detail = "; ".join(f"{p}: R2 {t[p]['r2']:.3f}, change error {t[p]['change_mae_pp']:.2f} pp "
                       f"on {report[p].get('patients', {}).get('test', '?')} test patients" for p in prefixes)
    return "validated", f"the strength surrogate meets its accuracy target ({detail})"


__all__ = ["DATA_FILE", "FEATURE_KINDS", "FIT_COMMAND", "GEOMETRY_FEATURES", "SurrogateFit", "fit_log_linear", "fit_log_ratio", "fits_for",
           "case_verdicts", "load_fits", "surrogate_file_exists", "surrogate_status"]
