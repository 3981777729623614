"""The agent loop: call the model, run the tools it asks for, repeat until it answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ._errors import ModelError
from ._messages import AssistantMessage, LlmOptions, Message, TextContent, ToolResultMessage, Usage
from ._providers import ChatModel
from ._user_tools import ToolBox

__all__ = ["TurnResult", "run_turn"]


@dataclass
class TurnResult:
    """What one agent turn produced."""

    messages: list[Message] = field(default_factory=list)
    """The messages the turn added (assistant replies and tool results), in order."""
    usage: Usage = field(default_factory=Usage)

    @property
    def final(self) -> AssistantMessage | None:
        """The last assistant reply."""
        for m in reversed(self.messages):
            if isinstance(m, AssistantMessage):
                return m
        return None

    @property
    def text(self) -> str:
        """The text of the last assistant reply."""
        final = self.final
        return final.text if final is not None else ""


def run_turn(
    model: ChatModel,
    history: Sequence[Message],
    tools: ToolBox,
    options: LlmOptions,
    *,
    max_steps: int,
    only: Sequence[str] | None = None,
    record: bool = False,
) -> TurnResult:
    """Run the model on ``history`` until it replies without tool calls.

    Tool failures (unknown tool, bad arguments, refusals, errors) go back to the model as
    error results, as pi does, so it can correct itself. ``only`` limits the tools offered;
    ``record`` writes each tool call to the workflow's transcript (inside ``ctx.pi`` activities).

    Raises:
        ModelError: the model failed, or it still called tools after ``max_steps`` replies.
    """
    result = TurnResult()
    specs = tools.specs(only)
    offered = [t.name for t in specs]
    for _ in range(max_steps):
        reply = model.complete([*history, *result.messages], tools=specs, options=options)
        result.messages.append(reply)
        result.usage = result.usage + reply.usage
        if not reply.tool_calls:
            return result
        for call in reply.tool_calls:
            if call.name in offered:
                result.messages.append(tools.call_for_model(call, record=record))
            else:
                available = ", ".join(offered) or "none"
                text = f"Tool {call.name!r} is not available in this turn. Available tools: {available}."
                result.messages.append(
                    ToolResultMessage(
                        tool_call_id=call.id,
                        tool_name=call.name,
                        content=[TextContent(text=text)],
                        details={"error": text},
                        is_error=True,
                    )
                )
    msg = (
        f"The model still called tools after {max_steps} replies, so the turn was stopped. Raise max_steps "
        "on the host or agent, or make the prompt more specific."
    )
    raise ModelError(msg, provider=model.provider)
