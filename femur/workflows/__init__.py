"""Workflows: compose the stages for one bone or one patient.

* ``bones`` -- a patient's built-in bones; ``t_score`` -- a bone at a DXA-equivalent T-score;
* ``strength`` -- stiffness and fracture load of the built-in bones or a CT scan
  (`femur strength`); ``pushover`` -- the nonlinear pushover with its plot and files
  (``femur.pushover``);
* ``simulation`` -- the FE-coupled remodeling time loop (`femur simulate`), with ``tracks``
  (one bone through the run);
* ``systemic`` -- the systemic DXA-site driver (no FE) and its ``site_template`` table;
* ``timecourse`` -- the one result type of both drivers.
"""
