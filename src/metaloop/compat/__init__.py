"""Compatibility layers for optimizees written for other frameworks (:mod:`.l2l`: L2L)."""
