"""Building INTERACTION_CREATE payloads the way Discord does, and a handle to await the bot's
response to one.

Options are checked against the command the bot registered (so a test cannot invoke an option the
bot never declared) and typed from it: ``{"limit": 5}`` becomes an INTEGER option because the
bot's ``/search`` declared ``limit`` as an integer.  User, channel and role options get their
``resolved`` entries, as Discord sends them.
"""

# Test helpers wait on the bot, so their timeouts are part of the API.
# ruff: noqa: ASYNC109

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .state import FakeDiscordState, Interaction, MessageFlag

if TYPE_CHECKING:
    from .server import FakeDiscord

T = TypeVar("T")

ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024


class OptionType:
    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


class InteractionType:
    PING = 1
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


def new_token() -> str:
    return "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(120)


def _infer_type(value: Any) -> int:
    if isinstance(value, bool):
        return OptionType.BOOLEAN
    if isinstance(value, int):
        return OptionType.INTEGER
    if isinstance(value, float):
        return OptionType.NUMBER
    return OptionType.STRING


class InteractionBuilder:
    """Turns "/digest subscribe topic:rag" style input into Discord's interaction JSON."""

    def __init__(self, state: FakeDiscordState) -> None:
        self.state = state

    def base(
        self,
        interaction_type: int,
        *,
        channel_id: int,
        user_id: int,
        locale: str,
    ) -> dict[str, Any]:
        state = self.state
        guild_id = state.guild_of(channel_id)
        payload: dict[str, Any] = {
            "id": str(state.snowflakes.next()),
            "application_id": str(state.application_id),
            "type": interaction_type,
            "token": new_token(),
            "version": 1,
            "channel_id": str(channel_id),
            "channel": self._partial_channel(channel_id, user_id),
            "locale": locale,
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
            "app_permissions": str(state.permissions(state.bot_user_id, channel_id)),
        }
        if guild_id is not None:
            guild = state.guilds[guild_id]
            if user_id not in guild.members:
                raise LookupError(f"user {user_id} is not a member of guild {guild_id}")
            member = state.member(guild_id, user_id)
            member["permissions"] = str(state.permissions(user_id, channel_id))
            payload.update(
                guild_id=str(guild_id),
                guild={"id": str(guild_id), "locale": guild.locale, "features": list(guild.features)},
                guild_locale=guild.locale,
                member=member,
                authorizing_integration_owners={"0": str(guild_id)},
                context=0,
            )
        else:
            payload.update(
                user=state.user(user_id),
                authorizing_integration_owners={"0": str(user_id)},
                context=1,
            )
        return payload

    def _partial_channel(self, channel_id: int, user_id: int) -> dict[str, Any]:
        channel = self.state.channel(channel_id)
        channel["permissions"] = str(self.state.permissions(user_id, channel_id))
        channel.pop("permission_overwrites", None)
        return channel

    # -- application commands -------------------------------------------------------------------

    def command_data(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        guild_id: int | None,
        command_type: int = 1,
        require_registered: bool = True,
        focused: str | None = None,
        target_id: int | None = None,
    ) -> dict[str, Any]:
        parts = name.strip().lstrip("/").split()
        if not parts:
            raise ValueError("empty command name")
        command = self.state.find_command(parts[0], guild_id, command_type)
        if command is None and require_registered:
            known = sorted(
                {c["name"] for c in self.state.global_commands.values()}
                | {c["name"] for g in self.state.guild_commands.values() for c in g.values()}
            )
            raise LookupError(
                f"command {parts[0]!r} (type {command_type}) is not registered with the fake Discord; "
                f"registered: {known}. Did the bot sync its command tree?"
            )
        resolved: dict[str, dict[str, Any]] = {}
        definitions = command.get("options", []) if command else None  # None: nothing to check against
        option_list = self._options(
            parts[1:], options, definitions, resolved, focused, guild_id=guild_id, where=parts[0]
        )
        data: dict[str, Any] = {
            "id": command["id"] if command else str(self.state.snowflakes.next()),
            "name": parts[0],
            "type": command_type,
        }
        if option_list:
            data["options"] = option_list
        if command and "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        if target_id is not None:
            data["target_id"] = str(target_id)
            if command_type == 2:  # user context menu
                self._resolve_user(target_id, resolved, guild_id)
            elif command_type == 3:  # message context menu
                resolved.setdefault("messages", {})[str(target_id)] = self.state.message(target_id)
        if resolved:
            data["resolved"] = resolved
        return data

    def _options(
        self,
        sub_path: Sequence[str],
        values: Mapping[str, Any],
        definitions: list[dict[str, Any]] | None,
        resolved: dict[str, dict[str, Any]],
        focused: str | None,
        *,
        guild_id: int | None,
        where: str,
    ) -> list[dict[str, Any]]:
        if sub_path:
            head = sub_path[0]
            if definitions is not None:
                match = next((o for o in definitions if o["name"] == head and o["type"] in (1, 2)), None)
                if match is None:
                    subs = [o["name"] for o in definitions if o["type"] in (1, 2)]
                    raise LookupError(f"/{where} has no subcommand {head!r}; it has {subs}")
                sub_type, sub_definitions = match["type"], match.get("options") or []
            else:
                sub_type, sub_definitions = (2 if len(sub_path) > 1 else 1), None
            inner = self._options(
                sub_path[1:],
                values,
                sub_definitions,
                resolved,
                focused,
                guild_id=guild_id,
                where=f"{where} {head}",
            )
            return [{"name": head, "type": sub_type, "options": inner}]
        by_name: dict[str, dict[str, Any]] = {}
        if definitions is not None:
            subs = [o["name"] for o in definitions if o["type"] in (1, 2)]
            if subs:
                raise ValueError(f"/{where} needs a subcommand, one of {subs}")
            by_name = {o["name"]: o for o in definitions}
            unknown = sorted(set(values) - set(by_name))
            if unknown:
                raise ValueError(f"/{where} has no option(s) {unknown}; it has {sorted(by_name)}")
            missing = [o["name"] for o in definitions if o.get("required") and o["name"] not in values]
            if missing:
                raise ValueError(f"/{where} requires option(s) {missing}")
        options = []
        for key, value in values.items():
            definition = by_name.get(key)
            option_type = definition["type"] if definition else _infer_type(value)
            is_focused = key == focused
            if definition and not is_focused:
                _check_constraints(f"/{where} {key}", definition, value)
            option: dict[str, Any] = {
                "name": key,
                "type": option_type,
                "value": self._value(option_type, value, resolved, guild_id) if not is_focused else value,
            }
            if is_focused:
                option["focused"] = True
            options.append(option)
        return options

    def _value(self, option_type: int, value: Any, resolved: dict[str, dict[str, Any]], guild_id: int | None):
        state = self.state
        if option_type == OptionType.USER or (option_type == OptionType.MENTIONABLE and value in state.users):
            self._resolve_user(int(value), resolved, guild_id)
            return str(value)
        if option_type in (OptionType.ROLE, OptionType.MENTIONABLE):
            assert guild_id is not None, "role options only exist in guilds"
            resolved.setdefault("roles", {})[str(value)] = state.guilds[guild_id].roles[int(value)]
            return str(value)
        if option_type == OptionType.CHANNEL:
            channel = state.channel(int(value))
            partial: dict[str, Any] = {
                k: channel[k] for k in ("id", "name", "type", "parent_id", "thread_metadata") if k in channel
            }
            partial["permissions"] = str(state.permissions(state.bot_user_id, int(value)))
            resolved.setdefault("channels", {})[str(value)] = partial
            return str(value)
        if option_type == OptionType.ATTACHMENT:
            filename, data = value  # (filename, bytes)
            attachment_id = state.snowflakes.next()
            state.files[attachment_id] = bytes(data)
            resolved.setdefault("attachments", {})[str(attachment_id)] = {
                "id": str(attachment_id),
                "filename": filename,
                "size": len(data),
                "url": f"{state.cdn_base}/ephemeral-attachments/{attachment_id}/{filename}",
                "proxy_url": f"{state.cdn_base}/ephemeral-attachments/{attachment_id}/{filename}",
                "ephemeral": True,
            }
            return str(attachment_id)
        return value

    def _resolve_user(self, user_id: int, resolved: dict[str, dict[str, Any]], guild_id: int | None) -> None:
        resolved.setdefault("users", {})[str(user_id)] = self.state.user(user_id)
        if guild_id is not None and user_id in self.state.guilds[guild_id].members:
            member = self.state.member(guild_id, user_id, with_user=False)
            member["permissions"] = str(self.state.permissions(user_id, guild_id=guild_id))
            resolved.setdefault("members", {})[str(user_id)] = member


def _check_constraints(where: str, definition: Mapping[str, Any], value: Any) -> None:
    """What Discord's client enforces before an interaction is ever sent."""
    choices = definition.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise ValueError(
            f"{where}: {value!r} is not one of the declared choices {[c['value'] for c in choices]}"
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = definition.get("min_value"), definition.get("max_value")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"{where}: {value!r} is outside [{low}, {high}]")
    if isinstance(value, str):
        low, high = definition.get("min_length", 0), definition.get("max_length", 6000)
        if not low <= len(value) <= high:
            raise ValueError(f"{where}: length {len(value)} is outside [{low}, {high}]")


class InteractionHandle:
    """What a test holds after dispatching an interaction: awaits and inspects the bot's answer."""

    def __init__(self, fake: FakeDiscord, interaction: Interaction) -> None:
        self._fake = fake
        self.record = interaction

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def token(self) -> str:
        return self.record.token

    @property
    def payload(self) -> dict[str, Any]:
        return self.record.payload

    @property
    def callbacks(self) -> list[dict[str, Any]]:
        return self.record.callbacks

    @property
    def response_type(self) -> int | None:
        return self.record.response_type

    @property
    def original(self) -> dict[str, Any] | None:
        message_id = self.record.original_message_id
        state = self._fake.state
        return state.message(message_id) if message_id is not None and state.has_message(message_id) else None

    @property
    def followups(self) -> list[dict[str, Any]]:
        state = self._fake.state
        return [state.message(m) for m in self.record.followup_ids if state.has_message(m)]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The original response (if a message) and every followup, in order."""
        return [m for m in [self.original, *self.followups] if m is not None]

    @property
    def choices(self) -> list[dict[str, Any]] | None:
        return self.record.choices

    @property
    def modal(self) -> dict[str, Any] | None:
        return self.record.modal

    async def wait_for(
        self,
        predicate: Callable[[InteractionHandle], T | None],
        *,
        timeout: float = 5.0,
        what: str = "condition",
    ) -> T:
        return await self._fake.wait_for(lambda: predicate(self), timeout=timeout, what=f"interaction {what}")

    async def response(self, *, timeout: float = 5.0) -> dict[str, Any]:
        """The first callback the bot sent (``{"type": 5, ...}`` for a defer)."""
        await self.wait_for(lambda h: h.callbacks, timeout=timeout, what="initial response")
        return self.callbacks[0]

    async def original_message(self, *, timeout: float = 5.0) -> dict[str, Any]:
        """The original response once it is a real message (a defer's "thinking…" filled in)."""

        def ready(h: InteractionHandle) -> dict[str, Any] | None:
            message = h.original
            return message if message is not None and not message["flags"] & MessageFlag.LOADING else None

        return await self.wait_for(ready, timeout=timeout, what="original response message")

    async def followup(self, index: int = 0, *, timeout: float = 5.0) -> dict[str, Any]:
        await self.wait_for(lambda h: len(h.followups) > index, timeout=timeout, what=f"followup #{index}")
        return self.followups[index]

    async def autocomplete_choices(self, *, timeout: float = 5.0) -> list[dict[str, Any]]:
        return await self.wait_for(lambda h: h.choices, timeout=timeout, what="autocomplete choices")

    async def opened_modal(self, *, timeout: float = 5.0) -> dict[str, Any]:
        return await self.wait_for(lambda h: h.modal, timeout=timeout, what="modal")


def iter_components(components: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Every component of a message or modal, depth first (rows, labels, sections, containers)."""
    for component in components:
        yield component
        yield from iter_components(component.get("components") or [])
        for key in ("component", "accessory"):
            if isinstance(component.get(key), Mapping):
                yield from iter_components([component[key]])
