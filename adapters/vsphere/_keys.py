"""The BIOS supervisor password as keystrokes: USB HID codes for ``PutUsbScanCodes``.

The BIOS password can only be typed on the VM's console; ``PutUsbScanCodes`` is the
one API path to the console's keyboard. This module turns the guide's "BIOS
configuration" steps into a keystroke script for the VMware (Phoenix) BIOS, which
``lock_bios`` sends after forcing the VM into BIOS setup:

Phase 1, from the Main page (where forced BIOS setup opens):

    Right, Right       Main -> Advanced -> Security page
    Enter              "Set Supervisor Password" (the first selectable item there)
    <password>, Enter  "Enter New Password"
    <password>, Enter  "Confirm New Password"
    Enter              dismiss "Setup Notice: Changes have been saved" ([Continue])

Phase 2:

    Right, Right       Security -> Boot -> Exit page
    Enter              "Exit Saving Changes" (the first item there)
    Enter              "Save configuration changes and exit now?" [Yes]

The boot order (hard disk SCSI 0:0 first) is set through the API, not typed: vSphere's
``bootOrder`` takes precedence over the BIOS's own list.

Nothing here logs or keeps the password; the key events built from it are handed to
one SOAP call and dropped.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from pyVmomi import vim

from config.errors import ConfigError

__all__ = ["HID", "Key", "bios_password_script", "char_key", "password_keys", "to_key_events"]

# USB HID usage IDs, keyboard page (HID Usage Tables 1.12, section 10).
HID: dict[str, int] = {
    "enter": 0x28,
    "escape": 0x29,
    "backspace": 0x2A,
    "tab": 0x2B,
    "space": 0x2C,
    "f10": 0x43,
    "right": 0x4F,
    "left": 0x50,
    "down": 0x51,
    "up": 0x52,
}
_UNSHIFTED = {
    "-": 0x2D,
    "=": 0x2E,
    "[": 0x2F,
    "]": 0x30,
    "\\": 0x31,
    ";": 0x33,
    "'": 0x34,
    "`": 0x35,
    ",": 0x36,
    ".": 0x37,
    "/": 0x38,
    " ": 0x2C,
}
_SHIFTED = {
    "_": "-",
    "+": "=",
    "{": "[",
    "}": "]",
    "|": "\\",
    ":": ";",
    '"': "'",
    "~": "`",
    "<": ",",
    ">": ".",
    "?": "/",
    "!": "1",
    "@": "2",
    "#": "3",
    "$": "4",
    "%": "5",
    "^": "6",
    "&": "7",
    "*": "8",
    "(": "9",
    ")": "0",
}


@dataclass(frozen=True)
class Key:
    """One key press: a HID usage ID and whether Shift is held."""

    hid: int
    shift: bool = False

    def __repr__(self) -> str:
        # Keys made from a password must not print it back through a repr.
        return "Key(...)"


def char_key(ch: str) -> Key | None:
    """The key that types ``ch`` on a US keyboard layout, or ``None``."""
    if ch in string.ascii_lowercase:
        return Key(0x04 + ord(ch) - ord("a"))
    if ch in string.ascii_uppercase:
        return Key(0x04 + ord(ch) - ord("A"), shift=True)
    if ch in "123456789":
        return Key(0x1E + ord(ch) - ord("1"))
    if ch == "0":
        return Key(0x27)
    if ch in _UNSHIFTED:
        return Key(_UNSHIFTED[ch])
    if ch in _SHIFTED:
        base = char_key(_SHIFTED[ch])
        assert base is not None
        return Key(base.hid, shift=True)
    return None


def password_keys(password: str) -> list[Key]:
    """The keys that type ``password``.

    Raises:
        ConfigError: a character has no key on the console's US layout
            (``bios.password``); the message gives its position, never the character.
    """
    if not password:
        raise ConfigError("the BIOS supervisor password is empty; set bios.password", "bios.password")
    keys = []
    for i, ch in enumerate(password, start=1):
        key = char_key(ch)
        if key is None:
            raise ConfigError(
                f"character {i} of the BIOS password cannot be typed on the VM console (US layout, "
                "printable ASCII only); choose a password of letters, digits and ASCII punctuation",
                "bios.password",
            )
        keys.append(key)
    return keys


def bios_password_script(password: str) -> list[list[Key]]:
    """The two phases of keystrokes (see the module docstring), each one SOAP call."""
    right, enter = Key(HID["right"]), Key(HID["enter"])
    typed = password_keys(password)
    set_password = [right, right, enter, *typed, enter, *typed, enter, enter]
    exit_saving = [right, right, enter, enter]
    return [set_password, exit_saving]


def to_key_events(keys: list[Key]) -> list[object]:
    """``UsbScanCodeSpec.KeyEvent`` objects: usbHidCode = (HID usage << 16) | 7."""
    events: list[object] = []
    for key in keys:
        modifiers = vim.vm.UsbScanCodeSpec.ModifierType(leftShift=True) if key.shift else None
        events.append(vim.vm.UsbScanCodeSpec.KeyEvent(usbHidCode=(key.hid << 16) | 0x0007, modifiers=modifiers))
    return events
