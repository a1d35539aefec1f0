"""Reference runners for benchmarks/quality.py, one module per optimizer family.

Each module defines ``ENTRIES: list[Entry]``: our optimizer (kind + params) and, where a
reference implementation exists, a function running it on the same problem and budget.
"""
