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

from typing import Any

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


_locals = locals()
for _name in __all__:
    if not _name.startswith("__") and hasattr(_locals[_name], "__module__"):
        try:
            _locals[_name].__module__ = "pi_duroxide_nb"
        except (AttributeError, TypeError):
            pass
del _locals, _name
