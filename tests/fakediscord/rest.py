"""REST handlers of the fake Discord: the subset of API v10 a bot like paperbot uses.

Every handler receives the already recorded and validated request (``RecordedRequest``) and
answers with Discord's JSON shapes and Discord's error codes, so the bot's error handling meets
the same answers it would meet in production.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .checks import MAX_UPLOAD_BYTES, is_empty_message
from .interactions import InteractionType, iter_components
from .records import RecordedRequest, ViolationKind
from .state import ChannelType, Intent, Interaction, MessageFlag, parse_emoji

if TYPE_CHECKING:
    from .server import FakeDiscord

Handler = Callable[[web.Request, RecordedRequest], Awaitable[web.StreamResponse]]

# Flags a bot may set when creating a message (others are Discord's to set).
_CREATE_FLAGS = (
    MessageFlag.SUPPRESS_EMBEDS | MessageFlag.SUPPRESS_NOTIFICATIONS | (1 << 15)
)  # IS_COMPONENTS_V2


class DiscordError(Exception):
    """An error answer in Discord's format: ``{"message": ..., "code": ..., "errors": ...}``."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def unknown(what: str, code: int) -> DiscordError:
    return DiscordError(404, code, f"Unknown {what}")


MISSING_PERMISSIONS = (403, 50013, "Missing Permissions")


def _snowflake(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise DiscordError(
            400,
            50035,
            "Invalid Form Body",
            {name: {"_errors": [{"code": "NUMBER_TYPE_COERCE", "message": "Value is not snowflake."}]}},
        ) from None


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """JSON the way Discord sends it: ``Content-Type: application/json`` with no charset
    (discord.py compares the header verbatim and would otherwise treat the body as text)."""
    body = json.dumps(data).encode()
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def no_content() -> web.Response:
    return web.Response(status=204)


class RestApi:
    """Route table and handlers; ``FakeDiscord`` wires them into its aiohttp app."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.state = fake.state

    def routes(self) -> list[tuple[str, str, Handler]]:
        # Literal segments first: aiohttp matches in registration order.
        return [
            ("GET", "/gateway", self.get_gateway),
            ("GET", "/gateway/bot", self.get_gateway_bot),
            ("GET", "/users/@me", self.get_me),
            ("POST", "/users/@me/channels", self.create_dm),
            ("GET", "/users/{user_id}", self.get_user),
            ("GET", "/applications/@me", self.get_application),
            ("GET", "/oauth2/applications/@me", self.get_application),
            ("GET", "/applications/{application_id}/commands", self.list_commands),
            ("PUT", "/applications/{application_id}/commands", self.overwrite_commands),
            ("POST", "/applications/{application_id}/commands", self.create_command),
            ("GET", "/applications/{application_id}/commands/{command_id}", self.get_command),
            ("PATCH", "/applications/{application_id}/commands/{command_id}", self.edit_command),
            ("DELETE", "/applications/{application_id}/commands/{command_id}", self.delete_command),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self.list_commands),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self.overwrite_commands),
            ("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self.create_command),
            (
                "GET",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self.get_command,
            ),
            (
                "PATCH",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self.edit_command,
            ),
            (
                "DELETE",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self.delete_command,
            ),
            (
                "POST",
                "/interactions/{interaction_id}/{interaction_token}/callback",
                self.interaction_callback,
            ),
            ("GET", "/webhooks/{webhook_id}/{webhook_token}/messages/@original", self.get_webhook_message),
            ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original", self.edit_webhook_message),
            (
                "DELETE",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                self.delete_webhook_message,
            ),
            ("GET", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}", self.get_webhook_message),
            (
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self.edit_webhook_message,
            ),
            (
                "DELETE",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self.delete_webhook_message,
            ),
            ("POST", "/webhooks/{webhook_id}/{webhook_token}", self.create_followup),
            ("GET", "/channels/{channel_id}", self.get_channel),
            ("GET", "/channels/{channel_id}/messages", self.list_messages),
            ("POST", "/channels/{channel_id}/messages", self.create_message),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message),
            ("POST", "/channels/{channel_id}/messages/{message_id}/threads", self.create_thread_from_message),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me",
                self.add_reaction,
            ),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me",
                self.remove_reaction,
            ),
            ("POST", "/channels/{channel_id}/threads", self.create_thread),
            ("POST", "/channels/{channel_id}/polls/{message_id}/expire", self.expire_poll),
            ("GET", "/channels/{channel_id}/polls/{message_id}/answers/{answer_id}", self.get_answer_voters),
            ("PUT", "/channels/{channel_id}/thread-members/@me", self.join_thread),
            ("POST", "/channels/{channel_id}/typing", self.typing),
            ("GET", "/guilds/{guild_id}", self.get_guild),
            ("GET", "/guilds/{guild_id}/channels", self.get_guild_channels),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member),
            ("GET", "/guilds/{guild_id}/roles", self.get_roles),
        ]

    # -- helpers ----------------------------------------------------------------------------

    def _channel(self, request: web.Request) -> int:
        channel_id = _snowflake(request, "channel_id")
        if channel_id not in self.state.channels:
            raise unknown("Channel", 10003)
        return channel_id

    def _require(self, channel_id: int, *permissions: str) -> None:
        if not self.state.has_permissions(self.state.bot_user_id, channel_id, *permissions):
            raise DiscordError(*MISSING_PERMISSIONS)

    def _message_in(self, channel_id: int, request: web.Request) -> int:
        message_id = _snowflake(request, "message_id")
        if self.state.message_channel.get(message_id) != channel_id:
            raise unknown("Message", 10008)
        return message_id

    def _gateway_message(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """A stored message as MESSAGE_CREATE/UPDATE carries it (guild_id and author member)."""
        event = copy.deepcopy(dict(message))
        channel_id = int(message["channel_id"])
        guild_id = self.state.guild_of(channel_id) if channel_id in self.state.channels else None
        if guild_id is not None:
            event["guild_id"] = str(guild_id)
            author_id = int(message["author"]["id"])
            if author_id in self.state.guilds[guild_id].members and "webhook_id" not in message:
                event["member"] = self.state.member(guild_id, author_id, with_user=False)
        return event

    def _message_intent(self, channel_id: int) -> int:
        is_dm = self.state.channels[channel_id]["type"] == ChannelType.DM
        return Intent.DIRECT_MESSAGES if is_dm else Intent.GUILD_MESSAGES

    async def _echo(self, event: str, message: Mapping[str, Any]) -> None:
        if message["flags"] & MessageFlag.EPHEMERAL:
            return
        channel_id = int(message["channel_id"])
        await self.fake.gateway.dispatch_if_connected(
            event, self._gateway_message(message), intent=self._message_intent(channel_id)
        )

    def _attachments(
        self,
        rec: RecordedRequest,
        body: Mapping[str, Any],
        channel_id: int,
        existing: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]] | None:
        """Attachments of a create/edit: uploaded ``files[n]`` plus kept existing ones.

        Returns None when an edit leaves attachments alone.
        """
        uploads = {}
        for upload in rec.files:
            if upload.size > MAX_UPLOAD_BYTES:
                self.fake.violation(
                    ViolationKind.LIMIT,
                    f"{upload.field} is {upload.size} bytes (limit {MAX_UPLOAD_BYTES})",
                    rec,
                )
                raise DiscordError(413, 40005, "Request entity too large")
            index = upload.field.removeprefix("files[").removesuffix("]")
            uploads[index] = upload
        entries = body.get("attachments")
        if entries is None:
            if not uploads:
                return None
            entries = [{"id": index} for index in uploads]
        kept = {a["id"]: a for a in existing or []}
        result = []
        for position, entry in enumerate(entries):
            key = str(entry.get("id"))
            if key in uploads:
                upload = uploads[key]
                attachment_id = self.state.snowflakes.next()
                filename = entry.get("filename") or upload.filename or f"file{key}"
                self.state.files[attachment_id] = upload.data
                url = f"{self.state.cdn_base}/attachments/{channel_id}/{attachment_id}/{filename}"
                attachment = {
                    "id": str(attachment_id),
                    "filename": filename,
                    "size": upload.size,
                    "url": url,
                    "proxy_url": url,
                    "content_type": upload.content_type or "application/octet-stream",
                }
                if entry.get("description"):
                    attachment["description"] = entry["description"]
                result.append(attachment)
            elif key in kept:
                result.append(kept[key])
            else:
                message = f"attachments[{position}] refers to id {key}, which is neither an upload nor kept"
                self.fake.violation(ViolationKind.SPEC, message, rec)
                raise DiscordError(
                    400,
                    50035,
                    "Invalid Form Body",
                    {"attachments": {"_errors": [{"code": "ATTACHMENT_NOT_FOUND", "message": message}]}},
                )
        return result

    def _reject_empty(self, rec: RecordedRequest, message: Mapping[str, Any]) -> None:
        if is_empty_message(message):
            self.fake.violation(
                ViolationKind.LIMIT, "empty message (no content, embeds, files or components)", rec
            )
            raise DiscordError(400, 50006, "Cannot send an empty message")

    def _new_message_fields(
        self, rec: RecordedRequest, body: Mapping[str, Any], channel_id: int
    ) -> dict[str, Any]:
        fields = {
            "content": body.get("content") or "",
            "embeds": body.get("embeds") or [],
            "components": body.get("components") or [],
            "attachments": self._attachments(rec, body, channel_id) or [],
            "poll": body.get("poll"),
            "tts": bool(body.get("tts")),
        }
        self._reject_empty(rec, fields | {"sticker_items": body.get("sticker_ids")})
        return fields

    # -- gateway, users, application -----------------------------------------------------------

    async def get_gateway(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        return json_response({"url": self.fake.gateway_url})

    async def get_gateway_bot(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return json_response({"url": self.fake.gateway_url, "shards": 1, "session_start_limit": limit})

    async def get_me(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        return json_response(self.state.user_pii(self.state.bot_user_id))

    async def get_user(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        user_id = _snowflake(request, "user_id")
        if user_id not in self.state.users:
            raise unknown("User", 10013)
        return json_response(self.state.user(user_id))

    async def create_dm(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        recipient = int((rec.json or {}).get("recipient_id") or 0)
        if recipient not in self.state.users:
            raise unknown("User", 10013)
        return json_response(self.state.channel(self.state.add_dm_channel(recipient)))

    async def get_application(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        return json_response(self.state.application_payload())

    # -- application commands -------------------------------------------------------------------

    def _command_scope(self, request: web.Request) -> int | None:
        if _snowflake(request, "application_id") != self.state.application_id:
            raise DiscordError(403, 50001, "Missing Access")
        if "guild_id" not in request.match_info:
            return None
        guild_id = _snowflake(request, "guild_id")
        if guild_id not in self.state.guilds:
            raise DiscordError(403, 50001, "Missing Access")
        return guild_id

    async def list_commands(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        commands = self.state.commands(self._command_scope(request))
        return json_response([copy.deepcopy(c) for c in commands.values()])

    async def overwrite_commands(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        guild_id = self._command_scope(request)
        commands = rec.json or []
        names = [(c.get("name"), c.get("type") or 1) for c in commands]
        duplicates = sorted({n for n, _ in names if names.count((n, _)) > 1})
        if duplicates:
            self.fake.violation(ViolationKind.SPEC, f"duplicate command names {duplicates}", rec)
            raise DiscordError(
                400,
                50035,
                "Invalid Form Body",
                {
                    "_errors": [
                        {
                            "code": "APPLICATION_COMMANDS_DUPLICATE_NAME",
                            "message": f"Application command names must be unique: {duplicates}",
                        }
                    ]
                },
            )
        return json_response(self.state.overwrite_commands(guild_id, commands))

    async def create_command(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        guild_id = self._command_scope(request)
        body = rec.json or {}
        store = self.state.commands(guild_id)
        key = (body.get("name"), body.get("type") or 1)
        existing = next((c for c in store.values() if (c["name"], c["type"]) == key), None)
        others = [c for c in store.values() if c is not existing]
        created = self.state.overwrite_commands(guild_id, [*others, body])
        payload = next(c for c in created if (c["name"], c["type"]) == key)
        return json_response(payload, status=200 if existing else 201)

    def _command(self, request: web.Request) -> tuple[int | None, dict[str, Any]]:
        guild_id = self._command_scope(request)
        command = self.state.commands(guild_id).get(_snowflake(request, "command_id"))
        if command is None:
            raise unknown("application command", 10063)
        return guild_id, command

    async def get_command(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        return json_response(copy.deepcopy(self._command(request)[1]))

    async def edit_command(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        guild_id, command = self._command(request)
        others = [c for c in self.state.commands(guild_id).values() if c is not command]
        edited = {**command, **(rec.json or {})}
        created = self.state.overwrite_commands(guild_id, [*others, edited])
        return json_response(next(c for c in created if c["name"] == edited["name"]))

    async def delete_command(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        guild_id, command = self._command(request)
        del self.state.commands(guild_id)[int(command["id"])]
        return no_content()

    # -- interactions ---------------------------------------------------------------------------

    _ALLOWED_CALLBACKS: Mapping[int, frozenset[int]] = {
        InteractionType.APPLICATION_COMMAND: frozenset({4, 5, 9, 12}),
        InteractionType.MESSAGE_COMPONENT: frozenset({4, 5, 6, 7, 9, 12}),
        InteractionType.AUTOCOMPLETE: frozenset({8}),
        InteractionType.MODAL_SUBMIT: frozenset({4, 5, 6, 7}),
    }

    async def interaction_callback(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        fake, state = self.fake, self.state
        interaction = state.interactions.get(_snowflake(request, "interaction_id"))
        if interaction is None or interaction.token != request.match_info["interaction_token"]:
            fake.violation(
                ViolationKind.INTERACTION, "callback for an interaction the fake never dispatched", rec
            )
            raise unknown("interaction", 10062)
        body = rec.json or {}
        callback_type = body.get("type")
        if interaction.callbacks:
            first = interaction.callbacks[0].get("type")
            fake.violation(
                ViolationKind.INTERACTION,
                f"second callback (type {callback_type}) for interaction {interaction.id} already answered "
                f"with type {first}; use followups or edit the original response",
                rec,
            )
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        elapsed = fake.clock() - interaction.dispatched_at
        if elapsed > fake.interaction_deadline:
            fake.violation(
                ViolationKind.INTERACTION,
                f"first response {elapsed:.2f} s after dispatch "
                f"(Discord allows {fake.interaction_deadline:g} s): defer() before slow work",
                rec,
            )
            raise unknown("interaction", 10062)
        if callback_type not in self._ALLOWED_CALLBACKS.get(interaction.type, frozenset()):
            fake.violation(
                ViolationKind.INTERACTION,
                f"callback type {callback_type} is not valid for interaction type {interaction.type}",
                rec,
            )
            raise DiscordError(
                400,
                50035,
                "Invalid Form Body",
                {
                    "type": {
                        "_errors": [
                            {
                                "code": "INTERACTION_RESPONSE_TYPE_INVALID",
                                "message": "Interaction response type is invalid.",
                            }
                        ]
                    }
                },
            )
        data = body.get("data") or {}
        message: dict[str, Any] | None = None
        if callback_type == 4:
            fields = self._new_message_fields(rec, data, interaction.channel_id)
            message = self._create_interaction_message(
                interaction,
                fields,
                data,
                flags=int(data.get("flags") or 0) & (_CREATE_FLAGS | MessageFlag.EPHEMERAL),
            )
            interaction.original_message_id = int(message["id"])
        elif callback_type == 5:
            ephemeral = int(data.get("flags") or 0) & MessageFlag.EPHEMERAL
            message = self._create_interaction_message(
                interaction, {}, {}, flags=MessageFlag.LOADING | ephemeral
            )
            interaction.original_message_id = int(message["id"])
        elif callback_type in (6, 7):
            if interaction.message_id is None or not state.has_message(interaction.message_id):
                raise unknown("Message", 10008)
            interaction.original_message_id = interaction.message_id
            if callback_type == 7:
                attachments = self._attachments(
                    rec, data, interaction.channel_id, state.message(interaction.message_id)["attachments"]
                )
                message = state.edit_message(interaction.message_id, data, attachments=attachments)
        elif callback_type == 8:
            interaction.choices = list(data.get("choices") or [])
        elif callback_type == 9:
            interaction.modal = copy.deepcopy(data)
        interaction.callbacks.append(copy.deepcopy(body))
        interaction.responded_at = fake.clock()
        if message is not None:
            await self._echo("MESSAGE_CREATE" if callback_type in (4, 5) else "MESSAGE_UPDATE", message)
        if rec.query_value("with_response") not in ("1", "true", "True"):
            return no_content()
        response: dict[str, Any] = {"interaction": {"id": str(interaction.id), "type": interaction.type}}
        if interaction.original_message_id is not None:
            original = state.message(interaction.original_message_id)
            response["interaction"].update(
                response_message_id=original["id"],
                response_message_loading=bool(original["flags"] & MessageFlag.LOADING),
                response_message_ephemeral=bool(original["flags"] & MessageFlag.EPHEMERAL),
            )
        if callback_type in (4, 7) and message is not None:
            response["resource"] = {"type": callback_type, "message": copy.deepcopy(message)}
        return json_response(response)

    def _create_interaction_message(
        self, interaction: Interaction, fields: Mapping[str, Any], data: Mapping[str, Any], *, flags: int
    ) -> dict[str, Any]:
        command_type = (interaction.payload.get("data") or {}).get("type", 1)
        message_type = {1: 20, 2: 23, 3: 23}.get(command_type, 20) if interaction.type == 2 else 0
        return self.state.create_message(
            interaction.channel_id,
            author_id=self.state.bot_user_id,
            allowed_mentions=data.get("allowed_mentions"),
            flags=flags,
            type=message_type,
            webhook_id=self.state.application_id,
            interaction=interaction,
            **fields,
        )

    def _webhook_interaction(self, request: web.Request, rec: RecordedRequest) -> Interaction:
        fake = self.fake
        if _snowflake(request, "webhook_id") != self.state.application_id:
            fake.violation(ViolationKind.INTERACTION, "interaction webhook id is not the application id", rec)
            raise unknown("Webhook", 10015)
        interaction = self.state.interaction_by_token(request.match_info["webhook_token"])
        if interaction is None:
            fake.violation(ViolationKind.INTERACTION, "webhook token of no dispatched interaction", rec)
            raise unknown("Webhook", 10015)
        age = fake.clock() - interaction.dispatched_at
        if age > fake.token_lifetime:
            fake.violation(
                ViolationKind.INTERACTION,
                f"interaction token used {age / 60:.1f} min after dispatch "
                f"(valid for {fake.token_lifetime / 60:g} min)",
                rec,
            )
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        return interaction

    def _webhook_message_id(
        self, request: web.Request, interaction: Interaction, rec: RecordedRequest
    ) -> int:
        raw = request.match_info.get("message_id")
        if raw is None:  # @original
            if interaction.original_message_id is None:
                self.fake.violation(
                    ViolationKind.INTERACTION,
                    "@original used before the interaction was answered with a message or defer",
                    rec,
                )
                raise unknown("Message", 10008)
            message_id = interaction.original_message_id
        else:
            message_id = _snowflake(request, "message_id")
            if message_id not in (interaction.original_message_id, *interaction.followup_ids):
                raise unknown("Message", 10008)
        if not self.state.has_message(message_id):
            raise unknown("Message", 10008)
        return message_id

    async def get_webhook_message(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        interaction = self._webhook_interaction(request, rec)
        return json_response(self.state.message(self._webhook_message_id(request, interaction, rec)))

    async def edit_webhook_message(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        interaction = self._webhook_interaction(request, rec)
        message_id = self._webhook_message_id(request, interaction, rec)
        body = rec.json or {}
        current = self.state.message(message_id)
        attachments = self._attachments(rec, body, interaction.channel_id, current["attachments"])
        preview = {**current, **{k: v for k, v in body.items() if k in ("content", "embeds", "components")}}
        if attachments is not None:
            preview["attachments"] = attachments
        self._reject_empty(rec, preview)
        message = self.state.edit_message(message_id, body, attachments=attachments)
        await self._echo("MESSAGE_UPDATE", message)
        return json_response(message)

    async def delete_webhook_message(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        interaction = self._webhook_interaction(request, rec)
        message_id = self._webhook_message_id(request, interaction, rec)
        message = self.state.delete_message(message_id)
        await self._echo_delete(message)
        return no_content()

    async def create_followup(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        interaction = self._webhook_interaction(request, rec)
        if not interaction.callbacks:
            self.fake.violation(ViolationKind.INTERACTION, "followup sent before the initial response", rec)
            raise unknown("Webhook", 10015)
        body = rec.json or {}
        fields = self._new_message_fields(rec, body, interaction.channel_id)
        original = interaction.original_message_id
        if (
            interaction.response_type == 5
            and original is not None
            and self.state.has_message(original)
            and self.state.message(original)["flags"] & MessageFlag.LOADING
        ):
            # Discord: the first followup after a deferred response fills the "thinking…" message
            # (and keeps the defer's ephemerality) instead of posting a new one.
            message = self.state.edit_message(original, {**body, **fields}, attachments=fields["attachments"])
            event = "MESSAGE_UPDATE"
        else:
            flags = int(body.get("flags") or 0) & (_CREATE_FLAGS | MessageFlag.EPHEMERAL)
            message = self._create_interaction_message(interaction, fields, body, flags=flags)
            interaction.followup_ids.append(int(message["id"]))
            event = "MESSAGE_CREATE"
        await self._echo(event, message)
        if rec.query_value("wait") in ("1", "true", "True"):
            return json_response(message)
        return no_content()

    # -- channels and messages ------------------------------------------------------------------

    async def get_channel(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        channel_id = self._channel(request)
        self._require(channel_id, "view_channel")
        return json_response(self.state.channel(channel_id))

    async def list_messages(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        channel_id = self._channel(request)
        self._require(channel_id, "view_channel")
        if not self.state.has_permissions(self.state.bot_user_id, channel_id, "read_message_history"):
            return json_response([])  # what Discord answers without READ_MESSAGE_HISTORY
        limit = int(rec.query_value("limit") or 50)
        history = self.state.history(channel_id)  # oldest first
        before, after, around = (rec.query_value(k) for k in ("before", "after", "around"))
        if around is not None:
            pivot = int(around)
            older = [m for m in history if int(m["id"]) < pivot][-(limit // 2) :] if limit > 1 else []
            rest = [m for m in history if int(m["id"]) >= pivot][: limit - len(older)]
            page = older + rest
        elif after is not None:
            page = [m for m in history if int(m["id"]) > int(after)][:limit]
        else:
            if before is not None:
                history = [m for m in history if int(m["id"]) < int(before)]
            page = history[-limit:]
        return json_response(copy.deepcopy(list(reversed(page))))  # newest first, like Discord

    async def get_message(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        channel_id = self._channel(request)
        self._require(channel_id, "view_channel", "read_message_history")
        message = self.state.message(self._message_in(channel_id, request))
        if message["flags"] & MessageFlag.EPHEMERAL:
            raise unknown("Message", 10008)
        return json_response(message)

    async def create_message(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        state = self.state
        channel_id = self._channel(request)
        if state.channels[channel_id]["type"] in (ChannelType.GUILD_CATEGORY, ChannelType.GUILD_FORUM):
            raise DiscordError(400, 50008, "Cannot send messages in a non-text channel")
        send = "send_messages_in_threads" if state.is_thread(channel_id) else "send_messages"
        self._require(channel_id, "view_channel", send)
        if state.dm_recipient(channel_id) in state.closed_dms:
            raise DiscordError(403, 50007, "Cannot send messages to this user")
        if rec.files:
            self._require(channel_id, "attach_files")
        body = rec.json or {}
        reference = body.get("message_reference")
        if reference and reference.get("message_id") is not None:
            target = int(reference["message_id"])
            if not state.has_message(target) and reference.get("fail_if_not_exists", True):
                raise DiscordError(
                    400,
                    50035,
                    "Invalid Form Body",
                    {
                        "message_reference": {
                            "_errors": [
                                {"code": "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "message": "Unknown message"}
                            ]
                        }
                    },
                )
        fields = self._new_message_fields(rec, body, channel_id)
        message = state.create_message(
            channel_id,
            author_id=state.bot_user_id,
            allowed_mentions=body.get("allowed_mentions"),
            message_reference=reference,
            flags=int(body.get("flags") or 0) & _CREATE_FLAGS,
            **fields,
        )
        if body.get("nonce") is not None:
            message["nonce"] = body["nonce"]
        await self._echo("MESSAGE_CREATE", message)
        return json_response(message)

    async def edit_message(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        state = self.state
        channel_id = self._channel(request)
        message_id = self._message_in(channel_id, request)
        current = state.message(message_id)
        body = rec.json or {}
        if int(current["author"]["id"]) != state.bot_user_id and set(body) - {"flags"}:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        attachments = self._attachments(rec, body, channel_id, current["attachments"])
        preview = {**current, **{k: v for k, v in body.items() if k in ("content", "embeds", "components")}}
        if attachments is not None:
            preview["attachments"] = attachments
        self._reject_empty(rec, preview)
        message = state.edit_message(message_id, body, attachments=attachments)
        await self._echo("MESSAGE_UPDATE", message)
        return json_response(message)

    async def delete_message(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        state = self.state
        channel_id = self._channel(request)
        message_id = self._message_in(channel_id, request)
        if int(state.message(message_id)["author"]["id"]) != state.bot_user_id:
            self._require(channel_id, "manage_messages")
        await self._echo_delete(state.delete_message(message_id))
        return no_content()

    async def _echo_delete(self, message: Mapping[str, Any]) -> None:
        if message["flags"] & MessageFlag.EPHEMERAL:
            return
        channel_id = int(message["channel_id"])
        event: dict[str, Any] = {"id": message["id"], "channel_id": message["channel_id"]}
        guild_id = self.state.guild_of(channel_id)
        if guild_id is not None:
            event["guild_id"] = str(guild_id)
        await self.fake.gateway.dispatch_if_connected(
            "MESSAGE_DELETE", event, intent=self._message_intent(channel_id)
        )

    # -- polls ----------------------------------------------------------------------------------

    def _poll_message(self, request: web.Request) -> tuple[int, dict[str, Any]]:
        channel_id = self._channel(request)
        self._require(channel_id, "view_channel", "read_message_history")
        message = self.state.message(self._message_in(channel_id, request))
        if not message.get("poll"):
            raise DiscordError(400, 520001, "Invalid poll: this message has no poll")
        return channel_id, message

    async def expire_poll(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        """Only the poll's author may end it early; ending an ended poll is an error (520002)."""
        _, message = self._poll_message(request)
        if int(message["author"]["id"]) != self.state.bot_user_id:
            raise DiscordError(403, 50005, "Cannot expire a poll authored by another user")
        if message["poll"]["results"]["is_finalized"]:
            raise DiscordError(400, 520002, "Poll has already ended")
        return json_response(await self.fake.end_poll(int(message["id"])))

    async def get_answer_voters(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        _, message = self._poll_message(request)
        answer_id = int(request.match_info["answer_id"])
        votes = self.state.poll_votes.get(int(message["id"]), {})
        if answer_id not in votes:
            raise DiscordError(400, 520001, "Invalid poll answer")
        limit = int(rec.query_value("limit") or 25)
        after = int(rec.query_value("after") or 0)
        users = [u for u in sorted(votes[answer_id]) if u > after][:limit]
        return json_response({"users": [self.state.user(u) for u in users]})

    # -- threads --------------------------------------------------------------------------------

    def _thread_response(self, thread_id: int) -> dict[str, Any]:
        thread = self.state.channel(thread_id)
        thread["member"] = {
            "id": str(thread_id),
            "user_id": str(self.state.bot_user_id),
            "join_timestamp": thread["thread_metadata"]["create_timestamp"],
            "flags": 0,
        }
        return thread

    async def _announce_thread(self, thread_id: int) -> None:
        event = self._thread_response(thread_id)
        event["newly_created"] = True
        await self.fake.gateway.dispatch_if_connected("THREAD_CREATE", event, intent=Intent.GUILDS)

    async def create_thread_from_message(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        state = self.state
        channel_id = self._channel(request)
        message_id = self._message_in(channel_id, request)
        if state.channels[channel_id]["type"] not in (ChannelType.GUILD_TEXT, ChannelType.GUILD_ANNOUNCEMENT):
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        self._require(channel_id, "view_channel", "create_public_threads")
        message = state.message(message_id)
        if "thread" in message or message_id in state.channels:
            raise DiscordError(400, 160004, "A thread has already been created for this message")
        body = rec.json or {}
        thread_id = state.add_thread(
            channel_id,
            body["name"],
            thread_id=message_id,  # a thread started from a message shares the message's id
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
        )
        message["thread"] = state.channel(thread_id)
        await self._announce_thread(thread_id)
        return json_response(self._thread_response(thread_id), status=201)

    async def create_thread(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        state = self.state
        channel_id = self._channel(request)
        channel_type = state.channels[channel_id]["type"]
        body = rec.json or {}
        if channel_type == ChannelType.GUILD_FORUM:
            self._require(channel_id, "view_channel", "send_messages")
            starter = body.get("message")
            if not starter:
                raise DiscordError(
                    400,
                    50035,
                    "Invalid Form Body",
                    {
                        "message": {
                            "_errors": [{"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]
                        }
                    },
                )
            thread_type = ChannelType.PUBLIC_THREAD
        elif channel_type in (ChannelType.GUILD_TEXT, ChannelType.GUILD_ANNOUNCEMENT):
            thread_type = int(body.get("type") or ChannelType.PRIVATE_THREAD)
            needed = (
                "create_private_threads"
                if thread_type == ChannelType.PRIVATE_THREAD
                else "create_public_threads"
            )
            self._require(channel_id, "view_channel", needed)
            starter = None
        else:
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        thread_id = state.add_thread(
            channel_id,
            body["name"],
            type=thread_type,
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
            invitable=body.get("invitable"),
        )
        response = self._thread_response(thread_id)
        if starter is not None:
            fields = self._new_message_fields(rec, starter, thread_id)
            message = state.create_message(
                thread_id,
                author_id=state.bot_user_id,
                allowed_mentions=starter.get("allowed_mentions"),
                **fields,
            )
            response["message"] = message
        await self._announce_thread(thread_id)
        return json_response(response, status=201)

    async def join_thread(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        channel_id = self._channel(request)
        if not self.state.is_thread(channel_id):
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        return no_content()

    # -- reactions, typing ----------------------------------------------------------------------

    def _emoji(self, request: web.Request) -> dict[str, Any]:
        emoji = parse_emoji(request.match_info["emoji_name"])
        if emoji["id"] is not None:  # the fake guilds have no custom emojis
            raise DiscordError(400, 10014, "Unknown Emoji")
        return emoji

    async def add_reaction(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        state = self.state
        channel_id = self._channel(request)
        message_id = self._message_in(channel_id, request)
        self._require(channel_id, "view_channel", "read_message_history", "add_reactions")
        emoji = self._emoji(request)
        if state.add_reaction(message_id, emoji, state.bot_user_id):
            await self.fake.gateway.dispatch_if_connected(
                "MESSAGE_REACTION_ADD",
                self.fake.reaction_event(message_id, emoji, state.bot_user_id),
                intent=Intent.GUILD_MESSAGE_REACTIONS,
            )
        return no_content()

    async def remove_reaction(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        state = self.state
        channel_id = self._channel(request)
        message_id = self._message_in(channel_id, request)
        emoji = self._emoji(request)
        if state.remove_reaction(message_id, emoji, state.bot_user_id):
            event = self.fake.reaction_event(message_id, emoji, state.bot_user_id)
            event.pop("member", None)
            await self.fake.gateway.dispatch_if_connected(
                "MESSAGE_REACTION_REMOVE", event, intent=Intent.GUILD_MESSAGE_REACTIONS
            )
        return no_content()

    async def typing(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        channel_id = self._channel(request)
        self._require(channel_id, "view_channel", "send_messages")
        return no_content()

    # -- guilds ---------------------------------------------------------------------------------

    def _guild(self, request: web.Request) -> int:
        guild_id = _snowflake(request, "guild_id")
        if guild_id not in self.state.guilds:
            raise unknown("Guild", 10004)
        return guild_id

    async def get_guild(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        return json_response(self.state.guild_payload(self._guild(request)))

    async def get_guild_channels(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        return json_response(self.state.guild_channels(self._guild(request)))

    async def get_member(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        guild_id = self._guild(request)
        user_id = _snowflake(request, "user_id")
        if user_id not in self.state.guilds[guild_id].members:
            raise unknown("Member", 10007)
        return json_response(self.state.member(guild_id, user_id))

    async def get_roles(self, request: web.Request, rec: RecordedRequest) -> web.Response:
        return json_response(self.state.roles(self._guild(request)))


def find_component(message: Mapping[str, Any], custom_id: str) -> Mapping[str, Any] | None:
    return next(
        (c for c in iter_components(message.get("components") or []) if c.get("custom_id") == custom_id), None
    )
