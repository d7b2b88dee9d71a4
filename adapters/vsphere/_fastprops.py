"""``RetrievePropertiesEx`` answers read without pyVmomi's deserialiser for their bulk (issue #11, item 5).

pyVmomi turns every element of an answer into a type-checked data object, in Python, under the
GIL: for the full records of 100 VMs (about 830 KB, 18 000 elements, most of them the VMs'
devices) that took about 0.22 s of CPU here, ten times what ElementTree's C parser takes for the
same bytes (profile of ``bench/vsphere_bench.py --scale``: pyVmomi's expat handlers and
``CheckField`` were the client's largest cost). So the answer is parsed with ElementTree and:

* strings, numbers, booleans and managed object references are taken as they are;
* a device list (``ArrayOfVirtualDevice``) becomes :class:`Devices`: each device's type, key and
  elements, its pyVmomi object built only when asked for (:meth:`XmlDevice.vim`: a disk sent
  back in a reconfiguration);
* every other value (allocations, boot options, custom values, task results, faults) is handed
  to pyVmomi's own deserialiser, one small element at a time, so it is exactly what pyVmomi gives.

A fault answer (HTTP 500) is deserialised whole by pyVmomi and raised, as by pyVmomi itself, so
the errors callers see (``NotAuthenticated``, ``ManagedObjectNotFound``) do not change. The call
is counted by the stub like any other (``_CountingStub.count``).
"""

from __future__ import annotations

import functools
import gzip
import io
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from pyVmomi import SoapAdapter, VmomiSupport, vmodl

__all__ = ["Devices", "ObjectContent", "XmlDevice", "retrieve_pages"]

PC = vmodl.query.PropertyCollector
VIM = "urn:vim25"
XSD = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_V = "{" + VIM + "}"
_TYPE = "{" + XSI + "}type"


@dataclass
class Property:
    name: str
    val: Any


@dataclass
class ObjectContent:
    """What ``vmodl.query.PropertyCollector.ObjectContent`` holds, as plain data."""

    obj: Any
    propSet: list[Property] = field(default_factory=list)  # noqa: N815  # pyVmomi's names: callers use both
    missingSet: list[Any] = field(default_factory=list)  # noqa: N815


class _Unhandled(Exception):
    """A value :meth:`_Reader.build` does not build: pyVmomi's deserialiser reads it."""


# XML Schema types built directly, and the Python types pyVmomi gives them.
_XSD_TYPES: dict[str, Any] = {
    "string": str,
    "boolean": bool,
    "int": int,
    "long": VmomiSupport.long,
    "short": VmomiSupport.short,
    "byte": VmomiSupport.byte,
}


_MOREFS = VmomiSupport.GetVmodlType("vmodl.ManagedObject[]")  # what pyVmomi makes of ArrayOfManagedObjectReference


@functools.lru_cache(maxsize=512)
def _vim_type(name: str) -> Any:
    return VmomiSupport.GetWsdlType(VIM, name)


class _Reader:
    """One answer: its namespace prefixes (for the values pyVmomi reads) and the stub its objects belong to."""

    def __init__(self, stub: Any, prefixes: dict[str, str]):
        self.stub = stub
        self.prefixes = prefixes
        decls = {"xsi": XSI, "xsd": XSD, **{p: u for p, u in prefixes.items() if p and p != "xml"}}
        self.head = ' xmlns="urn:vim25"' + "".join(f" xmlns:{p}={quoteattr(u)}" for p, u in sorted(decls.items()))

    def moref(self, elem: ET.Element) -> Any:
        # serverGuid: the vCenter of a linked-mode group the object lives in (pyVmomi keeps it too)
        return _vim_type(elem.get("type") or "ManagedObject")(elem.text or "", self.stub, elem.get("serverGuid"))

    def vim(self, elem: ET.Element, result_type: Any = object) -> Any:
        """``elem`` deserialised by pyVmomi (its ``xsi:type``, else ``result_type``)."""
        out: list[str] = []
        _write(elem, out)
        text = "".join(out)
        cut = min(i for i in (text.find(" "), text.find(">")) if i >= 0)
        return SoapAdapter.Deserialize(text[:cut] + self.head + text[cut:], result_type, self.stub)

    def value(self, elem: ET.Element) -> Any:
        xsi_type = elem.get(_TYPE) or ""
        prefix, _, local = xsi_type.rpartition(":")
        if self.prefixes.get(prefix) == XSD:
            text = elem.text or ""
            if local == "string":
                return text
            if local in ("int", "long", "short", "byte"):
                return int(text)
            if local == "boolean":
                return text in ("true", "1")
        elif self.prefixes.get(prefix, VIM if not prefix else None) == VIM:
            if local == "ManagedObjectReference":
                return self.moref(elem)
            if local == "ArrayOfManagedObjectReference":
                return _MOREFS([self.moref(e) for e in elem])
            if local == "ArrayOfVirtualDevice":
                return Devices(XmlDevice(self, e) for e in elem)
            try:
                return self.build(elem, _vim_type(local))
            except (_Unhandled, AttributeError, KeyError, ValueError, TypeError):
                pass  # not a shape built here (or not a known type): pyVmomi reads it
        return self.vim(elem)

    def build(self, elem: ET.Element, declared: Any) -> Any:
        """``elem`` as a value of pyVmomi type ``declared`` (or of its ``xsi:type``), built directly.

        Only data objects whose fields are strings, booleans, integers, enums, references and such
        data objects again (and arrays of them); anything else raises ``_Unhandled`` (pyVmomi reads it).
        """
        xsi_type = elem.get(_TYPE)
        if xsi_type:
            prefix, _, local = xsi_type.rpartition(":")
            uri = self.prefixes.get(prefix, VIM if not prefix else None)
            if uri == XSD:
                declared = _XSD_TYPES.get(local, _Unhandled)
            elif uri == VIM:
                declared = _vim_type(local)
            else:
                raise _Unhandled(xsi_type)
        if issubclass(declared, VmomiSupport.Array):
            item = declared.Item
            return declared([self.build(e, item) for e in elem])
        if issubclass(declared, VmomiSupport.DataObject):
            obj = declared()
            arrays: dict[str, list[Any]] = {}
            for child in elem:
                name = child.tag.rpartition("}")[2]
                info = declared._GetPropertyInfo(name)
                if issubclass(info.type, VmomiSupport.Array):
                    arrays.setdefault(name, []).append(self.build(child, info.type.Item))
                else:
                    setattr(obj, name, self.build(child, info.type))
            for name, items in arrays.items():
                setattr(obj, name, declared._GetPropertyInfo(name).type(items))
            return obj
        if issubclass(declared, VmomiSupport.ManagedObject):
            return self.moref(elem)
        text = elem.text or ""
        if declared is bool:
            return text in ("true", "1")
        if declared is str or issubclass(declared, VmomiSupport.Enum):
            return declared(text)
        if issubclass(declared, int):
            return declared(int(text))
        raise _Unhandled(declared)


def _write(elem: ET.Element, out: list[str]) -> None:
    """``elem`` as XML text again; every element of a vim25 answer is in the vim25 namespace."""
    tag = elem.tag.rpartition("}")[2]
    out.append("<" + tag)
    for key, value in elem.attrib.items():
        uri, _, local = key[1:].partition("}") if key.startswith("{") else ("", "", key)
        out.append(f" {'xsi:' if uri == XSI else ''}{local}={quoteattr(value)}")
    out.append(">")
    if elem.text:
        out.append(escape(elem.text))
    for child in elem:
        _write(child, out)
    out.append(f"</{tag}>")
    if elem.tail:
        out.append(escape(elem.tail))


class XmlDevice:
    """One device of a VM as read: its pyVmomi type, key and elements; its pyVmomi object on demand."""

    def __init__(self, reader: _Reader, elem: ET.Element):
        self._reader = reader
        self._elem = elem
        self.type = _vim_type((elem.get(_TYPE) or "VirtualDevice").rpartition(":")[2])
        self.key = int(self.text("key") or 0)

    def text(self, path: str) -> str | None:
        """The text of a sub-element (``"deviceInfo/label"``), ``None`` when absent."""
        found = self._elem.find("/".join(_V + p for p in path.split("/")))
        return None if found is None else (found.text or "")

    def number(self, path: str, default: int) -> int:
        value = self.text(path)
        return default if value is None or value == "" else int(value)

    def moref(self, path: str) -> str | None:
        """The moref value of a sub-element holding a reference (``"backing/datastore"``)."""
        return self.text(path) or None

    @functools.cached_property
    def vim(self) -> Any:
        """The device as pyVmomi reads it (shared: copy it before editing)."""
        return self._reader.vim(self._elem, VmomiSupport.GetVmodlType("vim.vm.device.VirtualDevice"))


class Devices(list[XmlDevice]):
    """A VM's ``config.hardware.device`` as :class:`XmlDevice` items."""


def _parse(data: bytes, stub: Any) -> tuple[list[ObjectContent], str | None]:
    prefixes: dict[str, str] = {}
    events = ET.iterparse(io.BytesIO(data), events=("start-ns",))
    for _event, (prefix, uri) in events:  # start-ns gives (prefix, uri)
        prefixes.setdefault(prefix, uri)
    root = events.root  # type: ignore[attr-defined]  # set once the parse is done
    reader = _Reader(stub, prefixes)
    returnval = root.find(f".//{_V}returnval")
    if returnval is None:
        return [], None
    objects = []
    for o in returnval.iterfind(_V + "objects"):
        content = ObjectContent(obj=reader.moref(o.find(_V + "obj")))  # always there
        for p in o.iterfind(_V + "propSet"):
            val = p.find(_V + "val")
            content.propSet.append(Property(p.findtext(_V + "name") or "", None if val is None else reader.value(val)))
        content.missingSet = [reader.vim(m, PC.MissingProperty) for m in o.iterfind(_V + "missingSet")]
        objects.append(content)
    return objects, returnval.findtext(_V + "token") or None


def _invoke(collector: Any, method: str, args: list[Any]) -> tuple[list[ObjectContent], str | None]:
    """One property-collector call the way ``SoapStubAdapter.InvokeMethod`` makes it, read here."""
    stub = collector._stub
    info = collector._GetMethodInfo(method)
    stub.count(info.wsdlName)
    headers = {"Cookie": stub.cookie, "SOAPAction": stub.versionId, "Content-Type": "text/xml; charset=UTF-8"}
    if stub._acceptCompressedResponses:
        headers["Accept-Encoding"] = "gzip, deflate"
    request = stub.SerializeRequest(collector, info, args)
    conn = stub.GetConnection()
    try:
        conn.request("POST", stub.path, request, headers)
        resp = conn.getresponse()
        data = resp.read()
    except BaseException:
        conn.close()
        stub.DropConnections()  # as pyVmomi does: the server is probably sick
        raise
    if resp.status not in (200, 500):
        conn.close()
        raise HTTPException(f"{resp.status} {resp.reason}")
    stub.ReturnConnection(conn)
    encoding = (resp.getheader("Content-Encoding") or "identity").lower()
    if encoding == "gzip":
        data = gzip.decompress(data)
    elif encoding == "deflate":
        data = zlib.decompress(data)
    if resp.status == 500:  # a fault: pyVmomi reads it whole, so it is raised exactly as pyVmomi raises it
        fault = SoapAdapter.SoapResponseDeserializer(stub).Deserialize(io.BytesIO(data), info.result)
        if isinstance(fault, BaseException):
            raise fault
        raise HTTPException(f"500 {resp.reason}: no fault in the answer")
    return _parse(data, stub)


def retrieve_pages(collector: Any, spec: Any) -> Iterator[ObjectContent]:
    """Every ``ObjectContent`` of ``RetrievePropertiesEx(specSet=[spec])`` and its continuation pages."""
    objects, token = _invoke(collector, "RetrievePropertiesEx", [[spec], PC.RetrieveOptions()])
    yield from objects
    while token:
        objects, token = _invoke(collector, "ContinueRetrievePropertiesEx", [token])
        yield from objects
