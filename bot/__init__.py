"""paperbot: a Discord bot for research communities."""

__version__ = "0.1.0"
