"""Calibration tools: they fit parameters ONLY to the calibration targets of
clinical-targets.md and write the values, with their provenance, to data files under
``femur/data/`` that the engine reads (no command rewrites a source file).

* ``python -m femur.calibration.remodeling [--write]`` -- cell model (rows 1-4, 6, 7) and
  romosozumab PK (row 5): ``cell_model.json``, ``romosozumab_pk.json``;
* ``mpiexec -n 2 python -m femur.calibration.risk [--patients N | --quick] [--write]`` --
  fracture risk (rows 8, 10-15: spine hazard and the hip strength scale, simulated on the
  FREEDOM, FPT, FIT-1, FIT-2 and FRAME-placebo cohorts): ``fracture_risk.json`` and the
  stored courses ``fracture_risk_courses.json.gz`` (``--refit-only`` refits from them);
* ``python -m femur.calibration.site_template [--write]`` -- the systemic driver's DXA-site
  element templates (geometry, nothing fitted): ``site_template.npz``.
"""
