"""Procedural data for the runnable examples: generated from a seed, nothing is downloaded."""
