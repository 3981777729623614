"""The agent side of ctx.pi: hosts that answer it, LLM providers, pi's tools, skills, and an agent."""

from ._agent import Agent
from ._errors import ModelError, PiProcessError, SkillNotFoundError, ToolDeniedError, ToolError
from ._memory import HostCall, InMemoryAgentHost
from ._messages import (
    AssistantMessage,
    LlmOptions,
    ModelCall,
    TextContent,
    ToolCall,
    ToolResultMessage,
    ToolSpec,
    Usage,
    UserMessage,
)
from ._pihost import PiHost
from ._policy import ToolPolicy
from ._providers import AnthropicModel, ChatModel, OpenAIModel, ScriptedModel
from ._rpc_host import PiRpcHost
from ._skills import Skill
from ._tools import ToolResult, WorkflowTool, workflow_tools

__all__ = [
    "Agent",
    "AnthropicModel",
    "AssistantMessage",
    "ChatModel",
    "HostCall",
    "InMemoryAgentHost",
    "LlmOptions",
    "ModelCall",
    "ModelError",
    "OpenAIModel",
    "PiHost",
    "PiProcessError",
    "PiRpcHost",
    "ScriptedModel",
    "Skill",
    "SkillNotFoundError",
    "TextContent",
    "ToolCall",
    "ToolDeniedError",
    "ToolError",
    "ToolPolicy",
    "ToolResult",
    "ToolResultMessage",
    "ToolSpec",
    "Usage",
    "UserMessage",
    "WorkflowTool",
    "workflow_tools",
]
