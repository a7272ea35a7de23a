"""LLM providers behind one interface. See base.Provider; pick one by name with get_provider()."""
from distillery.providers.base import Completion, Provider, ProviderError, get_provider

__all__ = ["Completion", "Provider", "ProviderError", "get_provider"]
