"""Readers of a store: export rows, the fitness plot, the terminal progress display."""
