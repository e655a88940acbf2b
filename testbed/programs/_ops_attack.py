"""What the bus, hypervisor and kernel steps and the transforms do."""

from __future__ import annotations

from ..errors import AttackError
from ..types import LINE_SIZE, PAGE_SIZE, Pfn
from ._args_attack import (
    Capture,
    Concat,
    Constant,
    HvRead,
    HvWrite,
    Reboot,
    RemapGuestPage,
    RequestPage,
    RotateKey,
    Serve,
    Slice,
    WriteBus,
    Xor,
)
from ._runtime import Runtime

__all__ = [
    "capture", "concat", "constant", "hv_read", "hv_write", "reboot", "record", "remap_guest_page",
    "request_page", "rotate_key", "serve", "slice_bytes", "write_bus", "xor",
]


def record(rt: Runtime, data: bytes) -> None:
    """The first thing the attacker captured is the run's evidence of what it saw."""
    if not rt.captured:
        rt.ctx.log.captured, rt.captured = data, True


def capture(rt: Runtime, args: Capture) -> bytes:
    pa, loc = rt.place(args)
    span = -(-rt.length(args, loc) // LINE_SIZE) * LINE_SIZE
    data = rt.machine.bus.read(pa, span)
    record(rt, data)
    rt.note(f"captures {span} bytes of ciphertext on the memory bus", pa)
    return data


def write_bus(rt: Runtime, args: WriteBus) -> None:
    pa, _ = rt.place(args)
    data = rt.data(args.data)
    if data is None:
        rt.note(f"has nothing to write ({args.data} holds no value)", pa)
        return
    rt.machine.bus.write(pa, data)
    rt.note(f"drives {len(data)} bytes onto the memory bus", pa)


def hv_read(rt: Runtime, args: HvRead) -> bytes:
    pa, loc = rt.place(args)
    data = rt.machine.hypervisor_read(pa, rt.length(args, loc))
    record(rt, data)
    rt.note("reads guest memory through its own mapping", pa, f"{len(data)} bytes")
    return data


def hv_write(rt: Runtime, args: HvWrite) -> None:
    pa, _ = rt.place(args)
    data = rt.data(args.data)
    if data is None:
        rt.note(f"has nothing to write ({args.data} holds no value)", pa)
        return
    rt.note("writes guest memory through its own mapping", pa, f"{len(data)} bytes")
    rt.machine.hypervisor_write(pa, data)


def remap_guest_page(rt: Runtime, args: RemapGuestPage) -> None:
    pa, loc = rt.resolve(args.address, args.page, 0)
    if args.page >= len(loc.gpns):
        raise AttackError(f"{args.address} is not a guest page")
    to = rt.location(args.to)
    if args.to_page >= len(to.addrs):
        raise AttackError(f"{args.to} has no page {args.to_page}")
    pfn = Pfn(to.addrs[args.to_page] // PAGE_SIZE)
    gpn = loc.gpns[args.page]
    rt.machine.hypervisor_remap(loc.domain, gpn, pfn)
    rt.note(f"points guest page {gpn} at frame {pfn} in the nested page table", pa)


def serve(rt: Runtime, args: Serve) -> None:
    pa, loc = rt.resolve(args.address, args.page, 0)
    if args.page >= len(loc.gpns):
        raise AttackError(f"{args.address} is not a guest page")
    rt.note(f"runs a network service that returns its guest page {loc.gpns[args.page]} to "
            "whoever asks", pa)


def request_page(rt: Runtime, args: RequestPage) -> bytes:
    pa, loc = rt.place(args)
    if args.page >= len(loc.gpns):
        raise AttackError(f"{args.address} is not a guest page")
    gpn = loc.gpns[args.page]
    frame = loc.domain.npt.get(gpn)
    behind = "unmapped" if frame is None else f"frame {frame}"
    # Logged once the guest has read the page: a refused read leaves the refusal in its place.
    data = rt.machine.guest_read(loc.domain, gpn * PAGE_SIZE + pa % PAGE_SIZE,
                                 rt.length(args, loc))
    rt.note(f"asks the guest's network service for its guest page {gpn}: the guest reads it "
            "through its nested page table and sends it out", pa, f"guest page {gpn} -> {behind}")
    record(rt, data)
    return data


def rotate_key(rt: Runtime, args: RotateKey) -> None:
    domain = rt.domain(args.domain)
    rt.machine.rotate_domain_key(domain)
    rt.note(f"rotates the key of {args.domain} and re-encrypts its pages",
            detail=f"key slot {domain.slot}")


def reboot(rt: Runtime, args: Reboot) -> None:
    rt.reboot()
    rt.note("reboots the machine: new keys, memory contents lost")


def constant(rt: Runtime, args: Constant) -> bytes:
    data = args.literal()
    assert data is not None  # the model gives text or hex
    rt.note(f"writes down {len(data)} known bytes")
    return data


def slice_bytes(rt: Runtime, args: Slice) -> bytes | None:
    data = rt.data(args.value)
    rt.note(f"takes bytes {args.start}..{args.start + args.length - 1} of {args.value}")
    if data is None:
        return None
    if args.start + args.length > len(data):
        raise AttackError(f"{args.value} has {len(data)} bytes, fewer than "
                          f"{args.start + args.length}")
    return data[args.start : args.start + args.length]


def xor(rt: Runtime, args: Xor) -> bytes | None:
    a, b = rt.data(args.a), rt.data(args.b)
    rt.note(f"xors {args.a} with {args.b}")
    if a is None or b is None:
        return None
    if len(a) != len(b):
        raise AttackError(f"xor of {len(a)} and {len(b)} bytes")
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def concat(rt: Runtime, args: Concat) -> bytes | None:
    parts = [rt.data(ref) for ref in args.values]
    rt.note(f"joins {', '.join(args.values)}")
    if any(p is None for p in parts):
        return None
    return b"".join(p for p in parts if p is not None)
