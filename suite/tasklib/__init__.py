"""Shared building blocks for task plugins (the ``datasets/`` files): protocols by task family."""
