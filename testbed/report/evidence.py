"""Evidence bytes as hex dumps with an ASCII column, labelled for what each buffer is.

An attack's :class:`~testbed.results.Evidence` holds up to three buffers: the truth (``secret``),
what the attacker saw (``captured``) and what it ended up with (``recovered``). What they are
depends on the attack: DRAM at the secret's address, dirty bitmaps, an attestation report, the
bytes a CPU executed. :data:`LABELS` names them per attack kind; an attack it does not know (a
plugin's) gets the generic names, and an attack program gets names from its steps and goal
(:func:`testbed.report.programs.evidence_labels`).

A buffer is compared with its reference (the secret, or the value the attacker chose) position
by position, and only *meaningful* matches are marked: the whole buffer, or runs of at least
:data:`MIN_RUN` equal bytes (2 in buffers under 8 bytes) that hold more than one value, and
never a run of defence bytes only (0x00, 0xff). A single byte equal by coincidence (1 in 256
per byte of ciphertext) is counted in the note but not marked.

The markup is assembled from escaped pieces with :class:`markupsafe.Markup` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from ..platform.sev.report import (
    LAUNCH_DIGEST_OFFSET,
    LAUNCH_DIGEST_SIZE,
    MNONCE_OFFSET,
    MNONCE_SIZE,
    POLICY_OFFSET,
    RESERVED_OFFSET,
    SIG_ALGO_OFFSET,
    SIG_USAGE_OFFSET,
    SIGNATURE_OFFSET,
    SIGNED_END,
)
from ..platform.sev.snp_report import (
    CHIP_ID_OFFSET,
    MEASUREMENT_OFFSET,
    MEASUREMENT_SIZE,
    REPORT_DATA_OFFSET,
    REPORT_DATA_SIZE,
    SNP_SIGNATURE_OFFSET,
)
from ..results.chance import DEFENCE_BYTES
from ..results.model import Evidence

__all__ = ["HEX_LIMIT", "EvidenceLabels", "HexDump", "evidence_views", "labels_for"]

HEX_LIMIT = 256
"""Bytes shown per buffer; the scenario's JSON file holds every byte."""
HEX_ROW = 16
MIN_RUN = 4
"""Shortest run of matching bytes that is marked (in buffers of 8 bytes or more)."""
SHORT_BUFFER = 8
SHORT_RUN = 2


@dataclass(frozen=True)
class Field:
    """A named span of a structured buffer (an attestation report's mnonce, ...)."""

    offset: int
    length: int
    name: str


@dataclass(frozen=True)
class EvidenceLabels:
    """What an attack's evidence buffers are, in words.

    Attributes:
        secret: the truth (what the victim held, what the attack aims at).
        captured: what the attacker saw.
        recovered: what the attacker ended up with.
        compare_captured: whether the captured bytes are of the same kind as the secret
            (DRAM holding it, a ciphertext of it), so that comparing them makes sense.
        target_metric: a metric holding, in hex, the value the attacker chose; when there is
            one, the recovered bytes are compared with it instead of the secret.
        captured_fields: the layout of the captured buffer, when it has one.
    """

    secret: str
    captured: str
    recovered: str
    compare_captured: bool = True
    target_metric: str | None = None
    captured_fields: tuple[Field, ...] = ()
    secret_name: str = "the secret"
    """The secret in a note (``2 of 5 bytes equal the new instruction``)."""
    layout_metrics: tuple[str, ...] = ()
    """Metrics whose value, the first found in :attr:`captured_layouts`, picks the captured
    buffer's layout instead of :attr:`captured_fields`."""
    captured_layouts: Mapping[str, tuple[Field, ...]] | None = None

    def layout(self, metrics: Mapping[str, Any]) -> tuple[Field, ...]:
        """The captured buffer's layout for a row with ``metrics``."""
        for name in self.layout_metrics:
            value = metrics.get(name)
            if self.captured_layouts and isinstance(value, str) and value in self.captured_layouts:
                return self.captured_layouts[value]
        return self.captured_fields


_REPORT_FIELDS = (
    Field(MNONCE_OFFSET, MNONCE_SIZE, "mnonce"),
    Field(LAUNCH_DIGEST_OFFSET, LAUNCH_DIGEST_SIZE, "launch digest"),
    Field(POLICY_OFFSET, SIG_USAGE_OFFSET - POLICY_OFFSET, "policy"),
    Field(SIG_USAGE_OFFSET, SIG_ALGO_OFFSET - SIG_USAGE_OFFSET, "signature usage"),
    Field(SIG_ALGO_OFFSET, RESERVED_OFFSET - SIG_ALGO_OFFSET, "signature algorithm"),
    Field(RESERVED_OFFSET, SIGNATURE_OFFSET - RESERVED_OFFSET, "reserved"),
    Field(SIGNATURE_OFFSET, 1 << 16, "signature (by the PEK, over bytes "
          f"0x00-{SIGNED_END - 1:#04x})"),
)

_SNP_REPORT_FIELDS = (
    Field(0x00, 0x08, "version, guest_svn"),
    Field(0x08, 0x08, "policy"),
    Field(0x10, 0x20, "family_id, image_id"),
    Field(0x30, 0x08, "vmpl, signature_algo"),
    Field(0x38, REPORT_DATA_OFFSET - 0x38, "TCB, platform info, flags"),
    Field(REPORT_DATA_OFFSET, REPORT_DATA_SIZE, "report_data (the owner's nonce)"),
    Field(MEASUREMENT_OFFSET, MEASUREMENT_SIZE, "measurement (SHA-384 launch digest)"),
    Field(MEASUREMENT_OFFSET + MEASUREMENT_SIZE, CHIP_ID_OFFSET - MEASUREMENT_OFFSET
          - MEASUREMENT_SIZE, "host data, key digests, report ids, reported TCB"),
    Field(CHIP_ID_OFFSET, 64, "chip_id"),
    Field(CHIP_ID_OFFSET + 64, SNP_SIGNATURE_OFFSET - CHIP_ID_OFFSET - 64,
          "committed and launch TCB, reserved"),
    Field(SNP_SIGNATURE_OFFSET, 1 << 16, "signature (by the VCEK, over bytes "
          f"0x000-{SNP_SIGNATURE_OFFSET - 1:#05x})"),
)
_MEASURE_BLOB_FIELDS = (
    Field(0x00, 32, "MEASURE (HMAC-SHA256 under the TIK)"),
    Field(0x20, 16, "mnonce (chosen by the firmware)"),
)

GENERIC = EvidenceLabels(
    secret="Secret: what the victim held",
    captured="Captured: what the attacker saw",
    recovered="Recovered: what the attacker ended up with",
)

LABELS: Mapping[str, EvidenceLabels] = {
    "key-wearout": EvidenceLabels(
        "The victim's own value at the second address",
        "Ciphertext of the block written at the first address",
        "What the victim read at the second address",
        compare_captured=False, target_metric="attacker_target"),
    "secretmem-exhaustion": EvidenceLabels(
        "Secret: what the victim needs to keep in secret memory",
        "Captured",
        "What the victim read back from its secret memory"),
    "dirty-page-leak": EvidenceLabels(
        "Secret: the guest's key, one bit per interval",
        "Dirty bitmaps the hypervisor read, one per interval (bit i: guest page i)",
        "Bits the hypervisor decoded from the bitmaps",
        compare_captured=False, secret_name="the key"),
    "torn-live-patch": EvidenceLabels(
        "The new instruction the patch writes",
        "DRAM at the patched site: what the memory chips hold",
        "The bytes a CPU executed at the site", secret_name="the new instruction"),
    "attestation": EvidenceLabels(
        "Secret: the owner's disk key",
        "Attestation report the owner received",
        "What the backdoor read from the guest",
        compare_captured=False, captured_fields=_REPORT_FIELDS,
        layout_metrics=("evidence", "report_format"),
        captured_layouts={"launch_measure": _MEASURE_BLOB_FIELDS,
                          "sev-snp": _SNP_REPORT_FIELDS}),
    "ciphertext-side-channel": EvidenceLabels(
        "Secret: the guest's scalar, one bit per ladder iteration",
        "The swap flag's 16-byte block as the observer read it, one per iteration",
        "Bits the observer decoded from the ciphertext",
        compare_captured=False, secret_name="the scalar"),
}
"""Evidence labels of the built-in attacks, by attack kind."""


def labels_for(attack: str) -> EvidenceLabels:
    """The labels of ``attack``'s evidence (the generic ones for an attack not listed)."""
    return LABELS.get(attack, GENERIC)


@dataclass(frozen=True)
class HexLine:
    offset: str
    cells: Markup
    text: Markup
    """The ASCII column: printable bytes as themselves, others as ``.``."""


@dataclass(frozen=True)
class HexDump:
    """One buffer as shown, with what it was compared against."""

    key: str
    label: str
    length: int
    lines: tuple[HexLine, ...]
    truncated: bool
    reference: str = ""
    """What it was compared with (``the secret``, ``the attacker's chosen value``)."""
    compared: int = 0
    equal: int = 0
    """Positions equal to the reference."""
    marked: int = 0
    """Positions marked: in meaningful runs."""
    runs: int = 0
    fields: tuple[str, ...] = ()
    """The layout of the buffer, one ``0x00-0x0f mnonce`` per field."""

    @property
    def note(self) -> str:
        """The comparison in words, or ``""`` when the buffer was not compared."""
        if not self.reference:
            return ""
        if self.compared and self.marked == self.compared:
            return (f"All {self.compared} compared bytes equal {self.reference} at the same "
                    "position (marked).")
        text = f"{self.equal} of {self.compared} bytes equal {self.reference} at the same position"
        if self.marked:
            runs = "run" if self.runs == 1 else "runs"
            text += f"; {self.marked} of them in {self.runs} {runs} (marked)"
        rest = self.equal - self.marked
        if rest:
            text += (f"; {rest} not marked: lone bytes (any byte matches 1 time in 256) or "
                     "runs of one repeated value")
        return text + "."


def _mask(data: bytes, reference: bytes) -> tuple[list[bool], int, int]:
    """Which positions to mark, how many positions are equal, and how many runs are marked."""
    n = min(len(data), len(reference))
    equal = [data[i] == reference[i] for i in range(n)]
    shortest = SHORT_RUN if n < SHORT_BUFFER else MIN_RUN
    marks = [False] * n
    runs = 0
    i = 0
    while i < n:
        if not equal[i]:
            i += 1
            continue
        j = i
        while j < n and equal[j]:
            j += 1
        span = data[i:j]
        real = any(b not in DEFENCE_BYTES for b in span)
        if real and (j - i == n or (j - i >= shortest and len(set(span)) > 1)):
            marks[i:j] = [True] * (j - i)
            runs += 1
        i = j
    return marks, sum(equal), runs


def _width(count: int) -> int:
    """Characters the hex of ``count`` bytes of one line takes (the middle gap is two)."""
    return 3 * count - 1 + (1 if count > HEX_ROW // 2 else 0) if count else 0


def _printable(byte: int) -> str:
    return chr(byte) if 0x20 <= byte < 0x7F else "."


def _lines(data: bytes, marks: Sequence[bool]) -> tuple[HexLine, ...]:
    lines: list[HexLine] = []
    for start in range(0, len(data), HEX_ROW):
        hex_parts: list[Markup] = []
        text_parts: list[Markup] = []
        for i in range(start, min(start + HEX_ROW, len(data))):
            if i > start:
                hex_parts.append(escape("  " if i - start == HEX_ROW // 2 else " "))
            cell, char = f"{data[i]:02x}", _printable(data[i])
            if i < len(marks) and marks[i]:
                hex_parts.append(Markup('<mark class="match">{}</mark>').format(cell))
                text_parts.append(Markup('<mark class="match">{}</mark>').format(char))
            else:
                hex_parts.append(escape(cell))
                text_parts.append(escape(char))
        full = HEX_ROW if len(data) > HEX_ROW else len(data)
        filler = escape(" " * (_width(full) - _width(min(HEX_ROW, len(data) - start))))
        lines.append(HexLine(f"{start:04x}", Markup("").join(hex_parts) + filler,
                             Markup("").join(text_parts)))
    return tuple(lines)


def hex_dump(key: str, label: str, data: bytes, reference: bytes | None = None,
             reference_name: str = "", fields: Sequence[Field] = ()) -> HexDump:
    """``data`` as hex and ASCII lines; meaningful runs equal to ``reference`` marked."""
    shown = data[:HEX_LIMIT]
    marks: list[bool] = []
    equal = runs = compared = 0
    if reference is not None:
        marks, equal, runs = _mask(data, reference)
        compared = min(len(data), len(reference))
    layout = tuple(f"{f.offset:#04x}-{min(f.offset + f.length, len(data)) - 1:#04x} {f.name}"
                   for f in fields if f.offset < len(data))
    return HexDump(key=key, label=label, length=len(data), lines=_lines(shown, marks),
                   truncated=len(data) > HEX_LIMIT,
                   reference=reference_name if reference is not None else "",
                   compared=compared, equal=equal, marked=sum(marks), runs=runs, fields=layout)


def _target(labels: EvidenceLabels, metrics: Mapping[str, Any]) -> bytes | None:
    if labels.target_metric is None:
        return None
    value = metrics.get(labels.target_metric)
    for system in metrics.get("systems") or ():  # a program's system step keeps its own
        if not isinstance(value, str) and isinstance(system, Mapping):
            value = system.get(labels.target_metric)
    if not isinstance(value, str):
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def evidence_views(attack: str | EvidenceLabels, evidence: Evidence,
                   metrics: Mapping[str, Any]) -> tuple[HexDump, ...]:
    """The buffers of one result, labelled for ``attack`` (its kind, or the labels
    themselves), each compared where that makes sense (``metrics``: the row's metrics as JSON,
    for the attacker's chosen value)."""
    labels = labels_for(attack) if isinstance(attack, str) else attack
    secret = evidence.secret
    out: list[HexDump] = []
    target = _target(labels, metrics)
    if secret is not None:
        out.append(hex_dump("secret", labels.secret, secret))
    if target is not None:
        out.append(hex_dump("target", "The value the attacker chose for the victim to read",
                            target))
    if evidence.captured is not None:
        compare = secret if labels.compare_captured else None
        out.append(hex_dump("captured", labels.captured, evidence.captured, compare,
                            labels.secret_name, labels.layout(metrics)))
    if evidence.recovered is not None:
        if target is not None:
            out.append(hex_dump("recovered", labels.recovered, evidence.recovered, target,
                                "the attacker's chosen value"))
        else:
            out.append(hex_dump("recovered", labels.recovered, evidence.recovered, secret,
                                labels.secret_name))
    return tuple(out)
