"""README examples that state a result are run, and the result they state is checked."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pi_duroxide_nb as pdn

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_block_containing(marker: str) -> str:
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", README.read_text(encoding="utf-8"), re.S | re.M)
    found = [textwrap.dedent(body) for _, body in blocks if marker in body]
    assert len(found) == 1, f"expected one README block with {marker!r}, found {len(found)}"
    return found[0]


def test_custom_tool_result_shape_is_what_the_readme_shows(make_runtime, iid) -> None:
    code = _python_block_containing("def stock(args: Lookup)")
    stated = re.search(r"# result == (\{.*\})$", code, re.M)
    assert stated is not None, "the README block states the result shape"
    namespace: dict[str, object] = {"pdn": pdn}
    exec(compile(code, str(README), "exec"), namespace)  # registers "restock" in pdn.default_registry
    try:
        host = namespace["host"]
        assert isinstance(host, pdn.PiHost)
        rt = make_runtime(registry=pdn.default_registry, host=host).start()
        instance = rt.start_workflow("restock", "A-1", instance_id=iid("restock"))
        assert rt.wait_for_workflow(instance, timeout=30).output == 7
        result = next(e.result for e in rt.history(instance) if e.kind == "ActivityCompleted")
        assert result == ast.literal_eval(stated.group(1))
    finally:
        pdn.default_registry.unregister("restock")
