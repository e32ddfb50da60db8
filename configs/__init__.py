"""The shipped config files (package data): ``chips/``, ``cpus/``, ``energy/`` and ``dram/``.

This package holds YAML only; :mod:`isa.configpath` finds these folders with
:mod:`importlib.resources`, so an installed wheel finds them from any directory.
"""
