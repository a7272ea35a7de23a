"""Test and demo support, apart from production code: the fake provider, loopback vendor APIs,
injected-template corpora and the demo-corpus writer. Importable by `dvc repro` subprocesses."""
