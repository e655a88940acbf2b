"""Physical memory (what the DRAM chips hold) and the bus tap of a physical attacker.

Physical addresses and DRAM cells are apart: the memory controller decodes a physical address
into a cell of the DIMM. On a sound DIMM the decoding is the identity. A DIMM whose SPD chip
was reprogrammed to report twice its capacity (De Meulemeester et al., "BadRAM: Practical
Memory Aliasing Attacks on Trusted Execution Environments", IEEE S&P 2025) ignores one address
bit, so two physical addresses reach one cell: :meth:`PhysicalMemory.alias` installs such a
decoding (:mod:`.aliasing` models the reprogramming and the boot-time check). Without an alias
the decoding costs nothing: a load or store slices the cells at the address itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ...errors import ConfigError
from ...types import LINE_SIZE, PAGE_SIZE

__all__ = ["BusTap", "Capture", "PhysicalMemory"]


class PhysicalMemory:
    """DRAM: a flat byte array holding exactly what an engine wrote (ciphertext where it encrypts).

    Args:
        pages: number of 4 KiB page frames of physical addresses.
    """

    def __init__(self, pages: int) -> None:
        if pages <= 0:
            raise ConfigError(f"memory_pages: must be positive, got {pages}")
        self.pages = pages
        self.size = pages * PAGE_SIZE
        self._cells = np.zeros(self.size, dtype=np.uint8)
        self.ignored_bit: int | None = None
        """The physical-address bit the DIMM ignores (``None``: every address its own cell)."""

    def alias(self, bit: int) -> None:
        """Decode physical addresses as a DIMM that ignores address bit ``bit``: the addresses
        ``pa`` and ``pa ^ 2**bit`` reach the same cell.

        Raises:
            ConfigError: ``bit`` is below a page or does not fall inside memory.
        """
        if not PAGE_SIZE <= 1 << bit < self.size:
            raise ConfigError(f"alias bit: 2^{bit} must be a multiple of a page inside memory "
                              f"of {self.size:#x} bytes")
        self.ignored_bit = bit

    def cell(self, pa: int) -> int:
        """The cell address ``pa`` decodes to."""
        return pa if self.ignored_bit is None else pa & ~(1 << self.ignored_bit)

    def alias_of(self, pa: int) -> int | None:
        """The other physical address of ``pa``'s cell, inside memory (``None``: none)."""
        if self.ignored_bit is None:
            return None
        other = pa ^ (1 << self.ignored_bit)
        return other if other < self.size else None

    def _line_cells(self, addrs: NDArray[np.uint64]) -> NDArray[np.int64]:
        """The cell line index of each line address (checked in range and aligned)."""
        a = np.asarray(addrs, dtype=np.uint64)
        if a.size and (int(a.max()) + LINE_SIZE > self.size or (a % LINE_SIZE).any()):
            raise ConfigError(f"line addresses must be {LINE_SIZE}-byte aligned inside memory "
                              f"of {self.size:#x}")
        if self.ignored_bit is not None:
            a = a & np.uint64(~(1 << self.ignored_bit) & (2**64 - 1))
        return (a // LINE_SIZE).astype(np.int64)

    def store_lines(self, addrs: NDArray[np.uint64], lines: NDArray[np.uint8]) -> None:
        """Put line ``i`` at ``addrs[i]``, in order: of several lines reaching one cell, the
        last one stays."""
        cells = self._line_cells(addrs)
        _, last = np.unique(cells[::-1], return_index=True)
        keep = cells.size - 1 - last
        self._cells.reshape(-1, LINE_SIZE)[cells[keep]] = np.asarray(lines, np.uint8)[keep]

    def load_lines(self, addrs: NDArray[np.uint64]) -> NDArray[np.uint8]:
        """The raw line at each of ``addrs``, as ``(n, 64)`` lines (a copy)."""
        return self._cells.reshape(-1, LINE_SIZE)[self._line_cells(addrs)]

    def check(self, pa: int, length: int) -> None:
        """Raise :class:`ConfigError` unless ``[pa, pa+length)`` is line-aligned and in range."""
        if pa < 0 or length < 0 or pa + length > self.size:
            raise ConfigError(
                f"physical range {pa:#x}+{length:#x} outside memory of {self.size:#x}"
            )
        if pa % LINE_SIZE or length % LINE_SIZE:
            raise ConfigError(f"physical range {pa:#x}+{length:#x} is not {LINE_SIZE}-byte aligned")

    def _pieces(self, pa: int, length: int) -> Iterator[tuple[int, int, int]]:
        """(offset in the range, cell address, bytes) of each piece of ``[pa, pa+length)``
        that decodes to consecutive cells (the range split where the ignored bit flips)."""
        assert self.ignored_bit is not None
        span = 1 << self.ignored_bit
        done = 0
        while done < length:
            at = pa + done
            count = min(length - done, span - at % span)
            yield done, self.cell(at), count
            done += count

    def load(self, pa: int, length: int) -> NDArray[np.uint8]:
        """Raw bytes at ``pa`` as ``(length // 64, 64)`` lines (a copy)."""
        self.check(pa, length)
        if self.ignored_bit is None:
            return self._cells[pa : pa + length].reshape(-1, LINE_SIZE).copy()
        out = np.empty(length, dtype=np.uint8)
        for done, cell, count in self._pieces(pa, length):
            out[done : done + count] = self._cells[cell : cell + count]
        return out.reshape(-1, LINE_SIZE)

    def store(self, pa: int, lines: NDArray[np.uint8]) -> None:
        """Put raw bytes at ``pa`` (no encryption: this is the DRAM itself)."""
        flat = np.asarray(lines, dtype=np.uint8).reshape(-1)
        self.check(pa, flat.size)
        if self.ignored_bit is None:
            self._cells[pa : pa + flat.size] = flat
            return
        for done, cell, count in self._pieces(pa, flat.size):
            self._cells[cell : cell + count] = flat[done : done + count]


@dataclass(frozen=True)
class Capture:
    """One read or write the interposer made on the memory bus."""

    op: str
    address: int
    data: bytes


class BusTap:
    """A DDR interposer ("evil DIMM"): reads and writes raw DRAM lines and logs what it did.

    The log keeps at most ``log_limit`` entries (reads of large ranges are logged whole);
    :attr:`lines_read` and :attr:`lines_written` count everything.
    """

    def __init__(self, memory: PhysicalMemory, log_limit: int = 256) -> None:
        self._memory = memory
        self.log: list[Capture] = []
        self.log_limit = log_limit
        self.lines_read = 0
        self.lines_written = 0

    def _record(self, op: str, pa: int, data: bytes) -> None:
        if len(self.log) < self.log_limit:
            self.log.append(Capture(op, pa, data))

    def read(self, pa: int, length: int) -> bytes:
        """Capture the raw (encrypted) bytes the DRAM holds at ``pa``."""
        raw = self._memory.load(pa, length).tobytes()
        self.lines_read += length // LINE_SIZE
        self._record("read", pa, raw)
        return raw

    def read_lines(self, pa: int, length: int) -> NDArray[np.uint8]:
        """Like :meth:`read` but returns ``(n, 64)`` lines, for batched analysis."""
        raw = self._memory.load(pa, length)
        self.lines_read += raw.shape[0]
        self._record("read", pa, raw[:1].tobytes())
        return raw

    def write(self, pa: int, data: bytes) -> None:
        """Drive raw bytes onto the bus at ``pa``, bypassing every engine and check."""
        lines = np.frombuffer(data, dtype=np.uint8)
        self._memory.store(pa, lines)
        self.lines_written += lines.size // LINE_SIZE
        self._record("write", pa, bytes(data))
