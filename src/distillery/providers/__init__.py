"""LLM providers behind one interface. See base.Provider; build one from a spec with provider_for()."""
from distillery.providers.base import Completion, Provider, ProviderError, get_provider, provider_for

__all__ = ["Completion", "Provider", "ProviderError", "get_provider", "provider_for"]
