"""``Agent``: a model that drives workflows through the five workflow tools, in a conversation."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._builtin_tools import ToolEnv
from ._loop import run_turn
from ._messages import AssistantMessage, Message, UserMessage, parse_options
from ._policy import ToolPolicy
from ._providers import ChatModel, check_model
from ._tools import workflow_tools
from ._user_tools import ToolBox, builtin_tool, check_max_steps, check_tool_names, workflow_tool

if TYPE_CHECKING:
    from ..engine import WorkflowRuntime

__all__ = ["Agent"]

_SYSTEM = (
    "You operate durable workflows with the tools start-workflow, get-workflow, list-workflows, "
    "signal-workflow and wait-for-workflow. Look an instance up before you signal it; a workflow "
    "waiting for an event says so in its custom status. Answer briefly with what you did."
)


class Agent:
    """A conversation with a model that can start, inspect and signal workflows.

    The model gets the five workflow tools of ``rt`` (and, if asked, pi's built-in tools) and
    runs the tool-calling loop in the calling thread. The conversation is kept across
    ``chat`` calls in ``messages``.

    Example:
        agent = pdn.Agent(rt, model=pdn.OpenAIModel("gpt-4o-mini"))
        agent.chat("approve the deploy for instance abc")

    Args:
        runtime: The runtime whose workflows the agent drives.
        model: The LLM.
        tools: Names of pi's built-in tools to add (``read``, ``bash``...); none by default.
        cwd: The working directory of those tools.
        policy: Allow-list, confinement and approval, applied to every tool (workflow tools too).
        system_prompt: Replaces the default instructions about the workflow tools.
        max_steps: Model replies per ``chat`` before it is stopped.
    """

    def __init__(
        self,
        runtime: WorkflowRuntime,
        *,
        model: ChatModel,
        tools: Iterable[str] = (),
        cwd: str | Path = ".",
        policy: ToolPolicy | None = None,
        system_prompt: str | None = None,
        max_steps: int = 20,
    ) -> None:
        self._runtime = runtime
        self._model = check_model(model, "Agent")
        self.max_steps = check_max_steps(max_steps, "Agent")
        """Model replies per ``chat`` before it is stopped."""
        check_tool_names(tools, "Agent")
        self._policy = policy or ToolPolicy()
        env = ToolEnv(Path(cwd).expanduser().resolve(), confine_to_cwd=self._policy.confine_to_cwd)
        host_tools = [workflow_tool(t) for t in workflow_tools(runtime)]
        host_tools += [builtin_tool(name, env) for name in tools]
        self._box = ToolBox(host_tools, self._policy)
        self.system_prompt = system_prompt if system_prompt is not None else _SYSTEM
        """The instructions sent with every call."""
        self._messages: list[Message] = []
        self._lock = threading.Lock()
        self._chatting = threading.Lock()  # one turn at a time: each builds on the last one's messages

    def __repr__(self) -> str:
        return f"<Agent model={self._model!r} tools={self._box.allowed()} messages={len(self._messages)}>"

    @property
    def model(self) -> ChatModel:
        """The model."""
        return self._model

    @property
    def tools(self) -> list[str]:
        """The tools the model is offered."""
        return self._box.allowed()

    @property
    def messages(self) -> list[Message]:
        """The conversation so far (a copy)."""
        with self._lock:
            return list(self._messages)

    def reset(self) -> None:
        """Forget the conversation."""
        with self._lock:
            self._messages.clear()

    def chat(self, text: str, **options: Any) -> str:
        """Say ``text``; the model may call tools until it answers. Returns its answer.

        Options (``model``, ``temperature``, ``max_tokens``, ``system_prompt``) apply to this
        call. Tool failures go back to the model as error results; a failing model raises and
        leaves the conversation as it was. Calls from several threads take turns.

        Raises:
            ModelError: the model failed, or kept calling tools past ``max_steps``.
        """
        opts = parse_options(options, where="Agent.chat")
        if opts.system_prompt is None:
            opts = opts.model_copy(update={"system_prompt": self.system_prompt})
        with self._chatting:
            with self._lock:
                history = [*self._messages, UserMessage(content=text)]
            turn = run_turn(self._model, history, self._box, opts, max_steps=self.max_steps)
            with self._lock:
                self._messages = [*history, *turn.messages]
        final = turn.final
        return final.text if isinstance(final, AssistantMessage) else ""
