"""Channel memory: the conversations the bot takes part in, remembered per channel after an opt-in."""

from bot.memory.service import (
    ChannelMessage,
    MemoryNotEnabledError,
    MemoryService,
    MemoryStatus,
)

__all__ = ["ChannelMessage", "MemoryNotEnabledError", "MemoryService", "MemoryStatus"]
