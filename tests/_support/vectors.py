"""Loaders for the known-answer vector files, returning typed records for ``parametrize``.

* :func:`load_nist_xts`: a NIST CAVS XTSGen ``.rsp`` file shipped by ``cryptography_vectors``
  (``[ENCRYPT]``/``[DECRYPT]`` sections of ``name = value`` blocks, each opened by ``COUNT``).
* :func:`load_ieee1619`: the IEEE Std 1619-2007 Annex B file in ``tests/vectors/`` (blocks of
  ``NAME = value`` lines separated by blank lines, ``#`` comments).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cryptography_vectors

BLOCK = 16

NistSource = Literal["hexstr", "dusn"]
NIST_XTS_FILES: dict[NistSource, str] = {
    "hexstr": os.path.join("ciphers", "AES", "XTS", "tweak-128hexstr", "XTSGenAES128.rsp"),
    "dusn": os.path.join("ciphers", "AES", "XTS", "tweak-dataunitseqno", "XTSGenAES128.rsp"),
}
"""The two XTSGenAES128 files: the tweak as a raw 128-bit value, or as a data-unit number."""


@dataclass(frozen=True)
class NistXtsVector:
    """One CAVS XTS vector."""

    source: NistSource
    section: str  # "ENCRYPT" or "DECRYPT"
    count: int
    bits: int  # DataUnitLen
    key: bytes
    tweak: bytes  # 16 bytes, as handed to modes.XTS
    pt: bytes
    ct: bytes

    @property
    def id(self) -> str:
        return f"{self.source}-{self.section.lower()}-{self.count}"

    @property
    def tweak_int(self) -> int:
        return int.from_bytes(self.tweak, "little")


@dataclass(frozen=True)
class Ieee1619Vector:
    """One IEEE 1619 Annex B vector: a whole data unit under ``key`` at sequence number ``dusn``."""

    number: int
    key: bytes
    dusn: int
    pt: bytes
    ct: bytes

    @property
    def id(self) -> str:
        return f"vector{self.number}"

    @property
    def tweak(self) -> bytes:
        return self.dusn.to_bytes(BLOCK, "little")


def _nist_vector(source: NistSource, section: str, fields: dict[str, str]) -> NistXtsVector:
    if "i" in fields:
        tweak = bytes.fromhex(fields["i"])
    else:
        tweak = int(fields["DataUnitSeqNumber"]).to_bytes(BLOCK, "little")
    return NistXtsVector(
        source=source,
        section=section,
        count=int(fields["COUNT"]),
        bits=int(fields["DataUnitLen"]),
        key=bytes.fromhex(fields["Key"]),
        tweak=tweak,
        pt=bytes.fromhex(fields["PT"]),
        ct=bytes.fromhex(fields["CT"]),
    )


def parse_nist_xts(source: NistSource, text: str) -> list[NistXtsVector]:
    """The vectors of a CAVS XTSGen response text, in file order."""
    vectors: list[NistXtsVector] = []
    section = ""
    fields: dict[str, str] = {}

    def flush() -> None:
        if fields:
            vectors.append(_nist_vector(source, section, fields))
            fields.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            flush()
            section = line.strip("[]")
            continue
        name, _, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if name == "COUNT":
            flush()
        fields[name] = value
    flush()
    return vectors


def load_nist_xts(source: NistSource) -> list[NistXtsVector]:
    """The vectors of the XTSGenAES128 file ``source`` from ``cryptography_vectors``."""
    with cryptography_vectors.open_vector_file(NIST_XTS_FILES[source], "r") as fh:
        return parse_nist_xts(source, fh.read())


def load_ieee1619(path: Path) -> list[Ieee1619Vector]:
    """The vectors of an IEEE 1619 Annex B file, in file order."""
    out: list[Ieee1619Vector] = []
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
        if not lines:
            continue
        f = {k.strip(): v.strip() for k, _, v in (ln.partition("=") for ln in lines)}
        out.append(
            Ieee1619Vector(
                number=int(f["VECTOR"]),
                key=bytes.fromhex(f["KEY"]),
                dusn=int(f["DUSN"], 16),
                pt=bytes.fromhex(f["PT"]),
                ct=bytes.fromhex(f["CT"]),
            )
        )
    return out
