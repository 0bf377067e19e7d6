"""Who may call, and how often: API keys and their store (``keys``), the gate every request passes
(``gate``), the rate limit (``ratelimit``) and where an open service may listen (``bind``)."""
