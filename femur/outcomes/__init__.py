"""Outcomes: what a clinician reads off a bone -- DXA-equivalent areal BMD and T-scores
(`dxa`, `references`), volumetric BMD (`vbmd`), fracture risk (`risk`)."""
