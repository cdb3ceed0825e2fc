"""Units: time constants and density conversions, defined once for all of femur.

Time: 1 year = 365.25 days, 1 month = 365.25 / 12 days (:data:`DAYS_PER_YEAR`,
:data:`DAYS_PER_MONTH`); every stage converts months and days with these.

Density conversions with explicit units.

Chain (biomechanics.md section 1.1):
    HU --(phantom fit, per scan)--> rho_QCT (mineral-equivalent, mg/cm3 or g/cm3)
    rho_QCT --(Schileo 2008: linear, not identity; coefficients UNCONFIRMED, so identity
               is used by default and said so)--> rho_ash (g/cm3)
    rho_ash --(/0.6, Schileo 2008: ash/apparent = 0.598 +- 0.004 cortical)--> rho_app (g/cm3)

The Bone's ``density`` field always holds *apparent* density in g/cm3.
"""

from __future__ import annotations

import numpy as np

#: days per (Julian) year and per month: the time unit conversions of every stage
DAYS_PER_YEAR = 365.25
MONTHS_PER_YEAR = 12.0
DAYS_PER_MONTH = DAYS_PER_YEAR / MONTHS_PER_YEAR

#: ash / apparent density ratio (Schileo, J Biomech 2008): 0.598 cortical and trabecular -> 0.6
ASH_TO_APPARENT_RATIO = 0.6


def mg_cm3_to_g_cm3(x):
    return np.asarray(x, dtype=float) / 1000.0


def qct_to_ash_g_cm3(rho_qct_g_cm3, slope: float = 1.0, intercept_g_cm3: float = 0.0):
    """rho_ash = intercept + slope * rho_QCT.

    Default identity: the often-quoted 0.877*rho + 0.079 is UNCONFIRMED
    (biomechanics.md 1.1); pass those coefficients explicitly to use them.
    """
    return intercept_g_cm3 + slope * np.asarray(rho_qct_g_cm3, dtype=float)


def ash_to_apparent_g_cm3(rho_ash_g_cm3):
    return np.asarray(rho_ash_g_cm3, dtype=float) / ASH_TO_APPARENT_RATIO


def apparent_to_ash_g_cm3(rho_app_g_cm3):
    return np.asarray(rho_app_g_cm3, dtype=float) * ASH_TO_APPARENT_RATIO


def qct_to_apparent_g_cm3(rho_qct_g_cm3, slope: float = 1.0, intercept_g_cm3: float = 0.0):
    return ash_to_apparent_g_cm3(qct_to_ash_g_cm3(rho_qct_g_cm3, slope, intercept_g_cm3))


def apparent_to_qct_g_cm3(rho_app_g_cm3, slope: float = 1.0, intercept_g_cm3: float = 0.0):
    return (apparent_to_ash_g_cm3(rho_app_g_cm3) - intercept_g_cm3) / slope
