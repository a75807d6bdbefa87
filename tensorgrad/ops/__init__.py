"""Ops, one file per family. Each file holds its Op classes and the public functions."""
