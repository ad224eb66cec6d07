"""Measurements of BASE against NNI's one-shot searches and against known answers.

Each module is one benchmark, run from the repository root as ``python -m benchmarks.<module>``; what they
share is in :mod:`benchmarks.common`. ``benchmarks/README.md`` lists them with their commands and result files.
"""
