"""Benchmarks of mwm: `mwm-bench ratios` (text-guided vs random masking ratios) and friends."""
