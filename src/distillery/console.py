"""What a stage prints: its own lines and progress, not the libraries' load reports.

Each stage script calls quiet_libraries() first, so `dvc repro` run directly is as quiet as `make demo`:
no transformers/huggingface_hub progress bars or load reports, no advisory warnings. Set
DISTILLERY_VERBOSE=1 to see all of it again (e.g. to debug a model that will not load).
"""
from __future__ import annotations

import os
import warnings


def quiet_libraries() -> None:
    if os.environ.get("DISTILLERY_VERBOSE", "") not in ("", "0"):
        return
    # Read by transformers and huggingface_hub when they are imported (later, lazily, by the library).
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


def quiet_progress_bars() -> None:
    """transformers' own bars (e.g. de-quantising a GGUF file), which no environment variable turns off."""
    if os.environ.get("DISTILLERY_VERBOSE", "") in ("", "0"):
        from transformers.utils import logging

        logging.disable_progress_bar()
