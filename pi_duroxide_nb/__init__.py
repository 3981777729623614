"""pi_duroxide_nb: durable agent workflows for Python and Jupyter, on the duroxide engine.

Example:
    import pi_duroxide_nb as pdn

    @pdn.register_workflow("greet")
    def greet(ctx, name):
        reply = yield ctx.pi.llm([{"role": "user", "content": f"Greet {name}"}])
        return reply["content"]

    with pdn.WorkflowRuntime(db="workflows.db", host=pdn.InMemoryAgentHost(replies=["Hi!"])) as rt:
        print(rt.wait_for_workflow(rt.start_workflow("greet", "Ada")).output)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    ActivityError,
    EngineError,
    InstanceExistsError,
    InstanceFinishedError,
    InstanceNotFoundError,
    InstanceRunningError,
    ModelValidationError,
    NoAgentHostError,
    PayloadError,
    PiDuroxideError,
    RegistrationError,
    RuntimeStateError,
    StoreError,
    SubWorkflowError,
    TaskFailedError,
    WorkflowNotFoundError,
    WorkflowTimeoutError,
)
from .engine import (
    ActivityContext,
    AgentHost,
    CodeNotice,
    CodeRecord,
    DurableTask,
    PollingConfig,
    RuntimeState,
    TranscriptEntry,
    VersionWarning,
    WorkerInfo,
    WorkflowContext,
    WorkflowDefinition,
    WorkflowRegistry,
    WorkflowRuntime,
    current_activity,
    default_db_path,
    default_registry,
    register_activity,
    register_workflow,
)
from .models import (
    ChatMessage,
    DeleteResult,
    EventWait,
    HistoryEvent,
    HistoryList,
    Outcome,
    RaceResult,
    RetryPolicy,
    WorkflowState,
    WorkflowStatus,
)

if TYPE_CHECKING:
    from .notebook import (
        CellRegistration,
        DeterminismIssue,
        DeterminismWarning,
        TimelineBar,
        check_determinism,
        dashboard,
        define_workflow,
        kernel_runtime,
        replay_widget,
        stop_kernel_runtime,
        timeline_bars,
        view,
    )
    from .pi import (
        Agent,
        AnthropicModel,
        AssistantMessage,
        ChatModel,
        HostCall,
        InMemoryAgentHost,
        LlmOptions,
        ModelCall,
        ModelError,
        OpenAIModel,
        PiHost,
        PiProcessError,
        PiRpcHost,
        ScriptedModel,
        Skill,
        SkillNotFoundError,
        TextContent,
        ToolCall,
        ToolDeniedError,
        ToolError,
        ToolPolicy,
        ToolResult,
        ToolResultMessage,
        ToolSpec,
        Usage,
        UserMessage,
        WorkflowTool,
        workflow_tools,
    )
    from .replay import (
        Divergence,
        RecordedEvent,
        ReplayDivergenceError,
        ReplayHistory,
        ReplayOutcome,
        ReplayStep,
        ReplayStepper,
        ReplayTask,
        ReplayWarning,
        replay_check,
    )

# The notebook layer, the pi host and the replay stepper load on first use: a script or a
# worker that only runs workflows does not pay for them (about 2 MiB and 0.15 s of import).
_LAZY = {
    "CellRegistration": "notebook",
    "DeterminismIssue": "notebook",
    "DeterminismWarning": "notebook",
    "TimelineBar": "notebook",
    "check_determinism": "notebook",
    "dashboard": "notebook",
    "define_workflow": "notebook",
    "kernel_runtime": "notebook",
    "replay_widget": "notebook",
    "stop_kernel_runtime": "notebook",
    "timeline_bars": "notebook",
    "view": "notebook",
    "Agent": "pi",
    "AnthropicModel": "pi",
    "AssistantMessage": "pi",
    "ChatModel": "pi",
    "HostCall": "pi",
    "InMemoryAgentHost": "pi",
    "LlmOptions": "pi",
    "ModelCall": "pi",
    "ModelError": "pi",
    "OpenAIModel": "pi",
    "PiHost": "pi",
    "PiProcessError": "pi",
    "PiRpcHost": "pi",
    "ScriptedModel": "pi",
    "Skill": "pi",
    "SkillNotFoundError": "pi",
    "TextContent": "pi",
    "ToolCall": "pi",
    "ToolDeniedError": "pi",
    "ToolError": "pi",
    "ToolPolicy": "pi",
    "ToolResult": "pi",
    "ToolResultMessage": "pi",
    "ToolSpec": "pi",
    "Usage": "pi",
    "UserMessage": "pi",
    "WorkflowTool": "pi",
    "workflow_tools": "pi",
    "Divergence": "replay",
    "RecordedEvent": "replay",
    "ReplayDivergenceError": "replay",
    "ReplayHistory": "replay",
    "ReplayOutcome": "replay",
    "ReplayStep": "replay",
    "ReplayStepper": "replay",
    "ReplayTask": "replay",
    "ReplayWarning": "replay",
    "replay_check": "replay",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    if name in __all__:
        _as_ours(value)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    # Registering and running
    "register_workflow",
    "register_activity",
    "WorkflowRuntime",
    "WorkflowRegistry",
    "WorkflowDefinition",
    "RuntimeState",
    "PollingConfig",
    "default_registry",
    "default_db_path",
    # Inside workflows and activities
    "WorkflowContext",
    "ActivityContext",
    "current_activity",
    "DurableTask",
    "RetryPolicy",
    "Outcome",
    "RaceResult",
    # Agent host and tools
    "AgentHost",
    "InMemoryAgentHost",
    "HostCall",
    "ChatMessage",
    "workflow_tools",
    "WorkflowTool",
    "ToolResult",
    # The pi host: models, messages, tools, skills, agent
    "PiHost",
    "PiRpcHost",
    "ChatModel",
    "ScriptedModel",
    "OpenAIModel",
    "AnthropicModel",
    "ModelCall",
    "LlmOptions",
    "UserMessage",
    "AssistantMessage",
    "ToolResultMessage",
    "TextContent",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "ToolPolicy",
    "Skill",
    "Agent",
    "TranscriptEntry",
    "CodeNotice",
    "CodeRecord",
    "WorkerInfo",
    # State and history
    "WorkflowState",
    "WorkflowStatus",
    "HistoryEvent",
    "HistoryList",
    "DeleteResult",
    "EventWait",
    # Notebook (magics: %load_ext pi_duroxide_nb)
    "kernel_runtime",
    "stop_kernel_runtime",
    "define_workflow",
    "check_determinism",
    "DeterminismWarning",
    "DeterminismIssue",
    "CellRegistration",
    "dashboard",
    "replay_widget",
    "view",
    "TimelineBar",
    "timeline_bars",
    "load_ipython_extension",
    "unload_ipython_extension",
    # Errors
    "PiDuroxideError",
    "RegistrationError",
    "WorkflowNotFoundError",
    "InstanceNotFoundError",
    "InstanceExistsError",
    "InstanceFinishedError",
    "InstanceRunningError",
    "PayloadError",
    "ModelValidationError",
    "RuntimeStateError",
    "WorkflowTimeoutError",
    "NoAgentHostError",
    "TaskFailedError",
    "ActivityError",
    "SubWorkflowError",
    "EngineError",
    "StoreError",
    "VersionWarning",
    "ModelError",
    "ToolError",
    "ToolDeniedError",
    "SkillNotFoundError",
    "PiProcessError",
    # Replay
    "ReplayStepper",
    "ReplayStep",
    "ReplayTask",
    "ReplayOutcome",
    "ReplayWarning",
    "Divergence",
    "ReplayHistory",
    "RecordedEvent",
    "replay_check",
    "ReplayDivergenceError",
    "__version__",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext pi_duroxide_nb``: register the workflow magics and start the kernel's runtime."""
    from .notebook._magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext pi_duroxide_nb``: close dashboards, stop the runtime and remove the magics."""
    from .notebook._magics import unload

    unload(ipython)


def _as_ours(value: Any) -> None:
    """Show exported classes and functions as ``pi_duroxide_nb.X`` (reprs, help, docs)."""
    if hasattr(value, "__module__"):
        try:
            value.__module__ = "pi_duroxide_nb"
        except (AttributeError, TypeError):
            pass


for _name in __all__:
    if not _name.startswith("__") and _name in globals():
        _as_ours(globals()[_name])
