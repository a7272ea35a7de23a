"""The call machinery: typed requests, the engine (cache, router, limiter, retries, budget, dispatch)
and the resumable job every LLM stage runs."""
from distillery.engine.engine import Engine
from distillery.engine.requests import BudgetExceeded, CallFailed, CompleteRequest, ScoreRequest

__all__ = ["BudgetExceeded", "CallFailed", "CompleteRequest", "Engine", "ScoreRequest"]
