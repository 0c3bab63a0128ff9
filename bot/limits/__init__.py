"""Usage limits shared by every front end: per-guild LLM token budgets and request rate limits."""
