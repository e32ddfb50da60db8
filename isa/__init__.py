"""Sieve's dataflow ISA: the contract between the compiler and the simulator.

Tokens and streams (`isa.tokens`), fibertrees and memory images (`isa.fibertree`),
instructions and port signatures (`isa.ops`), kernels and programs (`isa.program`),
the chip description targeted by the compiler (`isa.arch`), the functional
interpreter that defines every instruction (`isa.interp`), and the output of an unrolled
kernel's copies (`isa.copies`, the output address generator). Imports only numpy.
"""
