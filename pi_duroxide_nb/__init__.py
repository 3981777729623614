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

from ._errors import (
    ActivityError,
    EngineError,
    InstanceExistsError,
    InstanceNotFoundError,
    ModelValidationError,
    NoAgentHostError,
    PayloadError,
    PiDuroxideError,
    RegistrationError,
    RuntimeStateError,
    SubWorkflowError,
    TaskFailedError,
    WorkflowNotFoundError,
    WorkflowTimeoutError,
)
from .engine import (
    ActivityContext,
    AgentHost,
    DurableTask,
    PollingConfig,
    RuntimeState,
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
from .engine._transcript import TranscriptEntry
from .models import ChatMessage, HistoryEvent, Outcome, RaceResult, RetryPolicy, WorkflowState, WorkflowStatus
from .pi import HostCall, InMemoryAgentHost, ToolResult, WorkflowTool, workflow_tools

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
    "TranscriptEntry",
    # State and history
    "WorkflowState",
    "WorkflowStatus",
    "HistoryEvent",
    # Errors
    "PiDuroxideError",
    "RegistrationError",
    "WorkflowNotFoundError",
    "InstanceNotFoundError",
    "InstanceExistsError",
    "PayloadError",
    "ModelValidationError",
    "RuntimeStateError",
    "WorkflowTimeoutError",
    "NoAgentHostError",
    "TaskFailedError",
    "ActivityError",
    "SubWorkflowError",
    "EngineError",
    "__version__",
]

_locals = locals()
for _name in __all__:
    if not _name.startswith("__") and hasattr(_locals[_name], "__module__"):
        try:
            _locals[_name].__module__ = "pi_duroxide_nb"
        except (AttributeError, TypeError):
            pass
del _locals, _name
