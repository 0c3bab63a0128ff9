"""Cogs are thin: parse the interaction, call a service, format the reply. Each module is a
discord.py extension (`setup(bot)`), loaded by name from `bot.discord.bot.EXTENSIONS`; cogs never
import each other (shared pieces live in the shell's own modules)."""
