"""Discord's permission computation for one member in one channel, from REST payloads.

Follows Discord's documented algorithm: the owner has everything; base = @everyone role | member's
roles; ADMINISTRATOR grants everything; then the channel's overwrites in order @everyone, roles
(denies and allows of all the member's roles together), member; finally the implicit rules (no
VIEW_CHANNEL → nothing; no SEND_MESSAGES → no embeds, files, TTS or @everyone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ADMINISTRATOR = 1 << 3
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
SEND_TTS_MESSAGES = 1 << 12
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 53) - 1

# What paperbot needs in a channel it posts digests to or answers in, with the names Discord's UI uses.
REQUIRED: dict[int, str] = {
    VIEW_CHANNEL: "View Channel",
    SEND_MESSAGES: "Send Messages",
    EMBED_LINKS: "Embed Links",
    READ_MESSAGE_HISTORY: "Read Message History",
    CREATE_PUBLIC_THREADS: "Create Public Threads",
    SEND_MESSAGES_IN_THREADS: "Send Messages in Threads",
}

_NEEDS_SEND = SEND_TTS_MESSAGES | EMBED_LINKS | ATTACH_FILES | MENTION_EVERYONE


def _bits(value: Any) -> int:
    return int(value or 0)


def base_permissions(
    *,
    guild_id: int,
    owner_id: int | None,
    member_id: int,
    member_roles: Sequence[int],
    roles: Sequence[Mapping],
) -> int:
    if owner_id is not None and member_id == owner_id:
        return ALL_PERMISSIONS
    by_id = {int(role["id"]): _bits(role.get("permissions")) for role in roles}
    bits = by_id.get(guild_id, 0)  # @everyone's role id is the guild id
    for role_id in member_roles:
        bits |= by_id.get(int(role_id), 0)
    return ALL_PERMISSIONS if bits & ADMINISTRATOR else bits


def apply_overwrites(
    base: int, *, guild_id: int, member_id: int, member_roles: Sequence[int], overwrites: Sequence[Mapping]
) -> int:
    if base & ADMINISTRATOR or base == ALL_PERMISSIONS:
        return ALL_PERMISSIONS
    by_id = {int(o["id"]): o for o in overwrites}
    bits = base
    everyone = by_id.get(guild_id)
    if everyone is not None:
        bits = (bits & ~_bits(everyone.get("deny"))) | _bits(everyone.get("allow"))
    allow = deny = 0
    for role_id in member_roles:
        overwrite = by_id.get(int(role_id))
        if overwrite is not None and int(overwrite.get("type", 0)) == 0:
            allow |= _bits(overwrite.get("allow"))
            deny |= _bits(overwrite.get("deny"))
    bits = (bits & ~deny) | allow
    member = by_id.get(member_id)
    if member is not None and int(member.get("type", 1)) == 1:
        bits = (bits & ~_bits(member.get("deny"))) | _bits(member.get("allow"))
    if not bits & VIEW_CHANNEL:
        return 0
    if not bits & SEND_MESSAGES:
        bits &= ~_NEEDS_SEND
    return bits


@dataclass(frozen=True)
class ChannelPermissions:
    base: int  # from roles alone
    effective: int  # in the channel

    def missing(self, required: Mapping[int, str] = REQUIRED) -> list[str]:
        return [name for bit, name in required.items() if not self.effective & bit]

    def denied_by_overwrite(self, required: Mapping[int, str] = REQUIRED) -> list[str]:
        """Missing in the channel although the bot's roles grant them: a channel overwrite takes them."""
        return [name for bit, name in required.items() if self.base & bit and not self.effective & bit]


def channel_permissions(
    *,
    guild_id: int,
    owner_id: int | None,
    member_id: int,
    member_roles: Sequence[int],
    roles: Sequence[Mapping],
    overwrites: Sequence[Mapping],
) -> ChannelPermissions:
    base = base_permissions(
        guild_id=guild_id, owner_id=owner_id, member_id=member_id, member_roles=member_roles, roles=roles
    )
    effective = apply_overwrites(
        base, guild_id=guild_id, member_id=member_id, member_roles=member_roles, overwrites=overwrites
    )
    return ChannelPermissions(base=base, effective=effective)
