"""Experiments: the demo and the generalization benchmark, built from the stages' public functions."""
