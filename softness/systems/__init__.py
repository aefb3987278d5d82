"""Physical systems: species, masses, potentials and initial structures.

* BKS silica (:mod:`softness.systems.silica`), the strong liquid, in real units; the only
  system the MD drivers run today.
* The Kob-Andersen 80:20 binary Lennard-Jones liquid (:mod:`softness.systems.kob_andersen`),
  the fragile reference, in reduced LJ units: species A/B, masses, each pair truncated and
  shifted at 2.5 sigma_ab as an explicit kernel for :mod:`softness.engine`
  (``ka_pair_potential``), the same potential on ``jax_md.smap`` as the reference, boxes and
  random packings.
"""
