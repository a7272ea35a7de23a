"""Labeling: the oracle prompt and job, the reply contract, calibration, and the filter's scoring."""
