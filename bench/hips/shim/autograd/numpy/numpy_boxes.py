from engine.core.trace import Box as ArrayBox  # noqa: F401
