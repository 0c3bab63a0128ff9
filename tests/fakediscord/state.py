"""The fake Discord's world: users, guilds, roles, channels, threads, messages, commands and
interactions, kept as Discord's own JSON shapes so REST responses and gateway events are built
from one source of truth.

A state outlives a server: pass the same ``FakeDiscordState`` to a new ``FakeDiscord`` and a
restarted bot sees the earlier history.
"""

from __future__ import annotations

import base64
import copy
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .checks import effective_mentions
from .polls import poll_from_request

DISCORD_EPOCH_MS = 1_420_070_400_000


class ChannelType:
    GUILD_TEXT = 0
    DM = 1
    GUILD_CATEGORY = 4
    GUILD_ANNOUNCEMENT = 5
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12
    GUILD_FORUM = 15
    THREADS = frozenset({10, 11, 12})


class Intent:
    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    GUILD_MESSAGE_POLLS = 1 << 24
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


class MessageFlag:
    SUPPRESS_EMBEDS = 1 << 2
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7
    SUPPRESS_NOTIFICATIONS = 1 << 12


PERMISSIONS: dict[str, int] = {
    "create_instant_invite": 1 << 0,
    "kick_members": 1 << 1,
    "ban_members": 1 << 2,
    "administrator": 1 << 3,
    "manage_channels": 1 << 4,
    "manage_guild": 1 << 5,
    "add_reactions": 1 << 6,
    "view_audit_log": 1 << 7,
    "view_channel": 1 << 10,
    "send_messages": 1 << 11,
    "send_tts_messages": 1 << 12,
    "manage_messages": 1 << 13,
    "embed_links": 1 << 14,
    "attach_files": 1 << 15,
    "read_message_history": 1 << 16,
    "mention_everyone": 1 << 17,
    "use_external_emojis": 1 << 18,
    "change_nickname": 1 << 26,
    "manage_nicknames": 1 << 27,
    "manage_roles": 1 << 28,
    "manage_webhooks": 1 << 29,
    "use_application_commands": 1 << 31,
    "manage_threads": 1 << 34,
    "create_public_threads": 1 << 35,
    "create_private_threads": 1 << 36,
    "send_messages_in_threads": 1 << 38,
    "moderate_members": 1 << 40,
}
ALL_PERMISSIONS = (1 << 51) - 1


def permission_bits(*names: str) -> int:
    bits = 0
    for name in names:
        try:
            bits |= PERMISSIONS[name]
        except KeyError:
            raise ValueError(f"unknown permission {name!r}; known: {sorted(PERMISSIONS)}") from None
    return bits


EVERYONE_PERMISSIONS = permission_bits(
    "create_instant_invite", "add_reactions", "view_channel", "send_messages", "embed_links",
    "attach_files", "read_message_history", "use_external_emojis", "change_nickname",
    "use_application_commands", "create_public_threads", "send_messages_in_threads",
)  # fmt: skip
BOT_PERMISSIONS = EVERYONE_PERMISSIONS | permission_bits(
    "manage_messages", "manage_threads", "create_private_threads"
)
MODERATOR_PERMISSIONS = EVERYONE_PERMISSIONS | permission_bits(
    "manage_messages", "manage_threads", "kick_members", "moderate_members", "manage_guild"
)


DM_PERMISSIONS = permission_bits(
    "view_channel", "send_messages", "read_message_history", "add_reactions", "embed_links", "attach_files"
)


def iso(timestamp: float | None = None) -> str:
    """Discord's timestamp format: ``2026-07-18T09:30:00.123000+00:00``."""
    when = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, UTC)
    return when.isoformat(timespec="microseconds")


def snowflake_time(snowflake: int) -> float:
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


class Snowflakes:
    """Monotonic, time-based ids shaped like Discord's (timestamp | worker | process | increment)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        millis = int(time.time() * 1000) - DISCORD_EPOCH_MS
        candidate = (millis << 22) | (1 << 17) | (1 << 12)
        self._last = max(candidate, self._last + 1)
        return self._last


def _drop_none(value: Any) -> Any:
    """Discord's response objects leave out unset fields instead of sending null."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    joined_at: str
    roles: dict[int, dict[str, Any]] = field(default_factory=dict)
    members: dict[int, dict[str, Any]] = field(default_factory=dict)  # user id -> member without "user"
    features: list[str] = field(default_factory=list)
    locale: str = "en-US"


@dataclass
class Interaction:
    """One interaction the fake dispatched and everything the bot did with it."""

    id: int
    token: str
    type: int  # 2 command, 3 component, 4 autocomplete, 5 modal submit
    payload: dict[str, Any]  # the INTERACTION_CREATE "d"
    channel_id: int
    guild_id: int | None
    user_id: int
    dispatched_at: float  # fake clock
    message_id: int | None = None  # message carrying the component (type 3)
    triggered_by: int | None = None  # the interaction that opened this modal (type 5)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    responded_at: float | None = None
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    choices: list[dict[str, Any]] | None = None  # autocomplete result
    modal: dict[str, Any] | None = None  # modal the bot opened

    @property
    def response_type(self) -> int | None:
        return self.callbacks[0].get("type") if self.callbacks else None

    @property
    def name(self) -> str | None:
        return (self.payload.get("data") or {}).get("name")


class FakeDiscordState:
    """Everything the fake Discord knows. Ids are ints here and strings on the wire."""

    def __init__(self, *, default_world: bool = True, bot_name: str = "paperbot") -> None:
        self.bot_name = bot_name  # the bot user's, its managed role's and the application's name
        self.snowflakes = Snowflakes()
        self.application_id = self.snowflakes.next()
        self.bot_user_id = self.application_id  # Discord gives a bot user the application's id
        self.users: dict[int, dict[str, Any]] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.messages: dict[int, dict[int, dict[str, Any]]] = {}  # channel -> id -> message
        self.message_channel: dict[int, int] = {}
        self.files: dict[int, bytes] = {}  # attachment id -> bytes (served under /cdn)
        self.reactions: dict[tuple[int, str], list[int]] = {}  # (message, emoji) -> user ids
        self.global_commands: dict[int, dict[str, Any]] = {}
        self.guild_commands: dict[int, dict[int, dict[str, Any]]] = {}
        self.interactions: dict[int, Interaction] = {}
        self.closed_dms: set[int] = set()  # users who accept no DMs from the bot (→ 403 50007)
        self.poll_votes: dict[int, dict[int, list[int]]] = {}  # poll message → answer id → voters
        self.privileged_intents = Intent.PRIVILEGED  # as toggled in the developer portal
        self.cdn_base = "https://cdn.discordapp.com"
        self.users[self.bot_user_id] = self._user_payload(self.bot_user_id, bot_name, bot=True)
        self.token = self._make_token()
        self.owner_id = self.add_user("alice", global_name="Alice")
        self.default_guild_id: int | None = None
        if default_world:
            self._build_default_world()

    def _make_token(self) -> str:
        user = base64.b64encode(str(self.bot_user_id).encode()).decode().rstrip("=")
        return f"{user}.{secrets.token_urlsafe(4)}.{secrets.token_urlsafe(28)}"

    def _build_default_world(self) -> None:
        """A small research server: two people, a moderator role and three text channels."""
        guild_id = self.add_guild("Paper Lab", owner_id=self.owner_id)
        self.default_guild_id = guild_id
        moderators = self.add_role(guild_id, "Moderators", permissions=MODERATOR_PERMISSIONS, hoist=True)
        self.add_role(guild_id, "Readers", mentionable=True)
        bob = self.add_user("bob", global_name="Bob")
        self.add_member(guild_id, self.owner_id, roles=[moderators])
        self.add_member(guild_id, bob)
        category = self.add_channel(guild_id, "Text Channels", type=ChannelType.GUILD_CATEGORY)
        self.add_channel(guild_id, "general", parent_id=category, topic="Anything goes")
        self.add_channel(guild_id, "papers", parent_id=category, topic="Daily digests and discussion")
        self.add_channel(guild_id, "bot-admin", parent_id=category)

    # -- building the world ---------------------------------------------------------------------

    def _user_payload(
        self, user_id: int, username: str, *, bot: bool = False, global_name: str | None = None
    ):
        return {
            "id": str(user_id),
            "username": username,
            "global_name": None if bot else (global_name or username),
            "discriminator": "0",
            "avatar": None,
            "avatar_decoration_data": None,
            "banner": None,
            "accent_color": None,
            "public_flags": 0,
            "flags": 0,
            "primary_guild": None,
            "collectibles": None,
            **({"bot": True} if bot else {}),
        }

    def add_user(self, username: str, *, bot: bool = False, global_name: str | None = None) -> int:
        user_id = self.snowflakes.next()
        self.users[user_id] = self._user_payload(user_id, username, bot=bot, global_name=global_name)
        return user_id

    def add_guild(self, name: str, *, owner_id: int | None = None) -> int:
        guild_id = self.snowflakes.next()
        guild = Guild(guild_id, name, owner_id or self.owner_id, joined_at=iso())
        self.guilds[guild_id] = guild
        guild.roles[guild_id] = self._role_payload(guild_id, "@everyone", EVERYONE_PERMISSIONS, position=0)
        bot_role = self.add_role(guild_id, self.bot_name, permissions=BOT_PERMISSIONS)
        guild.roles[bot_role].update(managed=True, tags={"bot_id": str(self.bot_user_id)})
        self.add_member(guild_id, self.bot_user_id, roles=[bot_role])
        self.add_member(guild_id, guild.owner_id)
        return guild_id

    def _role_payload(self, role_id: int, name: str, permissions: int, *, position: int) -> dict[str, Any]:
        return {
            "id": str(role_id),
            "name": name,
            "permissions": str(permissions),
            "position": position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }

    def add_role(
        self,
        guild_id: int,
        name: str,
        *,
        permissions: int = 0,
        mentionable: bool = False,
        hoist: bool = False,
    ) -> int:
        guild = self.guilds[guild_id]
        role_id = self.snowflakes.next()
        role = self._role_payload(role_id, name, permissions, position=len(guild.roles))
        role.update(mentionable=mentionable, hoist=hoist)
        guild.roles[role_id] = role
        return role_id

    def add_member(self, guild_id: int, user_id: int, *, roles: Iterable[int] = (), nick: str | None = None):
        guild = self.guilds[guild_id]
        member = guild.members.setdefault(
            user_id,
            {
                "nick": None,
                "avatar": None,
                "banner": None,
                "roles": [],
                "joined_at": iso(),
                "premium_since": None,
                "deaf": False,
                "mute": False,
                "flags": 0,
                "pending": False,
                "communication_disabled_until": None,
            },
        )
        member["roles"] = list(dict.fromkeys([*member["roles"], *(str(r) for r in roles)]))
        if nick is not None:
            member["nick"] = nick

    def add_channel(
        self,
        guild_id: int,
        name: str,
        *,
        type: int = ChannelType.GUILD_TEXT,
        parent_id: int | None = None,
        topic: str | None = None,
    ) -> int:
        channel_id = self.snowflakes.next()
        position = sum(1 for c in self.channels.values() if c.get("guild_id") == str(guild_id))
        channel: dict[str, Any] = {
            "id": str(channel_id),
            "type": type,
            "guild_id": str(guild_id),
            "name": name,
            "position": position,
            "permission_overwrites": [],
            "flags": 0,
            "parent_id": None if parent_id is None else str(parent_id),
        }
        if type != ChannelType.GUILD_CATEGORY:
            channel.update(
                topic=topic,
                nsfw=False,
                last_message_id=None,
                rate_limit_per_user=0,
                default_auto_archive_duration=1440,
                last_pin_timestamp=None,
            )
        if type == ChannelType.GUILD_FORUM:
            channel.update(available_tags=[], default_reaction_emoji=None, default_sort_order=None)
        self.channels[channel_id] = channel
        self.messages[channel_id] = {}
        return channel_id

    def add_thread(
        self,
        parent_id: int,
        name: str,
        *,
        owner_id: int | None = None,
        thread_id: int | None = None,
        type: int = ChannelType.PUBLIC_THREAD,
        auto_archive_duration: int = 1440,
        invitable: bool | None = None,
    ) -> int:
        parent = self.channels[parent_id]
        thread_id = thread_id or self.snowflakes.next()
        now = iso()
        metadata: dict[str, Any] = {
            "archived": False,
            "auto_archive_duration": auto_archive_duration,
            "archive_timestamp": now,
            "locked": False,
            "create_timestamp": now,
        }
        if type == ChannelType.PRIVATE_THREAD:
            metadata["invitable"] = True if invitable is None else invitable
        self.channels[thread_id] = {
            "id": str(thread_id),
            "type": type,
            "guild_id": parent["guild_id"],
            "parent_id": str(parent_id),
            "owner_id": str(owner_id or self.bot_user_id),
            "name": name,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "rate_limit_per_user": 0,
            "flags": 0,
            "thread_metadata": metadata,
            "applied_tags": [],
        }
        self.messages[thread_id] = {}
        return thread_id

    def add_dm_channel(self, user_id: int) -> int:
        for channel_id, channel in self.channels.items():
            if channel["type"] == ChannelType.DM and channel["recipients"][0]["id"] == str(user_id):
                return channel_id
        channel_id = self.snowflakes.next()
        self.channels[channel_id] = {
            "id": str(channel_id),
            "type": ChannelType.DM,
            "last_message_id": None,
            "flags": 0,
            "recipients": [self.user(user_id)],
        }
        self.messages[channel_id] = {}
        return channel_id

    def set_overwrite(
        self, channel_id: int, target_id: int, *, allow: int = 0, deny: int = 0, member: bool = False
    ) -> None:
        """Channel permission overwrite (role or member), e.g. to take send_messages from the bot."""
        channel = self.channels[channel_id]
        overwrites = [o for o in channel["permission_overwrites"] if o["id"] != str(target_id)]
        overwrites.append(
            {"id": str(target_id), "type": 1 if member else 0, "allow": str(allow), "deny": str(deny)}
        )
        channel["permission_overwrites"] = overwrites

    def close_dms(self, user_id: int, closed: bool = True) -> None:
        """The user turns off direct messages from server members (or blocks the bot): opening the
        DM channel still works, sending in it is 403 50007, as on Discord."""
        (self.closed_dms.add if closed else self.closed_dms.discard)(user_id)

    def dm_recipient(self, channel_id: int) -> int | None:
        channel = self.channels.get(channel_id) or {}
        if channel.get("type") != ChannelType.DM:
            return None
        return int(channel["recipients"][0]["id"])

    def deny_bot(self, channel_id: int, *permissions: str) -> None:
        """Take permissions (names as in discord.Permissions) from the bot in one channel."""
        self.set_overwrite(channel_id, self.bot_user_id, deny=permission_bits(*permissions), member=True)

    # -- lookups -----------------------------------------------------------------------------

    @property
    def default_guild(self) -> Guild:
        if self.default_guild_id is None:
            raise LookupError("this state was built without the default guild")
        return self.guilds[self.default_guild_id]

    def user_id(self, username: str) -> int:
        for user_id, user in self.users.items():
            if user["username"] == username:
                return user_id
        raise LookupError(
            f"no user named {username!r}; known: {[u['username'] for u in self.users.values()]}"
        )

    def channel_id(self, name: str, *, guild_id: int | None = None) -> int:
        guild_id = guild_id or self.default_guild_id
        for channel_id, channel in self.channels.items():
            if channel.get("name") == name and channel.get("guild_id") == str(guild_id):
                return channel_id
        raise LookupError(f"no channel named {name!r} in guild {guild_id}")

    def role_id(self, name: str, *, guild_id: int | None = None) -> int:
        guild = self.guilds[guild_id or self.default_guild.id]
        for role_id, role in guild.roles.items():
            if role["name"] == name:
                return role_id
        raise LookupError(f"no role named {name!r}")

    def user(self, user_id: int) -> dict[str, Any]:
        return copy.deepcopy(self.users[user_id])

    def user_pii(self, user_id: int) -> dict[str, Any]:
        """The /users/@me shape of a user."""
        return {**self.user(user_id), "mfa_enabled": True, "locale": "en-US", "verified": True, "email": None}

    def channel(self, channel_id: int) -> dict[str, Any]:
        return copy.deepcopy(self.channels[channel_id])

    def guild_of(self, channel_id: int) -> int | None:
        guild_id = self.channels[channel_id].get("guild_id")
        return None if guild_id is None else int(guild_id)

    def is_thread(self, channel_id: int) -> bool:
        return self.channels[channel_id]["type"] in ChannelType.THREADS

    def member(self, guild_id: int, user_id: int, *, with_user: bool = True) -> dict[str, Any]:
        member = copy.deepcopy(self.guilds[guild_id].members[user_id])
        if with_user:
            member["user"] = self.user(user_id)
        return member

    def roles(self, guild_id: int) -> list[dict[str, Any]]:
        return [copy.deepcopy(r) for r in self.guilds[guild_id].roles.values()]

    def guild_channels(self, guild_id: int, *, threads: bool = False) -> list[dict[str, Any]]:
        return [
            self.channel(cid)
            for cid, c in self.channels.items()
            if c.get("guild_id") == str(guild_id) and (c["type"] in ChannelType.THREADS) == threads
        ]

    def permissions(self, user_id: int, channel_id: int | None = None, *, guild_id: int | None = None) -> int:
        """Discord's permission computation: base role permissions, then channel overwrites."""
        if channel_id is not None:
            guild_id = self.guild_of(channel_id)
            if guild_id is None:  # a DM
                return DM_PERMISSIONS
        assert guild_id is not None
        guild = self.guilds[guild_id]
        if user_id == guild.owner_id:
            return ALL_PERMISSIONS
        member_roles = [int(r) for r in guild.members[user_id]["roles"]]
        bits = int(guild.roles[guild_id]["permissions"])
        for role_id in member_roles:
            bits |= int(guild.roles[role_id]["permissions"])
        if bits & PERMISSIONS["administrator"] or channel_id is None:
            return ALL_PERMISSIONS if bits & PERMISSIONS["administrator"] else bits
        channel = self.channels[channel_id]
        if channel["type"] in ChannelType.THREADS:
            channel = self.channels[int(channel["parent_id"])]
        overwrites = {int(o["id"]): o for o in channel.get("permission_overwrites", [])}

        def apply(bits: int, allow: int, deny: int) -> int:
            return (bits & ~deny) | allow

        if guild_id in overwrites:
            o = overwrites[guild_id]
            bits = apply(bits, int(o["allow"]), int(o["deny"]))
        allow = deny = 0
        for role_id in member_roles:
            if role_id in overwrites:
                allow |= int(overwrites[role_id]["allow"])
                deny |= int(overwrites[role_id]["deny"])
        bits = apply(bits, allow, deny)
        if user_id in overwrites:
            o = overwrites[user_id]
            bits = apply(bits, int(o["allow"]), int(o["deny"]))
        return bits

    def has_permissions(self, user_id: int, channel_id: int, *names: str) -> bool:
        needed = permission_bits(*names)
        return self.permissions(user_id, channel_id) & needed == needed

    # -- guild payloads -------------------------------------------------------------------------

    def _guild_base(self, guild: Guild) -> dict[str, Any]:
        text_channels = [
            cid for cid, c in self.channels.items()
            if c.get("guild_id") == str(guild.id) and c["type"] == ChannelType.GUILD_TEXT
        ]  # fmt: skip
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "description": None,
            "home_header": None,
            "splash": None,
            "discovery_splash": None,
            "features": list(guild.features),
            "banner": None,
            "owner_id": str(guild.owner_id),
            "application_id": None,
            "region": "deprecated",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "system_channel_id": str(text_channels[0]) if text_channels else None,
            "system_channel_flags": 0,
            "widget_enabled": False,
            "widget_channel_id": None,
            "verification_level": 1,
            "roles": self.roles(guild.id),
            "default_message_notifications": 1,
            "mfa_level": 0,
            "explicit_content_filter": 2,
            "max_presences": None,
            "max_members": 500000,
            "max_stage_video_channel_users": 50,
            "max_video_channel_users": 25,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": guild.locale,
            "rules_channel_id": None,
            "safety_alerts_channel_id": None,
            "public_updates_channel_id": None,
            "premium_progress_bar_enabled": False,
            "nsfw": False,
            "nsfw_level": 0,
            "emojis": [],
            "stickers": [],
            "incidents_data": None,
        }

    def guild_payload(self, guild_id: int) -> dict[str, Any]:
        """GET /guilds/{id} (with_counts shape)."""
        guild = self.guilds[guild_id]
        return {
            **self._guild_base(guild),
            "approximate_member_count": len(guild.members),
            "approximate_presence_count": 0,
        }

    def guild_create_payload(self, guild_id: int, *, all_members: bool, large_threshold: int = 250):
        """GUILD_CREATE as sent after READY. Without the presences intent Discord only includes
        the bot's own member, so a bot with the members intent has to chunk (as in production)."""
        guild = self.guilds[guild_id]
        member_ids = list(guild.members) if all_members else [self.bot_user_id]
        bot_id = str(self.bot_user_id)
        threads = [
            {**t, "member": {"id": t["id"], "user_id": bot_id, "join_timestamp": iso(), "flags": 1}}
            for t in self.guild_channels(guild_id, threads=True)
            if not t["thread_metadata"]["archived"]
        ]
        return {
            **self._guild_base(guild),
            "joined_at": guild.joined_at,
            "large": len(guild.members) > large_threshold,
            "unavailable": False,
            "member_count": len(guild.members),
            "members": [self.member(guild_id, uid) for uid in member_ids],
            "channels": [
                {k: v for k, v in c.items() if k != "guild_id"} for c in self.guild_channels(guild_id)
            ],
            "threads": threads,
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "lazy": True,
            "application_command_counts": {},
        }

    # -- application --------------------------------------------------------------------------

    def application_payload(self) -> dict[str, Any]:
        flags = 0
        if self.privileged_intents & Intent.GUILD_PRESENCES:
            flags |= 1 << 13  # GATEWAY_PRESENCE_LIMITED
        if self.privileged_intents & Intent.GUILD_MEMBERS:
            flags |= 1 << 15  # GATEWAY_GUILD_MEMBERS_LIMITED
        if self.privileged_intents & Intent.MESSAGE_CONTENT:
            flags |= 1 << 19  # GATEWAY_MESSAGE_CONTENT_LIMITED
        flags |= 1 << 23  # APPLICATION_COMMAND_BADGE
        return {
            "id": str(self.application_id),
            "name": self.bot_name,
            "icon": None,
            "description": "A bot under test.",
            "summary": "",
            "type": None,
            "bot": self.user(self.bot_user_id),
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": flags,
            "flags_new": str(flags),
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "owner": self.user(self.owner_id),
            "approximate_guild_count": len(self.guilds),
            "approximate_user_install_count": 0,
            "approximate_user_authorization_count": 0,
            "explicit_content_filter": 0,
            "team": None,
            "eligible_oauth2_scopes": ["applications.commands", "bot"],
            "integration_types_config": {"0": {}},
            "tags": [],
        }

    # -- application commands -----------------------------------------------------------------

    def commands(self, guild_id: int | None = None) -> dict[int, dict[str, Any]]:
        if guild_id is None:
            return self.global_commands
        return self.guild_commands.setdefault(guild_id, {})

    def overwrite_commands(self, guild_id: int | None, commands: Sequence[Mapping[str, Any]]) -> list[dict]:
        """Bulk overwrite. Like Discord, a command keeps its id when its name and type survive."""
        existing = {(c["name"], c["type"]): c for c in self.commands(guild_id).values()}
        replaced: dict[int, dict[str, Any]] = {}
        for command in commands:
            command_type = command.get("type") or 1
            old = existing.get((command["name"], command_type))
            command_id = int(old["id"]) if old else self.snowflakes.next()
            payload = self._command_payload(command_id, command, guild_id)
            if old is not None and {**old, "version": payload["version"]} == payload:
                payload["version"] = old["version"]
            replaced[command_id] = payload
        store = self.commands(guild_id)
        store.clear()
        store.update(replaced)
        return [copy.deepcopy(c) for c in replaced.values()]

    def _command_payload(self, command_id: int, command: Mapping[str, Any], guild_id: int | None):
        command_type = command.get("type") or 1
        permissions = command.get("default_member_permissions")
        payload = {
            "id": str(command_id),
            "application_id": str(self.application_id),
            "version": str(self.snowflakes.next()),
            "default_member_permissions": None if permissions is None else str(permissions),
            "type": command_type,
            "name": command["name"],
            "name_localizations": command.get("name_localizations"),
            "description": command.get("description") or "",
            "description_localizations": command.get("description_localizations"),
            "dm_permission": command.get("dm_permission", True),
            "contexts": command.get("contexts"),
            "integration_types": command.get("integration_types") or [0],
            "nsfw": bool(command.get("nsfw", False)),
            "options": _drop_none(copy.deepcopy(list(command.get("options") or []))),
        }
        if guild_id is not None:
            payload["guild_id"] = str(guild_id)
        if not payload["options"]:
            del payload["options"]
        return {k: v for k, v in payload.items() if v is not None or k == "default_member_permissions"}

    def find_command(self, name: str, guild_id: int | None, command_type: int = 1) -> dict[str, Any] | None:
        """The registered command an interaction would target (guild commands first)."""
        scopes = [self.guild_commands.get(guild_id, {})] if guild_id is not None else []
        for scope in [*scopes, self.global_commands]:
            for command in scope.values():
                if command["name"] == name and command["type"] == command_type:
                    return command
        return None

    # -- messages ---------------------------------------------------------------------------

    def message(self, message_id: int) -> dict[str, Any]:
        return self.messages[self.message_channel[message_id]][message_id]

    def has_message(self, message_id: int) -> bool:
        return message_id in self.message_channel

    def create_message(
        self,
        channel_id: int,
        *,
        author_id: int,
        content: str = "",
        embeds: Sequence[Mapping[str, Any]] = (),
        components: Sequence[Mapping[str, Any]] = (),
        attachments: Sequence[Mapping[str, Any]] = (),
        allowed_mentions: Mapping[str, Any] | None = None,
        mentions: Sequence[int] | None = None,
        message_reference: Mapping[str, Any] | None = None,
        flags: int = 0,
        tts: bool = False,
        type: int = 0,
        webhook_id: int | None = None,
        interaction: Interaction | None = None,
        poll: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store a message and return it (the REST ``MessageResponse`` shape)."""
        message_id = self.snowflakes.next()
        message: dict[str, Any] = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "type": type,
            "content": content or "",
            "author": self.user(author_id),
            "attachments": [dict(a) for a in attachments],
            "embeds": [normalize_embed(e) for e in embeds],
            "components": normalize_components(components),
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": tts,
            "timestamp": iso(snowflake_time(message_id)),
            "edited_timestamp": None,
            "flags": flags,
        }
        self._set_mentions(message, allowed_mentions, explicit=mentions)
        if message_reference:
            self._set_reference(message, message_reference)
        if webhook_id is not None:
            message["webhook_id"] = str(webhook_id)
            message["application_id"] = str(self.application_id)
        if interaction is not None:
            message["interaction_metadata"] = self._interaction_metadata(interaction)
            if interaction.type == 2:
                message["interaction"] = {
                    "id": str(interaction.id),
                    "type": interaction.type,
                    "name": interaction.name or "",
                    "user": self.user(interaction.user_id),
                }
        if poll:
            message["poll"] = poll_from_request(poll, snowflake_time(message_id))
            self.poll_votes[message_id] = {a["answer_id"]: [] for a in message["poll"]["answers"]}
        self.messages.setdefault(channel_id, {})[message_id] = message
        self.message_channel[message_id] = channel_id
        channel = self.channels.get(channel_id)
        if channel is not None and not flags & MessageFlag.EPHEMERAL:
            channel["last_message_id"] = str(message_id)
            if channel["type"] in ChannelType.THREADS:
                channel["message_count"] += 1
                channel["total_message_sent"] += 1
        return message

    def _interaction_metadata(self, interaction: Interaction) -> dict[str, Any]:
        owners = {"0": str(interaction.guild_id)} if interaction.guild_id else {"1": str(interaction.user_id)}
        metadata: dict[str, Any] = {
            "id": str(interaction.id),
            "type": interaction.type,
            "user": self.user(interaction.user_id),
            "authorizing_integration_owners": owners,
        }
        if interaction.original_message_id is not None:
            metadata["original_response_message_id"] = str(interaction.original_message_id)
        if interaction.type == 3 and interaction.message_id is not None:
            metadata["interacted_message_id"] = str(interaction.message_id)
        if interaction.type == 5 and interaction.triggered_by in self.interactions:
            trigger = self.interactions[interaction.triggered_by]
            metadata["triggering_interaction_metadata"] = self._interaction_metadata(trigger)
        return metadata

    def _set_mentions(
        self,
        message: dict[str, Any],
        allowed: Mapping[str, Any] | None,
        *,
        explicit: Sequence[int] | None = None,
    ) -> None:
        users, roles, everyone = effective_mentions(message["content"], allowed)
        if explicit is not None:
            users = list(explicit)
        message["mentions"] = [self.user(u) for u in users if u in self.users]
        message["mention_roles"] = [str(r) for r in roles]
        message["mention_everyone"] = everyone

    def _set_reference(self, message: dict[str, Any], reference: Mapping[str, Any]) -> None:
        ref_message_id = reference.get("message_id")
        ref_channel_id = int(reference.get("channel_id") or message["channel_id"])
        stored_reference: dict[str, Any] = {
            "type": reference.get("type", 0),
            "channel_id": str(ref_channel_id),
        }
        if ref_message_id is not None:
            stored_reference["message_id"] = str(ref_message_id)
        guild_id = self.guild_of(ref_channel_id) if ref_channel_id in self.channels else None
        if guild_id is not None:
            stored_reference["guild_id"] = str(guild_id)
        message["message_reference"] = stored_reference
        if stored_reference["type"] == 0:
            message["type"] = 19 if message["type"] == 0 else message["type"]  # REPLY
            referenced = None
            if ref_message_id is not None and self.has_message(int(ref_message_id)):
                referenced = {
                    k: v for k, v in self.message(int(ref_message_id)).items() if k != "referenced_message"
                }
            message["referenced_message"] = copy.deepcopy(referenced)

    def edit_message(
        self,
        message_id: int,
        changes: Mapping[str, Any],
        *,
        attachments: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Apply a PATCH body; fields left out keep their value, like Discord."""
        message = self.message(message_id)
        if "content" in changes:
            message["content"] = changes["content"] or ""
            self._set_mentions(message, changes.get("allowed_mentions"))
        if "embeds" in changes:
            message["embeds"] = [normalize_embed(e) for e in changes["embeds"] or []]
        if "components" in changes:
            message["components"] = normalize_components(changes["components"] or [])
        if attachments is not None:
            message["attachments"] = [dict(a) for a in attachments]
        if "flags" in changes and changes["flags"] is not None:
            # Only SUPPRESS_EMBEDS can be toggled by an edit; EPHEMERAL stays as it was.
            keep = message["flags"] & ~MessageFlag.SUPPRESS_EMBEDS
            message["flags"] = keep | (int(changes["flags"]) & MessageFlag.SUPPRESS_EMBEDS)
        message["flags"] &= ~MessageFlag.LOADING
        message["edited_timestamp"] = iso()
        return message

    def delete_message(self, message_id: int) -> dict[str, Any]:
        channel_id = self.message_channel.pop(message_id)
        return self.messages[channel_id].pop(message_id)

    def history(self, channel_id: int) -> list[dict[str, Any]]:
        """Messages everyone can see, oldest first (ephemeral responses are not history)."""
        return [
            m for m in self.messages.get(channel_id, {}).values() if not m["flags"] & MessageFlag.EPHEMERAL
        ]

    def add_reaction(self, message_id: int, emoji: Mapping[str, Any], user_id: int) -> bool:
        """Returns False when the user had already reacted with that emoji."""
        key = emoji_key(emoji)
        users = self.reactions.setdefault((message_id, key), [])
        if user_id in users:
            return False
        users.append(user_id)
        message = self.message(message_id)
        reactions = message.setdefault("reactions", [])
        entry = next((r for r in reactions if emoji_key(r["emoji"]) == key), None)
        if entry is None:
            entry = {
                "emoji": {"id": emoji.get("id"), "name": emoji.get("name")},
                "count": 0,
                "count_details": {"burst": 0, "normal": 0},
                "burst_colors": [],
                "me_burst": False,
                "me": False,
            }
            reactions.append(entry)
        entry["count"] += 1
        entry["count_details"]["normal"] += 1
        entry["me"] = entry["me"] or user_id == self.bot_user_id
        return True

    def remove_reaction(self, message_id: int, emoji: Mapping[str, Any], user_id: int) -> bool:
        key = emoji_key(emoji)
        users = self.reactions.get((message_id, key), [])
        if user_id not in users:
            return False
        users.remove(user_id)
        message = self.message(message_id)
        for entry in list(message.get("reactions", [])):
            if emoji_key(entry["emoji"]) == key:
                entry["count"] -= 1
                entry["count_details"]["normal"] -= 1
                if user_id == self.bot_user_id:
                    entry["me"] = False
                if entry["count"] == 0:
                    message["reactions"].remove(entry)
        return True

    # -- interactions ------------------------------------------------------------------------

    def interaction_by_token(self, token: str) -> Interaction | None:
        return next((i for i in self.interactions.values() if i.token == token), None)


def emoji_key(emoji: Mapping[str, Any]) -> str:
    """``name`` for a unicode emoji, ``name:id`` for a custom one (the URL form Discord uses)."""
    return f"{emoji.get('name')}:{emoji['id']}" if emoji.get("id") else str(emoji.get("name"))


def parse_emoji(text: str) -> dict[str, Any]:
    """The ``{emoji}`` path segment (already URL-decoded): ``👍`` or ``name:id``."""
    name, _, emoji_id = text.partition(":")
    return {"id": emoji_id or None, "name": name}


def normalize_embed(embed: Mapping[str, Any]) -> dict[str, Any]:
    out = _drop_none(copy.deepcopy(dict(embed)))
    out.setdefault("type", "rich")
    return out


def normalize_components(components: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Discord numbers every component of a message; request payloads may leave ids out."""
    counter = iter(range(1, 10_000))
    used: set[int] = set()

    def visit(component: Mapping[str, Any]) -> dict[str, Any]:
        out = _drop_none(copy.deepcopy(dict(component)))
        if "id" not in out:
            out["id"] = next(i for i in counter if i not in used)
        used.add(out["id"])
        for key in ("components",):
            if key in out:
                out[key] = [visit(c) for c in out[key]]
        if "accessory" in out:
            out["accessory"] = visit(out["accessory"])
        return out

    return [visit(c) for c in components]
