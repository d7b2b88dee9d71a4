"""The test OVAs the lab deploys: a valid OVF 1.0 package around an empty stream-optimized VMDK."""

from __future__ import annotations

import hashlib
import io
import struct
import tarfile
import time
from pathlib import Path

__all__ = ["make_test_ova", "stream_vmdk"]


def stream_vmdk(capacity_bytes: int) -> bytes:
    """A valid stream-optimized sparse VMDK of ``capacity_bytes``, all zeros (no grains).

    Layout (VMware Virtual Disk Format 1.1, stream-optimized): header, descriptor,
    then the grain directory (every entry 0: nothing allocated) behind its marker, the
    footer (the header again, now with the directory's offset) and end-of-stream.
    """
    sector, grain, gtes = 512, 128, 512
    capacity = -(-capacity_bytes // sector)
    descriptor = (
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="streamOptimized"\n\n'
        f'# Extent description\nRDONLY {capacity} SPARSE "disk.vmdk"\n\n# The Disk Data Base\n#DDB\n\n'
        'ddb.adapterType = "lsilogic"\nddb.geometry.cylinders = "1"\nddb.geometry.heads = "255"\n'
        'ddb.geometry.sectors = "63"\nddb.virtualHWVersion = "13"\n'
    ).encode()
    desc_sectors = -(-len(descriptor) // sector)
    overhead = max(grain, 1 + desc_sectors)
    gd_entries = -(-capacity // (grain * gtes))
    gd_sectors = -(-gd_entries * 4 // sector)

    def header(gd_offset: int) -> bytes:
        body = struct.pack(
            "<IIIQQQQIQQQBccccH",
            0x564D444B,
            3,
            0x30001,
            capacity,
            grain,
            1,
            desc_sectors,
            gtes,
            0,
            gd_offset,
            overhead,
            0,
            b"\n",
            b" ",
            b"\r",
            b"\n",
            1,
        )
        return body.ljust(sector, b"\0")

    def marker(value: int, kind: int) -> bytes:
        return struct.pack("<QII", value, 0, kind).ljust(sector, b"\0")

    out = io.BytesIO()
    out.write(header(0xFFFFFFFFFFFFFFFF))  # GD_AT_END: the footer has the real offset
    out.write(descriptor.ljust(desc_sectors * sector, b"\0"))
    out.write(b"\0" * ((overhead - 1 - desc_sectors) * sector))
    out.write(marker(gd_sectors, 2))  # grain directory marker
    gd_offset = out.tell() // sector
    out.write(b"\0" * (gd_sectors * sector))
    out.write(marker(1, 3))  # footer marker
    out.write(header(gd_offset))
    out.write(marker(0, 0))  # end of stream
    return out.getvalue()


def make_test_ova(
    path: Path,
    *,
    name: str = "pexip-test",
    cpus: int = 4,
    memory_mb: int = 4096,
    disk_mb: int = 1,
    network: str = "VM Network",
) -> Path:
    """A tiny, valid OVA: OVF 1.0 descriptor, SHA-256 manifest and one stream VMDK.

    Shaped like Pexip's: one SCSI (LSI Logic) disk at 0:0, one VMXNET3 NIC.
    """
    disk = stream_vmdk(disk_mb << 20)
    descriptor = f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References><File ovf:href="{name}-disk1.vmdk" ovf:id="file1" ovf:size="{len(disk)}"/></References>
  <DiskSection><Info>Virtual disks</Info>
    <Disk ovf:capacity="{disk_mb}" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1" ovf:fileRef="file1"
        ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection><Info>Networks</Info><Network ovf:name="{network}"><Description>The VM network</Description>
    </Network></NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A test image shaped like a Pexip Infinity node</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="otherLinux64Guest"><Info>Guest OS</Info></OperatingSystemSection>
    <VirtualHardwareSection><Info>Virtual hardware</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
          <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType></System>
      <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:ElementName>{cpus} virtual CPUs</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>
          <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>{memory_mb} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType>
          <rasd:VirtualQuantity>{memory_mb}</rasd:VirtualQuantity></Item>
      <Item><rasd:Address>0</rasd:Address><rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>7</rasd:AddressOnParent><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>{network}</rasd:Connection><rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
          <rasd:ResourceType>10</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
""".encode()
    files = [(f"{name}.ovf", descriptor)]
    manifest = "".join(
        f"SHA256({n})= {hashlib.sha256(b).hexdigest()}\n" for n, b in (files[0], (f"{name}-disk1.vmdk", disk))
    )
    files += [(f"{name}.mf", manifest.encode()), (f"{name}-disk1.vmdk", disk)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:  # the OVF must come first
        for member, data in files:
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(path)
    return path
