"""Physical systems: species, masses, potentials and initial structures.

Only BKS silica (:mod:`softness.systems.silica`) for now.
"""
