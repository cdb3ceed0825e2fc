"""Calibration tools: they fit parameters ONLY to the calibration targets of
clinical-targets.md and write the values, with their provenance, to data files under
``femur/data/`` that the engine reads (no command rewrites a source file).

* ``python -m femur.calibration.remodeling [--write]`` -- cell model (rows 1-4, 6, 7) and
  romosozumab PK (row 5): ``cell_model.json``, ``romosozumab_pk.json``;
* ``python -m femur.calibration.risk --patients 50 [--write]`` -- vertebral baseline
  hazard (target #8): ``vertebral_h0.json``;
* ``python -m femur.calibration.site_template [--write]`` -- the systemic driver's DXA-site
  element templates (geometry, nothing fitted): ``site_template.npz``.
"""
