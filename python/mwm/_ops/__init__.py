"""Fake (meta) kernels and autograd formulas of the mwm ops, one module per op family."""
