"""The pipeline as a whole: each stage's import closure (dvc.yaml deps) and `make plan`."""
