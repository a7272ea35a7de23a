"""Student training: a multi-dimension regression head on a small encoder (LoRA optional)."""
