"""LLM providers: a scripted model for tests and teaching, OpenAI-compatible chat completions, Anthropic.

Every provider answers one call, ``complete(messages, tools=..., options=...)``, with an
``AssistantMessage``; the tool-calling loop lives in the host. Calls are synchronous: they run
in the engine's activity threads (or the caller's thread for ``Agent.chat``).

The real providers import their SDK (an optional extra) and read their API key at call time,
so importing this package, or building a host, never needs either.
"""

from __future__ import annotations

import abc
import json
import operator
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ._errors import ModelError
from ._messages import (
    AssistantMessage,
    LlmOptions,
    Message,
    ModelCall,
    StopReason,
    TextContent,
    ToolCall,
    ToolResultMessage,
    ToolSpec,
    Usage,
    UserMessage,
)

__all__ = ["AnthropicModel", "ChatModel", "OpenAIModel", "ScriptedModel", "check_model"]


class ChatModel(abc.ABC):
    """An LLM the host can call. Subclass it to add a provider: implement ``complete``.

    Example:
        class Echo(pdn.ChatModel):
            provider = "echo"
            def complete(self, messages, *, tools=(), options=None):
                return pdn.AssistantMessage(content=[{"type": "text", "text": messages[-1].text}])
    """

    provider: str = "custom"
    """The provider's name, recorded on each reply."""

    def __init__(self, model: str = "", *, defaults: LlmOptions | None = None) -> None:
        self.model = model
        """The default model id."""
        self.defaults = defaults or LlmOptions()
        """Options used where a call does not set them."""

    @abc.abstractmethod
    def complete(
        self, messages: Sequence[Message], *, tools: Sequence[ToolSpec] = (), options: LlmOptions | None = None
    ) -> AssistantMessage:
        """Answer the conversation ``messages`` with one reply, possibly calling ``tools``.

        Raises:
            ModelError: the provider failed or is misconfigured.
        """

    def _effective(self, options: LlmOptions | None) -> LlmOptions:
        return (options or LlmOptions()).merged_over(self.defaults)


def check_model(model: object, owner: str) -> ChatModel:
    """``model``, if it is a ``ChatModel``; else a TypeError naming what ``owner(model=...)`` takes."""
    if not isinstance(model, ChatModel):
        msg = f"{owner}(model=...) takes a pdn.ChatModel (ScriptedModel, OpenAIModel, AnthropicModel), not {model!r}."
        raise TypeError(msg)
    return model


# --- scripted --------------------------------------------------------------------------------

ScriptedReply = str | ToolCall | AssistantMessage | Sequence[str | ToolCall] | dict[str, Any]
"""A scripted reply: text, a tool call, several blocks, or a whole assistant message."""


class ScriptedModel(ChatModel):
    """A model that plays scripted replies in order and records what it was asked.

    The test seam for everything that calls an LLM, like ``httpx.MockTransport``: deterministic,
    offline, and ``calls`` shows each request (messages, tools offered, options).

    Example:
        model = pdn.ScriptedModel([
            "Hello!",                                     # a text reply
            pdn.ToolCall("read", {"path": "notes.md"}),   # a reply that calls a tool
            "Done reading.",
        ])
        model.calls[0].messages                           # what the first call was asked

    Args:
        replies: Replies played in order. Each is a string, a ``ToolCall``, a list of strings
            and tool calls (one reply with several blocks), an ``AssistantMessage``, or a
            function ``(ModelCall) -> reply`` for a reply that depends on the request. A
            function instead of the list answers every call.
        model: The model id reported on replies.
    """

    provider = "scripted"

    def __init__(
        self,
        replies: Iterable[ScriptedReply | Callable[[ModelCall], ScriptedReply]]
        | Callable[[ModelCall], ScriptedReply] = (),
        *,
        model: str = "scripted",
    ) -> None:
        super().__init__(model)
        self._lock = threading.Lock()
        self._fn: Callable[[ModelCall], ScriptedReply] | None = replies if callable(replies) else None
        self._replies: list[Any] = [] if callable(replies) else list(replies)
        self._calls: list[ModelCall] = []
        self._tool_calls = 0

    def __repr__(self) -> str:
        return f"<ScriptedModel calls={len(self._calls)} remaining={self.remaining}>"

    @property
    def calls(self) -> list[ModelCall]:
        """Every call received, in order (a copy)."""
        with self._lock:
            return list(self._calls)

    @property
    def remaining(self) -> int | None:
        """Replies not played yet (None when a function answers)."""
        with self._lock:
            return None if self._fn is not None else len(self._replies)

    def add(self, *replies: ScriptedReply | Callable[[ModelCall], ScriptedReply]) -> None:
        """Queue more replies."""
        with self._lock:
            self._replies.extend(replies)

    def complete(
        self, messages: Sequence[Message], *, tools: Sequence[ToolSpec] = (), options: LlmOptions | None = None
    ) -> AssistantMessage:
        """Record the call and play the next reply."""
        effective = self._effective(options)
        call = ModelCall(messages=list(messages), tools=list(tools), options=effective)
        with self._lock:
            self._calls.append(call)
            number = len(self._calls)
            if self._fn is not None:
                reply: Any = self._fn
            elif self._replies:
                reply = self._replies.pop(0)
            else:
                msg = (
                    f"ScriptedModel has no reply left for call {number} (it was asked: {call.last_text[:200]!r}). "
                    "Give it more replies (ScriptedModel([...]) or model.add(...)), or check why the code "
                    "called the model more often than the script expects."
                )
                raise ModelError(msg, provider=self.provider)
        if callable(reply):
            reply = reply(call)
        return self._message(reply, effective)

    def _message(self, reply: Any, options: LlmOptions) -> AssistantMessage:
        model = options.model or self.model
        if isinstance(reply, AssistantMessage):
            return reply
        if isinstance(reply, dict):
            return AssistantMessage.model_validate({"provider": self.provider, "model": model, **reply})
        parts = [reply] if isinstance(reply, (str, ToolCall)) else list(reply)
        blocks: list[TextContent | ToolCall] = []
        for part in parts:
            if isinstance(part, str):
                blocks.append(TextContent(text=part))
            elif isinstance(part, ToolCall):
                if not part.id:
                    with self._lock:
                        self._tool_calls += 1
                        part = part.model_copy(update={"id": f"call_{self._tool_calls}"})
                blocks.append(part)
            else:
                msg = f"ScriptedModel cannot play {part!r}: use a string, a pdn.ToolCall, or a list of them."
                raise ModelError(msg, provider=self.provider)
        stop: StopReason = "toolUse" if any(isinstance(b, ToolCall) for b in blocks) else "stop"
        text_len = sum(len(b.text) for b in blocks if isinstance(b, TextContent))
        usage = Usage(input=0, output=text_len, total_tokens=text_len)
        return AssistantMessage(content=blocks, provider=self.provider, model=model, usage=usage, stop_reason=stop)


# --- shared helpers for the real providers -----------------------------------------------------


def _api_key(given: str | None, env_var: str, provider: str, base_url: str | None) -> str:
    key = given or os.environ.get(env_var)
    if not key:
        hint = " A local server that ignores keys still needs one: pass api_key='unused'." if base_url else ""
        msg = (
            f"No API key for the {provider} model: pass api_key=... or set ${env_var}.{hint} "
            "(The key is read when the model is first called, not at import.)"
        )
        raise ModelError(msg, provider=provider)
    return key


def _import(module: str, provider: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        msg = (
            f"The {provider} model needs the {module!r} package. Install it with "
            f"pip install 'pi_duroxide_nb[{module}]'."
        )
        raise ModelError(msg, provider=provider, cause=exc) from exc


def _sdk_error(exc: Exception, provider: str, base_url: str) -> ModelError:
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    detail = body.get("error", body) if isinstance(body, dict) else getattr(exc, "message", None) or str(exc)
    if isinstance(detail, dict):
        detail = detail.get("message", detail)
    if status is not None:
        why = {
            400: "the request was rejected (check the model name and options)",
            401: "the API key was refused (check the key)",
            403: "the key may not use this model",
            404: "no such model or endpoint (check the model name and base_url)",
            429: "rate limited or out of quota (wait, or check the account)",
        }.get(int(status), "the provider failed (try again later)")
        msg = f"The {provider} API at {base_url} answered HTTP {status}: {detail}. Likely: {why}."
    else:
        msg = (
            f"Could not reach the {provider} API at {base_url}: {detail}. Check base_url and that the server is "
            "running (and your network, for a hosted provider)."
        )
    return ModelError(msg, provider=provider, status_code=None if status is None else int(status), cause=exc)


def _parse_arguments(text: str | None, name: str, provider: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"The {provider} model called tool {name!r} with arguments that are not JSON: {text[:200]!r}."
        raise ModelError(msg, provider=provider, cause=exc) from exc
    return value if isinstance(value, dict) else {"value": value}


def _result_text(message: ToolResultMessage) -> str:
    text = message.text
    return text if text else json.dumps(message.details, default=str)


class _SdkModel(ChatModel):
    """What the OpenAI and Anthropic models share: options, and an SDK client built at the first call."""

    _sdk: str
    """The SDK's module (also the name of the extra that installs it)."""
    _client_class: str
    """The client class in that module."""
    _error_class: str
    """The SDK's base exception class."""
    _key_env: str
    """The environment variable holding the API key."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        system_prompt: str | None = None,
        max_retries: int = 2,
        timeout: float = 120.0,
    ) -> None:
        super().__init__(
            model, defaults=LlmOptions(temperature=temperature, max_tokens=max_tokens, system_prompt=system_prompt)
        )
        self.base_url = base_url
        """The API root (None: the SDK's default)."""
        self._api_key = api_key
        self._max_retries = max_retries
        self._timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model!r} base_url={self.base_url!r}>"

    def _get_client(self) -> tuple[Any, Any]:
        """The SDK module and the client, both made at the first call (so import and construction need neither)."""
        sdk = _import(self._sdk, self.provider)
        with self._lock:
            if self._client is None:
                key = _api_key(self._api_key, self._key_env, self.provider, self.base_url)
                self._client = getattr(sdk, self._client_class)(
                    api_key=key, base_url=self.base_url, max_retries=self._max_retries, timeout=self._timeout
                )
            return sdk, self._client

    def _create(self, endpoint: str, request: dict[str, Any]) -> Any:
        """Call ``client.<endpoint>.create(**request)``; an SDK error becomes a ``ModelError`` saying why."""
        sdk, client = self._get_client()
        try:
            return operator.attrgetter(endpoint)(client).create(**request)
        except getattr(sdk, self._error_class) as exc:
            raise _sdk_error(exc, self.provider, str(client.base_url)) from exc


# --- OpenAI-compatible ---------------------------------------------------------------------------

_OPENAI_STOP: dict[str | None, StopReason] = {"stop": "stop", "length": "length", "tool_calls": "toolUse"}


class OpenAIModel(_SdkModel):
    """Any OpenAI-compatible chat completions API, through the ``openai`` SDK.

    ``base_url`` makes it work with OpenAI, Ollama (``http://localhost:11434/v1``), vLLM,
    LM Studio, OpenRouter and others.

    Example:
        model = pdn.OpenAIModel("gpt-4o-mini")                   # key from $OPENAI_API_KEY
        local = pdn.OpenAIModel("llama3.2", base_url="http://localhost:11434/v1", api_key="unused")

    Args:
        model: The model id.
        base_url: The API root; the SDK's default (OpenAI) when None.
        api_key: The key; ``$OPENAI_API_KEY`` when None (read at call time).
        temperature: Default sampling temperature.
        max_tokens: Default limit of generated tokens.
        system_prompt: Default system prompt.
        max_retries: The SDK's retries of failed requests.
        timeout: Seconds per request.
    """

    provider = "openai"
    _sdk = "openai"
    _client_class = "OpenAI"
    _error_class = "OpenAIError"
    _key_env = "OPENAI_API_KEY"

    def complete(
        self, messages: Sequence[Message], *, tools: Sequence[ToolSpec] = (), options: LlmOptions | None = None
    ) -> AssistantMessage:
        """Send one chat completion request."""
        opts = self._effective(options)
        request: dict[str, Any] = {"model": opts.model or self.model, "messages": self._wire_messages(messages, opts)}
        if tools:
            request["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in tools
            ]
        if opts.temperature is not None:
            request["temperature"] = opts.temperature
        if opts.max_tokens is not None:
            request["max_tokens"] = opts.max_tokens
        return self._reply(self._create("chat.completions", request))

    @staticmethod
    def _wire_messages(messages: Sequence[Message], opts: LlmOptions) -> list[dict[str, Any]]:
        wire: list[dict[str, Any]] = []
        if opts.system_prompt:
            wire.append({"role": "system", "content": opts.system_prompt})
        for m in messages:
            if isinstance(m, UserMessage):
                wire.append({"role": "user", "content": m.text})
            elif isinstance(m, AssistantMessage):
                item: dict[str, Any] = {"role": "assistant", "content": m.text or None}
                if m.tool_calls:
                    item["tool_calls"] = [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                        }
                        for c in m.tool_calls
                    ]
                wire.append(item)
            else:
                wire.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": _result_text(m)})
        return wire

    def _reply(self, response: Any) -> AssistantMessage:
        if not getattr(response, "choices", None):
            msg = f"The {self.provider} API answered without choices: {response!r}."
            raise ModelError(msg, provider=self.provider)
        choice = response.choices[0]
        blocks: list[TextContent | ToolCall] = []
        if choice.message.content:
            blocks.append(TextContent(text=choice.message.content))
        for call in choice.message.tool_calls or []:
            name = call.function.name
            args = _parse_arguments(call.function.arguments, name, self.provider)
            blocks.append(ToolCall(name, args, id=call.id))
        stop = _OPENAI_STOP.get(choice.finish_reason, "stop")
        if blocks and any(isinstance(b, ToolCall) for b in blocks):
            stop = "toolUse"
        u = response.usage
        usage = (
            Usage(input=u.prompt_tokens or 0, output=u.completion_tokens or 0, total_tokens=u.total_tokens or 0)
            if u is not None
            else Usage()
        )
        return AssistantMessage(
            content=blocks, provider=self.provider, model=response.model or self.model, usage=usage, stop_reason=stop
        )


# --- Anthropic ---------------------------------------------------------------------------------------

_ANTHROPIC_MAX_TOKENS = 4096
"""The Messages API requires ``max_tokens``: sent when neither the model nor the call sets one."""

_ANTHROPIC_STOP: dict[str | None, StopReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "toolUse",
}


class AnthropicModel(_SdkModel):
    """Anthropic's Messages API, through the ``anthropic`` SDK.

    Example:
        model = pdn.AnthropicModel("claude-sonnet-4-5")           # key from $ANTHROPIC_API_KEY

    Args:
        model: The model id.
        base_url: The API root; the SDK's default when None.
        api_key: The key; ``$ANTHROPIC_API_KEY`` when None (read at call time).
        temperature: Default sampling temperature.
        max_tokens: Default limit of generated tokens (the API requires one; 4096 unless set).
        system_prompt: Default system prompt.
        max_retries: The SDK's retries of failed requests.
        timeout: Seconds per request.
    """

    provider = "anthropic"
    _sdk = "anthropic"
    _client_class = "Anthropic"
    _error_class = "AnthropicError"
    _key_env = "ANTHROPIC_API_KEY"

    def complete(
        self, messages: Sequence[Message], *, tools: Sequence[ToolSpec] = (), options: LlmOptions | None = None
    ) -> AssistantMessage:
        """Send one Messages API request."""
        opts = self._effective(options)
        request: dict[str, Any] = {
            "model": opts.model or self.model,
            "max_tokens": opts.max_tokens or _ANTHROPIC_MAX_TOKENS,
            "messages": self._wire_messages(messages),
        }
        if opts.system_prompt:
            request["system"] = opts.system_prompt
        if opts.temperature is not None:
            # Sent as a raw body field: some SDK releases dropped the keyword, the API still takes it.
            request["extra_body"] = {"temperature": opts.temperature}
        if tools:
            request["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools
            ]
        return self._reply(self._create("messages", request))

    @staticmethod
    def _wire_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
        wire: list[dict[str, Any]] = []

        def add(role: str, blocks: list[dict[str, Any]]) -> None:
            # The API wants user and assistant turns to alternate: merge neighbours of one role.
            if wire and wire[-1]["role"] == role:
                wire[-1]["content"].extend(blocks)
            else:
                wire.append({"role": role, "content": blocks})

        for m in messages:
            if isinstance(m, UserMessage):
                add("user", [{"type": "text", "text": m.text}])
            elif isinstance(m, AssistantMessage):
                blocks: list[dict[str, Any]] = []
                for b in m.content:
                    if isinstance(b, TextContent):
                        if b.text:
                            blocks.append({"type": "text", "text": b.text})
                    else:
                        blocks.append({"type": "tool_use", "id": b.id, "name": b.name, "input": b.arguments})
                add("assistant", blocks)
            else:
                add(
                    "user",
                    [
                        {
                            "type": "tool_result",
                            "tool_use_id": m.tool_call_id,
                            "content": _result_text(m),
                            "is_error": m.is_error,
                        }
                    ],
                )
        return wire

    def _reply(self, response: Any) -> AssistantMessage:
        blocks: list[TextContent | ToolCall] = []
        for block in response.content or []:
            kind = getattr(block, "type", None)
            if kind == "text":
                blocks.append(TextContent(text=block.text))
            elif kind == "tool_use":
                args = block.input if isinstance(block.input, dict) else {"value": block.input}
                blocks.append(ToolCall(block.name, dict(args), id=block.id))
        u = response.usage
        usage = Usage()
        if u is not None:
            cache_read = getattr(u, "cache_read_input_tokens", None) or 0
            cache_write = getattr(u, "cache_creation_input_tokens", None) or 0
            usage = Usage(
                input=u.input_tokens or 0,
                output=u.output_tokens or 0,
                cache_read=cache_read,
                cache_write=cache_write,
                total_tokens=(u.input_tokens or 0) + (u.output_tokens or 0) + cache_read + cache_write,
            )
        stop = _ANTHROPIC_STOP.get(response.stop_reason, "stop")
        return AssistantMessage(
            content=blocks, provider=self.provider, model=response.model or self.model, usage=usage, stop_reason=stop
        )
