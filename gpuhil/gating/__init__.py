"""Gating: what a machine can do (capabilities), the ``requires`` expressions over it, and the
known bugs per platform (expectations)."""
