"""A third-party executor, installed by pip as a real wheel, appears without code changes.

The plugin is the example of ``docs/executors.md`` itself (its module and its entry
point), so the documentation cannot drift from what works.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from community_ade.api.app import create_app
from community_ade.errors import FenceRejected
from community_ade.execution.executors import (
    ApplyContext,
    ApplyingExecutor,
    PlanContext,
    Snapshot,
    get_executor,
    load_executors,
    payload_schema_of,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "executors.md"
NAME, VERSION = "ade_note_append", "1.0"


def documented_example() -> tuple[str, dict[str, str]]:
    """The plugin module and its entry points, as docs/executors.md shows them."""
    text = DOCS.read_text()
    module = re.search(r"<!-- example: ade_note_append\.py -->\n```python\n(.*?)```", text, re.S)
    project = re.search(r"```toml\n(.*?)```", text, re.S)
    assert module is not None
    assert project is not None
    points = tomllib.loads(project.group(1))["project"]["entry-points"]
    return module.group(1), points["community_ade.executors"]


def build_wheel(directory: Path) -> Path:
    """A minimal, valid wheel (PEP 427) of the documented plugin."""
    module, points = documented_example()
    dist_info = f"{NAME}-{VERSION}.dist-info"
    entries = "".join(f"{name} = {target}\n" for name, target in points.items())
    files = {
        f"{NAME}.py": module,
        f"{dist_info}/METADATA": "Metadata-Version: 2.1\nName: ade-note-append\n"
        f"Version: {VERSION}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{dist_info}/entry_points.txt": f"[community_ade.executors]\n{entries}",
    }
    record = []
    for name, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(content.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    wheel = directory / f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return wheel


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    site = tmp_path / "site"
    wheel = build_wheel(tmp_path)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(site), str(wheel)],
        check=True,
    )  # fmt: skip
    assert (site / f"{NAME}-{VERSION}.dist-info" / "entry_points.txt").exists()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, NAME, raising=False)
    load_executors.cache_clear()
    yield
    load_executors.cache_clear()


async def test_an_installed_plugin_is_found_and_runs_the_whole_protocol(
    installed: None, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    notes = root / "notes.txt"
    notes.write_text("first\n")
    assert "note.append" in load_executors()
    executor = get_executor("note.append")
    assert isinstance(executor, ApplyingExecutor)
    context = ApplyContext(PlanContext(allowed_roots=(root,)), task_id="t-1", fence=5)
    payload = {"file": str(notes), "line": "second"}
    assert executor.validate(payload).ok
    refused = executor.validate({"file": 1, "line": "a\nb", "x": 0})
    assert sorted(e.path for e in refused.errors) == ["file", "line", "x"]
    # Its payload model is published like a built-in's: the task types, the OpenAPI document.
    schema = payload_schema_of(executor)
    assert schema is not None
    assert (schema["required"], schema["additionalProperties"]) == (["file", "line"], False)
    document = create_app().openapi()
    assert document["components"]["schemas"]["NoteAppendPayload"]["required"] == ["file", "line"]
    plan = await executor.plan(payload, context.plan_context)
    assert plan.preview == f"append to {notes}:\n+second\n"
    snapshot = await executor.snapshot(payload, plan, context)
    snapshot = Snapshot(snapshot.task_type, json.loads(json.dumps(snapshot.data)))
    await executor.apply(payload, plan, snapshot, context)
    assert notes.read_text() == "first\nsecond\n"
    assert await executor.rollback(payload, snapshot, context) == "rolled_back"
    assert notes.read_text() == "first\n"
    # The plugin fences with the shared piece: an older holder is refused.
    stale = ApplyContext(context.plan_context, task_id="t-0", fence=4)
    with pytest.raises(FenceRejected):
        await executor.apply(payload, plan, snapshot, stale)
    assert notes.read_text() == "first\n"
