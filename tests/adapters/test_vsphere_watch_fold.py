"""How one WaitForUpdatesEx answer becomes each VM's change (fast; no vCenter)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pyVmomi import vim, vmodl

from adapters.vsphere._watch import _Seen, fold_updates

PC = vmodl.query.PropertyCollector


def _update(kind: str, ref: str, **changes: Any) -> Any:
    change_set = [PC.Change(name=k.replace("_", "."), op="assign", val=v) for k, v in changes.items()]
    return PC.ObjectUpdate(kind=kind, obj=vim.VirtualMachine(ref), changeSet=change_set)


def _updates(*objects: Any) -> Any:
    return PC.UpdateSet(version="1", filterSet=[PC.FilterUpdate(objectSet=list(objects))])


def test_entries_of_one_vm_in_one_update_build_on_each_other() -> None:
    """vcsim sends a new VM's enter, then a modify with only its name, then one with only its power state:
    the VM is one enter with every property (each entry alone would read as a VM with no name)."""
    updates = _updates(
        _update("enter", "vm-72", name="pexip-mgmt", runtime_powerState="poweredOff", customValue=[]),
        _update("modify", "vm-72", name="pexip-mgmt"),
        _update("modify", "vm-72", runtime_powerState="poweredOn"),
    )
    now, _ = fold_updates(updates, {}, {})
    kind, seen, changed = now["vm-72"]
    assert (kind, seen.name, seen.power_state) == ("enter", "pexip-mgmt", "poweredOn")
    assert changed == ("name", "runtime.powerState", "customValue")


def test_a_modify_builds_on_what_was_seen_and_a_vm_that_came_and_went_is_left_out() -> None:
    seen = {"vm-1": _Seen(name="pexip-conf-01", power_state="poweredOff", custom={})}
    updates = _updates(
        _update("modify", "vm-1", runtime_powerState="poweredOn"),
        _update("enter", "vm-9", name="pexip-brief"),
        _update("leave", "vm-9"),
    )
    now, _ = fold_updates(updates, seen, {})
    assert set(now) == {"vm-1"}
    kind, state, changed = now["vm-1"]
    assert (kind, state.name, state.power_state, changed) == (
        "modify",
        "pexip-conf-01",
        "poweredOn",
        ("runtime.powerState",),
    )
    assert seen["vm-1"].power_state == "poweredOff"  # what was seen is not changed in place


def test_custom_field_definitions_are_read_from_the_update() -> None:
    field = vim.CustomFieldsManager.FieldDef(key=7, name="owner")
    change = SimpleNamespace(name="field", val=[field])  # pyVmomi types a Change's val as one value
    manager = SimpleNamespace(kind="modify", obj=vim.CustomFieldsManager("CustomFieldsManager"), changeSet=[change])
    updates = SimpleNamespace(filterSet=[SimpleNamespace(objectSet=[manager])])
    _, fields = fold_updates(updates, {}, {1: "old"})
    assert fields == {7: "owner"}
