"""LLM messages and responses, shaped like pi's (``@mariozechner/pi-ai``): roles and content blocks.

Dumped with ``by_alias=True`` they are exactly the JSON pi uses (``toolCall``, ``toolCallId``,
``stopReason``...), which is also what ``ctx.pi.llm`` yields and what is persisted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .._errors import PayloadError
from ._tools import TextContent

__all__ = [
    "AssistantMessage",
    "LlmOptions",
    "Message",
    "ModelCall",
    "StopReason",
    "TextContent",
    "ToolCall",
    "ToolResultMessage",
    "ToolSpec",
    "Usage",
    "UserMessage",
    "parse_messages",
]

_MODEL = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


StopReason = Literal["stop", "length", "toolUse", "error", "aborted"]
"""Why the model stopped: a final answer, the token limit, a tool call, an error."""


class ToolCall(BaseModel):
    """A model's request to call a tool; also a reply a ``ScriptedModel`` can play.

    Example:
        pdn.ToolCall("read", {"path": "notes.md"})
    """

    model_config = _MODEL

    type: Literal["toolCall"] = "toolCall"
    id: str = ""
    """The provider's call id; tool results refer to it. Scripted calls get ``call_<n>``."""
    name: str
    """The tool's name."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    """The arguments, already parsed from JSON."""

    def __init__(self, name: str | None = None, arguments: dict[str, Any] | None = None, /, **data: Any) -> None:
        if name is not None:
            data["name"] = name
        if arguments is not None:
            data["arguments"] = arguments
        super().__init__(**data)


ContentBlock = Annotated[TextContent | ToolCall, Field(discriminator="type")]


class Usage(BaseModel):
    """Tokens a call used."""

    model_config = _MODEL

    input: int = 0
    output: int = 0
    cache_read: int = Field(
        default=0, validation_alias=AliasChoices("cacheRead", "cache_read"), serialization_alias="cacheRead"
    )
    cache_write: int = Field(
        default=0, validation_alias=AliasChoices("cacheWrite", "cache_write"), serialization_alias="cacheWrite"
    )
    total_tokens: int = Field(
        default=0, validation_alias=AliasChoices("totalTokens", "total_tokens"), serialization_alias="totalTokens"
    )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input=self.input + other.input,
            output=self.output + other.output,
            cache_read=self.cache_read + other.cache_read,
            cache_write=self.cache_write + other.cache_write,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class UserMessage(BaseModel):
    """What the user (or the workflow) says."""

    model_config = _MODEL

    role: Literal["user"] = "user"
    content: str | list[TextContent]

    @property
    def text(self) -> str:
        """The content as one string."""
        return self.content if isinstance(self.content, str) else "".join(b.text for b in self.content)


class AssistantMessage(BaseModel):
    """One reply of the model: text blocks and tool calls, with usage and the stop reason.

    Example:
        reply = pdn.AssistantMessage.model_validate((yield ctx.pi.llm(messages)))
        reply.text, reply.tool_calls
    """

    model_config = _MODEL

    role: Literal["assistant"] = "assistant"
    content: list[ContentBlock] = Field(default_factory=list)
    provider: str = ""
    """``openai``, ``anthropic``, ``scripted``..."""
    model: str = ""
    """The model id that answered."""
    usage: Usage = Field(default_factory=Usage)
    stop_reason: StopReason = Field(
        default="stop", validation_alias=AliasChoices("stopReason", "stop_reason"), serialization_alias="stopReason"
    )
    error_message: str | None = Field(
        default=None, validation_alias=AliasChoices("errorMessage", "error_message"), serialization_alias="errorMessage"
    )

    @property
    def text(self) -> str:
        """The text blocks joined."""
        return "".join(b.text for b in self.content if isinstance(b, TextContent))

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The tool calls, in order."""
        return [b for b in self.content if isinstance(b, ToolCall)]

    def to_pi(self) -> dict[str, Any]:
        """The JSON pi uses (camelCase keys)."""
        return self.model_dump(mode="json", by_alias=True)


class ToolResultMessage(BaseModel):
    """The result of a tool call, sent back to the model."""

    model_config = _MODEL

    role: Literal["toolResult"] = "toolResult"
    tool_call_id: str = Field(
        validation_alias=AliasChoices("toolCallId", "tool_call_id"), serialization_alias="toolCallId"
    )
    tool_name: str = Field(validation_alias=AliasChoices("toolName", "tool_name"), serialization_alias="toolName")
    content: list[TextContent] = Field(default_factory=list)
    details: Any = None
    is_error: bool = Field(
        default=False, validation_alias=AliasChoices("isError", "is_error"), serialization_alias="isError"
    )

    @property
    def text(self) -> str:
        """The text blocks joined."""
        return "".join(b.text for b in self.content)


Message = Annotated[UserMessage | AssistantMessage | ToolResultMessage, Field(discriminator="role")]
"""Any message of a conversation."""

_MESSAGES: TypeAdapter[list[Message]] = TypeAdapter(list[Message])
_TOOL_RESULT_KEYS = {
    "role",
    "toolCallId",
    "tool_call_id",
    "toolName",
    "tool_name",
    "content",
    "details",
    "isError",
    "is_error",
}


class LlmOptions(BaseModel):
    """Per-call options: ``ctx.pi.llm(messages, model=..., temperature=..., max_tokens=..., system_prompt=...)``.

    Unset fields fall back to the model's defaults (given to its constructor).
    """

    model_config = _MODEL

    model: str | None = None
    """Another model id of the same provider."""
    temperature: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(
        default=None, gt=0, validation_alias=AliasChoices("maxTokens", "max_tokens"), serialization_alias="maxTokens"
    )
    system_prompt: str | None = Field(
        default=None, validation_alias=AliasChoices("systemPrompt", "system_prompt"), serialization_alias="systemPrompt"
    )
    tools: bool | list[str] | None = None
    """``ctx.pi.llm`` only: offer the host's tools (``True``) or some of them (names); off by default."""

    def merged_over(self, defaults: LlmOptions) -> LlmOptions:
        """These options, with unset fields taken from ``defaults``."""
        return defaults.model_copy(update=self.model_dump(exclude_none=True))


class ToolSpec(BaseModel):
    """A tool as the model sees it: name, description and JSON Schema of its arguments."""

    model_config = _MODEL

    name: str
    description: str
    parameters: dict[str, Any]


class ModelCall(BaseModel):
    """What a model was asked: recorded by ``ScriptedModel.calls``."""

    model_config = _MODEL

    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    options: LlmOptions = Field(default_factory=LlmOptions)

    @property
    def tool_names(self) -> list[str]:
        """The names of the tools offered."""
        return [t.name for t in self.tools]

    @property
    def last_text(self) -> str:
        """The text of the last message (the prompt, or the last tool result)."""
        if not self.messages:
            return ""
        last = self.messages[-1]
        return last.text


def parse_options(options: dict[str, Any] | LlmOptions | None, *, where: str) -> LlmOptions:
    """Validate call options, naming the bad ones and the valid ones."""
    if isinstance(options, LlmOptions):
        return options
    try:
        return LlmOptions.model_validate(options or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        msg = (
            f"{where} got invalid options: {problems}. Valid options: model, temperature, max_tokens, "
            "system_prompt (and tools for ctx.pi.llm)."
        )
        raise PayloadError(msg) from exc


def parse_messages(raw: Iterable[Any], *, where: str) -> tuple[str | None, list[Message]]:
    """Turn pi-shaped (or simple ``{"role", "content": str}``) messages into models.

    ``system`` messages are taken out and joined into the system prompt (pi passes the system
    prompt beside the messages); an assistant message whose content is a string becomes one
    text block.

    Returns:
        The system prompt (None if there was none) and the other messages.

    Raises:
        PayloadError: a message does not fit; the message names its index and the problem.
    """
    system: list[str] = []
    items: list[Any] = []
    for i, item in enumerate(raw):
        if isinstance(item, BaseModel):
            item = item.model_dump(mode="json", by_alias=True)
        if not isinstance(item, dict):
            msg = f"{where}: message {i} is {item!r}; give dicts like {{'role': 'user', 'content': 'Hi'}}."
            raise PayloadError(msg)
        if item.get("role") == "system":
            content = item.get("content")
            system.append(content if isinstance(content, str) else json.dumps(content))
            continue
        if item.get("role") == "assistant" and isinstance(item.get("content"), str):
            item = {**item, "content": [{"type": "text", "text": item["content"]}]}
        if item.get("role") == "toolResult":
            # A tool's result spread into the message may carry extra keys (bash: exitCode, stdout...).
            item = {k: v for k, v in item.items() if k in _TOOL_RESULT_KEYS}
        items.append(item)
    try:
        messages = _MESSAGES.validate_python(items)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        msg = (
            f"{where}: the messages do not match pi's message shapes ({problems}). Use "
            "{'role': 'user', 'content': '...'}, assistant messages as returned by ctx.pi.llm, or "
            "{'role': 'toolResult', 'toolCallId', 'toolName', 'content': [{'type': 'text', 'text'}]}."
        )
        raise PayloadError(msg) from exc
    return ("\n\n".join(system) if system else None), messages


def dump_messages(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """Messages as pi's JSON."""
    return [m.model_dump(mode="json", by_alias=True) for m in messages]
