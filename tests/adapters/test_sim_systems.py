"""The adapters of one run, closed together: every one of them, whatever fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from _sim_factory import make_deployment, make_systems

from adapters import Systems
from adapters.sim import SimWorld
from config.errors import Rejected, Unreachable

ADAPTERS = ("vsphere", "pexip", "console", "ca", "directory")


def _closing(systems: Systems, monkeypatch: pytest.MonkeyPatch, failing: dict[str, Exception]) -> list[str]:
    """Make each adapter's aclose note its name, then raise its error from ``failing`` if it has one."""
    closed: list[str] = []
    for name in ADAPTERS:

        async def aclose(name: str = name) -> None:
            closed.append(name)
            if name in failing:
                raise failing[name]

        # The twins' own aclose has nothing to release and cannot fail: this stands in for
        # real adapters whose connections break while closing.
        monkeypatch.setattr(getattr(systems, name), "aclose", aclose)
    return closed


@pytest.mark.parametrize(
    ("failing", "raised"),
    [
        ({}, None),  # nothing fails: nothing raised
        ({"pexip": Unreachable("pexip: reset while closing")}, Unreachable),  # one: that very error
        (
            {"vsphere": Unreachable("vsphere: logout timed out"), "directory": Rejected("ldap: unbind refused")},
            ExceptionGroup,
        ),  # several: all of them, in order
    ],
)
async def test_aclose_closes_every_adapter_even_if_one_raises(
    world: SimWorld,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing: dict[str, Exception],
    raised: type[BaseException] | None,
) -> None:
    """Systems.aclose closes all five adapters, then re-raises the one error or groups several."""
    systems = make_systems(world, make_deployment(1, tmp_path))
    closed = _closing(systems, monkeypatch, failing)
    if raised is None:
        await systems.aclose()
    else:
        with pytest.raises(raised) as info:
            await systems.aclose()
        if isinstance(info.value, ExceptionGroup):
            assert list(info.value.exceptions) == list(failing.values())
        else:
            assert info.value is next(iter(failing.values()))
    assert closed == list(ADAPTERS)
