"""The engine boundary: the only package that imports duroxide.

duroxide says "orchestration"; everything above this package says "workflow".
"""

from ._codestore import CodeRecord
from ._context import ActivityContext, DurableTask, KeyValueStore, PiCalls, WorkflowContext, current_activity, drive
from ._engine import PollingConfig
from ._host import AgentHost, record_tool_call
from ._registry import (
    ActivityDefinition,
    CodeOrigin,
    VersionWarning,
    WorkflowDefinition,
    WorkflowRegistry,
    code_identity,
    code_version,
    default_registry,
    explicit_version,
    format_ref,
    format_version,
    function_source,
    is_notebook_code,
    register_activity,
    register_workflow,
    semver_key,
)
from ._runtime import CodeNotice, RuntimeState, WorkflowRuntime, default_db_path
from ._store import SqliteStoreReader, history_event_from_row
from ._transcript import TranscriptEntry
from ._workers import WorkerBeacon, WorkerInfo, new_worker_id

__all__ = [
    "TranscriptEntry",
    "WorkerBeacon",
    "WorkerInfo",
    "new_worker_id",
    "ActivityContext",
    "ActivityDefinition",
    "CodeOrigin",
    "VersionWarning",
    "AgentHost",
    "CodeNotice",
    "CodeRecord",
    "DurableTask",
    "KeyValueStore",
    "PiCalls",
    "PollingConfig",
    "RuntimeState",
    "SqliteStoreReader",
    "WorkflowContext",
    "WorkflowDefinition",
    "WorkflowRegistry",
    "WorkflowRuntime",
    "code_identity",
    "code_version",
    "explicit_version",
    "format_ref",
    "format_version",
    "is_notebook_code",
    "semver_key",
    "current_activity",
    "default_db_path",
    "default_registry",
    "drive",
    "function_source",
    "history_event_from_row",
    "register_activity",
    "record_tool_call",
    "register_workflow",
]
