"""Exceptions raised by the testbed.

Every exception the package raises on purpose derives from :class:`TestbedError`::

    TestbedError
    ├── ScenarioError            a scenario file is malformed (carries file, line, field)
    ├── ConfigError(ValueError)  a parameter is out of range when an object is built
    │   ├── UnsupportedMitigation  the engine cannot provide a requested mitigation
    │   ├── DecodeError            bytes that are not an instruction the x86 decoder knows
    │   ├── InvalidPatch           a live patch that text_poke_bp() refuses
    │   └── TooManyInterleavings   an exhaustive exploration larger than its limit
    ├── PlatformRefusal          the emulated hardware or kernel refused an operation
    │   ├── PageFault            access through a mapping that does not exist
    │   ├── RmpViolation         SEV-SNP RMP check failed on a write
    │   ├── IntegrityViolation   a line failed its memory-integrity check (poisoned)
    │   ├── OutOfMemory          the page allocator or a pool is exhausted (ENOMEM)
    │   │   └── OomKilled        a fault got VM_FAULT_OOM and the OOM killer killed the task
    │   ├── ResourceLimit        a per-task limit refused an allocation (EAGAIN)
    │   ├── KeyNotProgrammed     access with a KeyID/ASID that holds no key
    │   ├── InvalidArgument      a kernel interface refused its arguments (EINVAL)
    │   ├── FirmwareRefusal      platform firmware refused a command or the memory at boot
    │   └── VerificationFailed   a guest owner's verifier rejected an attestation
    ├── PlatformFailure          the emulated hardware failed an operation (no refusal)
    └── AttackError              an attack could not be carried out as written

A :class:`PlatformRefusal` raised during an attack step is what makes an outcome ``blocked``;
a :class:`PlatformFailure` makes the run an ``error``, whoever meets it.
"""

from __future__ import annotations

from .text import escape

__all__ = [
    "AttackError",
    "ConfigError",
    "DecodeError",
    "FirmwareRefusal",
    "IntegrityViolation",
    "InvalidArgument",
    "InvalidPatch",
    "KeyNotProgrammed",
    "OomKilled",
    "OutOfMemory",
    "PageFault",
    "PlatformFailure",
    "PlatformRefusal",
    "ResourceLimit",
    "RmpViolation",
    "ScenarioError",
    "TestbedError",
    "TooManyInterleavings",
    "UnsupportedMitigation",
    "VerificationFailed",
]


class TestbedError(Exception):
    """Root of every error the testbed raises on purpose."""

    __test__ = False  # not a pytest test class


class ConfigError(TestbedError, ValueError):
    """A value given to a constructor is outside its documented range."""


class ScenarioError(TestbedError):
    """A scenario file could not be loaded.

    Everything but ``line`` may come from the file or its folder, so :meth:`one_line` escapes
    control, format and line-separator characters (:func:`testbed.text.escape`) and keeps the
    field and the message short: a file cannot forge a second line or drive the terminal.

    Args:
        path: the file (or the folder, for a problem with the folder itself).
        line: 1-based line of the offending node, or 0 when unknown.
        field: dotted path of the field (``params.secret``); ``""`` for the whole file,
            :data:`FOLDER` for the folder as a whole.
        message: what is wrong, naming the limit or the accepted values.
    """

    FOLDER = "(folder)"
    """The field of a problem with a folder that was scanned (no scenario files in it)."""
    MESSAGE_CHARS = 500
    """Longest message kept; longer ones (a parser quoting a long name) are cut."""
    FIELD_CHARS = 200
    """Longest field path shown."""

    def __init__(self, path: str, line: int, field: str, message: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        # always one short line, whatever a parser said
        self.message = escape(" ".join(message.split()), self.MESSAGE_CHARS)
        self.more: tuple[ScenarioError, ...] = ()
        """The file's other errors, in the file's order (a file is checked whole)."""
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The ``file:line: field: message`` form shown to users, escaped."""
        path = escape(self.path)
        where = f"{path}:{self.line}" if self.line else path
        field = escape(self.field, self.FIELD_CHARS) if self.field else "(file)"
        return f"{where}: {field}: {self.message}"


class UnsupportedMitigation(ConfigError):
    """The engine cannot provide a mitigation the profile asks for (TME cannot rotate keys)."""


class DecodeError(ConfigError):
    """The bytes are not an instruction this decoder knows (or are too few)."""


class InvalidPatch(ConfigError):
    """A patch that ``text_poke_bp()`` refuses (the kernel would ``BUG()``)."""


class TooManyInterleavings(ConfigError):
    """An exhaustive exploration larger than its limit."""


class PlatformRefusal(TestbedError):
    """The emulated platform refused an operation, as real hardware or a kernel would."""


class PageFault(PlatformRefusal):
    """An access went through a virtual mapping that does not exist."""


class RmpViolation(PlatformRefusal):
    """An SEV-SNP Reverse Map Table check refused a write."""


class IntegrityViolation(PlatformRefusal):
    """A line failed its memory-integrity check on a read: it is poisoned and the read refused
    (the machine check a consumed poisoned line raises)."""


class OutOfMemory(PlatformRefusal):
    """An allocation failed (ENOMEM)."""


class OomKilled(OutOfMemory):
    """A page fault failed with VM_FAULT_OOM and the OOM killer killed the faulting task (or
    found nothing to kill and the kernel panicked): the task cannot go on."""


class ResourceLimit(PlatformRefusal):
    """A per-task resource limit (such as ``RLIMIT_MEMLOCK``) refused an allocation (EAGAIN)."""


class KeyNotProgrammed(PlatformRefusal):
    """An access used a key slot that holds no key."""


class InvalidArgument(PlatformRefusal):
    """A kernel interface refused its arguments (EINVAL); the message names the rule broken."""


class FirmwareRefusal(PlatformRefusal):
    """Platform firmware refused a command (a restricted ``SNP_PAGE_MOVE``) or refused to
    boot with the memory it found (a DIMM whose addresses alias)."""


class VerificationFailed(PlatformRefusal):
    """A guest owner's verifier rejected a launch measurement or an attestation report."""


class PlatformFailure(TestbedError):
    """The emulated hardware could not do what it was asked, through no check of its own (for
    example, PCONFIG's entropy source failed every retry): a failed run, never a block."""


class AttackError(TestbedError):
    """An attack could not be carried out as its scenario describes."""
