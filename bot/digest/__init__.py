"""Scheduled digests: per-channel picks, LLM summaries, exactly-once posting, catch-up and status.

The service is built in `bot.app.services`; the Discord layer implements `bot.digest.delivery.DigestPoster`.
"""
