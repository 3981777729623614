"""``PiHost``: the agent host behind ``ctx.pi`` with a real (or scripted) model, pi's tools and skills."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ._builtin_tools import BUILTIN_TOOLS, ToolEnv
from ._errors import ToolError
from ._loop import TurnResult, run_turn
from ._messages import LlmOptions, UserMessage, dump_messages, parse_messages, parse_options
from ._policy import ToolPolicy
from ._providers import ChatModel, check_model
from ._skills import Skill, discover_skills, find_skill, skill_dirs, skill_prompt
from ._user_tools import HostTool, ToolBox, builtin_tool, check_max_steps, check_tool_names, function_tool

__all__ = ["PiHost"]

_ALL_BUILTINS = tuple(BUILTIN_TOOLS)


class PiHost:
    """An agent host with a model, pi's built-in tools, your Python tools and pi's skills.

    Bind it to a runtime and ``ctx.pi`` uses it: ``llm`` is one model call, ``tool`` runs a
    tool, ``skill`` runs a skill file as an agent turn, ``prompt`` runs a full agent turn (the
    model may call tools until it answers), ``send_message`` lands in the transcript.

    Example:
        host = pdn.PiHost(
            model=pdn.ScriptedModel([
                "Hello!",                                     # a text reply
                pdn.ToolCall("read", {"path": "notes.md"}),   # a reply that calls a tool
                "Done reading.",
            ]),
            cwd=".", tools=["read", "bash", "edit", "write", "ls", "grep", "find"],
        )
        rt = pdn.WorkflowRuntime(db="workflows.db", host=host)
        host.model.calls          # what the scripted model was asked, in order

    Args:
        model: The LLM: ``ScriptedModel``, ``OpenAIModel``, ``AnthropicModel`` or your ``ChatModel``.
        cwd: The working directory of the tools (and where project skills are looked for).
        tools: Which tools the host has: names of pi's built-ins (all seven by default) and
            Python functions (see ``register_tool``).
        policy: Allow-list, path confinement and approval for tool calls.
        system_prompt: The system prompt of calls that give none.
        max_steps: Model replies per agent turn before the turn is stopped.
        bash_timeout: Seconds a ``bash`` call may run when it gives no ``timeout``.
        skill_paths: Directories to find skills in, replacing pi's places
            (``~/.pi/agent/skills``, ``~/.agents/skills``, ``<cwd>/.pi/skills``, ``<cwd>/.agents/skills``).
    """

    def __init__(
        self,
        *,
        model: ChatModel,
        cwd: str | Path = ".",
        tools: Iterable[str | Callable[..., Any]] | None = None,
        policy: ToolPolicy | None = None,
        system_prompt: str | None = None,
        max_steps: int = 20,
        bash_timeout: float = 180.0,
        skill_paths: Sequence[str | Path] | None = None,
    ) -> None:
        self._model = check_model(model, "PiHost")
        self.max_steps = check_max_steps(max_steps, "PiHost")
        """Model replies per agent turn before the turn is stopped."""
        check_tool_names(tools, "PiHost")
        self._cwd = Path(cwd).expanduser().resolve()
        if not self._cwd.is_dir():
            msg = f"PiHost(cwd=...): {str(self._cwd)!r} is not a directory. Create it or pass another cwd."
            raise ValueError(msg)
        self._policy = policy or ToolPolicy()
        self._env = ToolEnv(self._cwd, confine_to_cwd=self._policy.confine_to_cwd, bash_timeout=bash_timeout)
        self._box = ToolBox([], self._policy)
        self._lock = threading.Lock()
        for item in _ALL_BUILTINS if tools is None else tools:
            if isinstance(item, str):
                self._box.add(builtin_tool(item, self._env))
            else:
                self.register_tool(item)
        self.system_prompt = system_prompt
        """The system prompt of calls that give none."""
        self._skill_dirs = [Path(p).expanduser().resolve() for p in skill_paths] if skill_paths is not None else None

    def __repr__(self) -> str:
        return f"<PiHost model={self._model!r} cwd={str(self._cwd)!r} tools={self.tools}>"

    # --- configuration ----------------------------------------------------------------------------

    @property
    def model(self) -> ChatModel:
        """The model (``host.model.calls`` lists a ``ScriptedModel``'s calls)."""
        return self._model

    @property
    def cwd(self) -> Path:
        """The tools' working directory."""
        return self._cwd

    @property
    def policy(self) -> ToolPolicy:
        """The tool policy."""
        return self._policy

    @property
    def tools(self) -> list[str]:
        """The names of the tools the policy lets run."""
        return self._box.allowed()

    def register_tool(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        args_model: type[BaseModel] | None = None,
    ) -> Any:
        """Add a Python function as a tool; works as a decorator too.

        The function takes one argument, an instance of a pydantic model (its annotation, or
        ``args_model=``); the model's JSON Schema is what the LLM sees, and ``ctx.pi.tool``
        arguments are validated against it. It returns text, any JSON value, or pi's
        ``{content, details}``.

        Example:
            class Weather(BaseModel):
                city: str

            @host.register_tool
            def weather(args: Weather) -> dict:
                "The weather in a city."
                return {"city": args.city, "sky": "clear"}
        """

        def add(f: Callable[..., Any]) -> Callable[..., Any]:
            tool: HostTool = function_tool(f, name=name, description=description, args_model=args_model)
            with self._lock:
                self._box.add(tool)
            return f

        return add if fn is None else add(fn)

    def skill_dirs(self) -> list[Path]:
        """Where skills are looked for, lowest precedence first."""
        return self._skill_dirs if self._skill_dirs is not None else skill_dirs(self._cwd)

    def skills(self) -> dict[str, Skill]:
        """The skills found now (a later directory's skill wins over an earlier one's)."""
        return discover_skills(self.skill_dirs())

    # --- the AgentHost interface ------------------------------------------------------------------

    def _options(self, options: dict[str, Any] | None, where: str, system: str | None = None) -> LlmOptions:
        opts = parse_options(options, where=where)
        if opts.system_prompt is None and (system or self.system_prompt):
            opts = opts.model_copy(update={"system_prompt": system or self.system_prompt})
        return opts

    def llm(self, messages: list[dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
        """One model call on ``messages``; returns pi's assistant message.

        Tools are offered only when asked: ``tools=True`` (all allowed tools) or a list of
        names. The reply may then contain tool calls, which the workflow runs with
        ``ctx.pi.tool`` (each a durable step). The system prompt is the call's
        ``system_prompt``, else the ``system`` messages joined, else the host's.
        """
        system, parsed = parse_messages(messages, where="ctx.pi.llm")
        opts = self._options(options, "ctx.pi.llm", system)
        specs = []
        if opts.tools:
            specs = self._box.specs(None if opts.tools is True else opts.tools)
            if not isinstance(opts.tools, bool):
                missing = sorted(set(opts.tools) - {s.name for s in specs})
                if missing:
                    msg = f"ctx.pi.llm(tools=...) names tools this host does not allow: {missing}; it has {self.tools}."
                    raise ToolError(msg, tool=missing[0])
        return self._model.complete(parsed, tools=specs, options=opts).to_pi()

    def tool(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run a tool through the policy; returns pi's ``{content, details}``.

        Raises:
            ToolError: unknown tool, invalid arguments, or the tool failed.
            ToolDeniedError: the policy refused it.
        """
        return self._box.call(name, args)

    def skill(self, name: str, input: Any) -> str:
        """Run the skill ``name`` on ``input`` as an agent turn; returns the final text.

        The model gets one user message: the skill's body wrapped as ``<skill name="...">…</skill>``,
        then the input.

        Raises:
            SkillNotFoundError: no such skill; the message names the places searched.
        """
        found = find_skill(name, self.skill_dirs())
        turn = self._turn(skill_prompt(found, input), {}, "ctx.pi.skill")
        return turn.text

    def send_message(self, content: Any) -> dict[str, Any]:
        """Acknowledge a message; the runtime writes it to the transcript (``rt.messages``)."""
        return {"sent": True}

    def prompt(self, prompt: str, options: dict[str, Any]) -> dict[str, Any]:
        """A full agent turn on ``prompt``: a fresh conversation in which the model may call tools.

        Returns:
            ``{"text": final text, "messages": [the turn's messages], "usage": {...}, "stopReason": ...}``.
            The messages are persisted with the activity's result, so a replay never calls the
            model again.
        """
        if not isinstance(prompt, str):
            msg = f"ctx.pi.prompt takes the prompt as a string, not {type(prompt).__name__}."
            raise TypeError(msg)
        turn = self._turn(prompt, options, "ctx.pi.prompt")
        final = turn.final
        return {
            "text": turn.text,
            "messages": dump_messages([UserMessage(content=prompt), *turn.messages]),
            "usage": turn.usage.model_dump(mode="json", by_alias=True),
            "stopReason": final.stop_reason if final is not None else "stop",
        }

    def _turn(self, text: str, options: dict[str, Any] | None, where: str) -> TurnResult:
        opts = self._options(options, where)
        only = None
        if opts.tools is False:
            only = []
        elif isinstance(opts.tools, list):
            only = opts.tools
        return run_turn(
            self._model, [UserMessage(content=text)], self._box, opts, max_steps=self.max_steps, only=only, record=True
        )
