"""Exports: objects that own a file name and format and write what a run or study hands
them -- density series (VTX), strength fields (XDMF), per-case fields (VTU), time courses
(JSON + PNG), tables (CSV, Parquet if pyarrow is present), plots and pictures (matplotlib,
pyvista: imported only when drawing). Exports read results; they never run a simulation.
"""
