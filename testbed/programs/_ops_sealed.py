"""What the bus steps that carry a line's sideband (ECC) bits with its data do on the machine."""

from __future__ import annotations

import numpy as np

from ..types import LINE_SIZE, PhysAddr
from ._args_sealed import SEALED_LINE, CaptureSealed, WriteSealed
from ._ops_attack import record
from ._runtime import Runtime

__all__ = ["capture_sealed", "write_sealed"]


def capture_sealed(rt: Runtime, args: CaptureSealed) -> bytes:
    pa, loc = rt.place(args)
    span = -(-rt.length(args, loc) // LINE_SIZE) * LINE_SIZE
    lines = np.frombuffer(rt.machine.bus.read(pa, span), dtype=np.uint8).reshape(-1, LINE_SIZE)
    words = rt.machine.bus_sideband(pa, span).astype("<u8").view(np.uint8).reshape(-1, 8)
    data = np.concatenate([lines, words], axis=1).tobytes()
    record(rt, data)
    rt.note(f"captures {span} bytes of ciphertext and their sideband bits on the memory bus",
            pa)
    return data


def write_sealed(rt: Runtime, args: WriteSealed) -> None:
    pa, _ = rt.place(args)
    data = rt.data(args.data)
    if data is None:
        rt.note(f"has nothing to write ({args.data} holds no value)", pa)
        return
    sealed = np.frombuffer(data, dtype=np.uint8).reshape(-1, SEALED_LINE)
    words = np.ascontiguousarray(sealed[:, LINE_SIZE:]).view("<u8").reshape(-1)
    rt.machine.bus.write(pa, sealed[:, :LINE_SIZE].tobytes())
    rt.machine.bus_write_sideband(PhysAddr(pa), words.astype(np.uint64))
    rt.note(f"drives {sealed.shape[0]} lines and their sideband bits onto the memory bus", pa)
