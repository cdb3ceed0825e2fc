"""The engine version (recorded in case records, study manifests and fitted-parameter files)."""

__version__ = "0.1.0"
