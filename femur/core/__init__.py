"""Foundations shared by every stage: MPI bootstrap, errors, units and time constants,
sex normalisation, logging, fitted-parameter data files, progress bars.

Nothing here imports any other part of femur (and nothing here imports DOLFINx).
"""
