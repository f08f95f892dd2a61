"""A fake Pulumi Automation API behind pgfleet's workspace boundary (:mod:`pgfleet.automation`).

The Pulumi CLI cannot be installed here, so the library's entry points
(``create_or_select_stack``, ``select_stack``, ``LocalWorkspace``) are replaced
by ``create_autospec`` fakes of the real ``pulumi.automation`` objects: a call
with an argument the installed library does not take fails with TypeError, so
the fake cannot drift from the library. The fake keeps a small backend: which
stacks exist, their outputs, what was done to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from unittest.mock import create_autospec

import pulumi.automation as auto
import pytest
from pulumi.automation.events import OpType

#: the real library objects, kept before :func:`install` replaces the entry points
LOCAL_WORKSPACE = auto.LocalWorkspace
CREATE_OR_SELECT_STACK = auto.create_or_select_stack
SELECT_STACK = auto.select_stack


@dataclass
class FakeBackend:
    """Stacks as a Pulumi backend would hold them, and the calls made."""

    #: stack name -> outputs (name -> (value, secret))
    stacks: dict[str, dict[str, tuple[Any, bool]]] = field(default_factory=dict)
    #: outputs ``up`` produces, per stack
    up_outputs: dict[str, dict[str, tuple[Any, bool]]] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    config: dict[str, dict[str, auto.ConfigValue]] = field(default_factory=dict)
    #: stack name -> CommandError message its next up/destroy/preview raises
    fail: dict[str, str] = field(default_factory=dict)

    def _stack(self, name: str) -> Any:
        stack = create_autospec(auto.Stack, instance=True)
        stack.name = name
        ws = create_autospec(LOCAL_WORKSPACE, instance=True)
        ws.remove_stack.side_effect = lambda stack_name, force=None, preserve_config=None: self._remove(stack_name)
        stack.workspace = ws

        def set_config(key: str, value: auto.ConfigValue, *, path: bool = False) -> None:
            self.config.setdefault(name, {})[key] = value

        def up(**kw: Any) -> Any:
            self.calls.append(("up", name, kw))
            self._maybe_fail(name)
            for line in ("Updating (" + name + ")", "Resources: ok"):
                kw["on_output"](line)
            self.stacks[name] = dict(self.up_outputs.get(name, {}))
            result = create_autospec(auto.UpResult, instance=True)
            result.outputs = {k: auto.OutputValue(v, s) for k, (v, s) in self.stacks[name].items()}
            return result

        def destroy(**kw: Any) -> Any:
            self.calls.append(("destroy", name, kw))
            self._maybe_fail(name)
            self.stacks[name] = {}
            return create_autospec(auto.DestroyResult, instance=True)

        def preview(**kw: Any) -> Any:
            self.calls.append(("preview", name, kw))
            self._maybe_fail(name)
            result = create_autospec(auto.PreviewResult, instance=True)
            result.change_summary = {OpType.SAME: 12}
            return result

        def outputs() -> dict[str, auto.OutputValue]:
            return {k: auto.OutputValue(v, s) for k, (v, s) in self.stacks[name].items()}

        stack.set_config.side_effect = set_config
        stack.up.side_effect = up
        stack.destroy.side_effect = destroy
        stack.preview.side_effect = preview
        stack.outputs.side_effect = outputs
        return stack

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail:
            raise auto.CommandError(auto.CommandResult(stdout="", stderr=self.fail[name], code=255))

    def _remove(self, name: str) -> None:
        self.calls.append(("remove_stack", name, {}))
        self.stacks.pop(name, None)

    def create_or_select_stack(self, stack_name: str, project_name: Any = None, program: Any = None, work_dir: Any = None,
                               opts: Any = None) -> Any:
        self.calls.append(("create_or_select_stack", stack_name, {"work_dir": work_dir}))
        self.stacks.setdefault(stack_name, {})
        return self._stack(stack_name)

    def select_stack(self, stack_name: str, project_name: Any = None, program: Any = None, work_dir: Any = None,
                     opts: Any = None) -> Any:
        if stack_name not in self.stacks:
            raise auto.StackNotFoundError(auto.CommandResult(stdout="", stderr=f"no stack named '{stack_name}' found", code=255))
        return self._stack(stack_name)

    def local_workspace(self, *args: Any, **kw: Any) -> Any:
        ws = create_autospec(LOCAL_WORKSPACE, instance=True)
        ws.list_stacks.side_effect = lambda include_all=None: [
            auto.StackSummary(name=n, current=False, resource_count=len(o) or None) for n, o in self.stacks.items()]
        return ws


def install(monkeypatch: pytest.MonkeyPatch, backend: FakeBackend | None = None) -> FakeBackend:
    """Put ``backend`` behind ``pulumi.automation``'s entry points, each autospecced from the real function or class."""
    b = backend or FakeBackend()
    monkeypatch.setattr(auto, "create_or_select_stack",
                        create_autospec(CREATE_OR_SELECT_STACK, side_effect=b.create_or_select_stack))
    monkeypatch.setattr(auto, "select_stack", create_autospec(SELECT_STACK, side_effect=b.select_stack))
    monkeypatch.setattr(auto, "LocalWorkspace", create_autospec(LOCAL_WORKSPACE, side_effect=b.local_workspace))
    return b
