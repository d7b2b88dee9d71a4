"""What GET shows of every stored Management API object: no internal field, copies the caller may change."""

from __future__ import annotations

from pathlib import Path

from _sim_factory import (
    authenticate_ldap,
    certify,
    deploy_conferencing,
    harden_manager,
    install_manager,
    make_deployment,
    make_systems,
)

from adapters.sim import SimWorld
from adapters.sim._pexip_schema import RESOURCES
from adapters.sim.world import pexip_system


async def test_every_object_shown_without_internal_fields_and_as_a_copy(tmp_path: Path) -> None:
    deployment = make_deployment(2, tmp_path)
    world = SimWorld.open(tmp_path / "w.sqlite")
    try:
        systems = make_systems(world, deployment)
        api = systems.pexip
        await install_manager(systems, deployment)
        locations = await harden_manager(systems, deployment)
        [manager] = await api.list_objects("management_vm", primary=True)
        await certify(systems, deployment.management, manager["resource_uri"])
        conf = deployment.conferencing[0]
        await deploy_conferencing(systems, deployment, conf, locations[conf.location])
        await authenticate_ldap(systems, deployment)
        seen_internal = set()
        lists_seen = 0
        for resource, spec in RESOURCES.items():
            if spec.singleton:
                continue
            stored = {int(k): v for k, v in world.items(pexip_system(resource))}
            shown = await api.list_objects(resource)
            assert [o["id"] for o in shown] == sorted(stored), resource
            for obj in shown:
                raw = stored[obj["id"]]
                seen_internal |= {k for k in raw if k.startswith("_")}
                # Every stored field but the internal ones, and the URI; nothing write-only.
                assert set(obj) == {k for k in raw if not k.startswith("_")} | {"resource_uri"}, resource
                assert not any(spec.fields[k].write_only for k in obj if k in spec.fields), resource
                for name, value in obj.items():
                    if isinstance(value, list) and not any(isinstance(v, dict) for v in value):
                        lists_seen += 1
                        value.append("changed by the caller")  # the world's own list must not change
                        assert world.get(pexip_system(resource), str(obj["id"]))[name] == raw[name]
                        assert "changed by the caller" not in raw[name]
        # The run stored every kind of internal field, and the check met list fields.
        assert {"_secrets", "_key_pem", "_key_fingerprint", "_bootstrap_sha256"} <= seen_internal
        assert lists_seen > 0
    finally:
        world.close()
