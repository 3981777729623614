"""The agent side of ctx.pi: hosts that answer it, and the workflow tools an LLM can call."""

from ._memory import HostCall, InMemoryAgentHost
from ._tools import ToolResult, WorkflowTool, workflow_tools

__all__ = ["HostCall", "InMemoryAgentHost", "ToolResult", "WorkflowTool", "workflow_tools"]
