"""What the steps that set up domains, pages and secrets, and read memory, do on the machine."""

from __future__ import annotations

from ..attacks._base import make_secret
from ..errors import AttackError
from ..platform import Domain, DomainKind, EngineWithKeyIds
from ..text import plural
from ..types import PAGE_SIZE, Pfn, PhysAddr
from ._args import AllocPages, CreateDomain, DestroyDomain, FreePages
from ._args_memory import (
    GuestRead,
    ReadDirectMap,
    ReadKeyidMap,
    ReadOwn,
    ReadUninit,
    Store,
    StoreSecret,
)
from ._runtime import Runtime
from ._values import Location

__all__ = [
    "alloc_pages", "create_domain", "destroy_domain", "free_pages", "guest_read",
    "read_direct_map", "read_keyid_map", "read_own", "read_uninit", "store", "store_secret",
]


def _frame(pa: int) -> PhysAddr:
    return PhysAddr(pa - pa % PAGE_SIZE)


def _gpns(domain: Domain, addrs: tuple[PhysAddr, ...]) -> tuple[int, ...]:
    if domain.kind is not DomainKind.GUEST:
        return ()
    by_frame = {pfn: gpn for gpn, pfn in domain.npt.items()}
    return tuple(by_frame[Pfn(pa // PAGE_SIZE)] for pa in addrs)


def create_domain(rt: Runtime, args: CreateDomain) -> Domain:
    engine = rt.machine.engine
    retries = engine.pconfig_retries if isinstance(engine, EngineWithKeyIds) else 0
    domain = rt.machine.create_domain(args.kind, rt.name or rt.who)
    detail = f"{domain.kind.value} with key slot {domain.slot}"
    if isinstance(engine, EngineWithKeyIds) and engine.pconfig_retries > retries:
        again = plural(engine.pconfig_retries - retries, "time")
        detail += f"; PCONFIG was retried {again} (ENTROPY_ERROR or DEVICE_BUSY)"
    rt.note(f"creates a {args.kind}", detail=detail)
    return domain


def alloc_pages(rt: Runtime, args: AllocPages) -> Location:
    m, domain = rt.machine, rt.domain(args.domain)
    if args.until is None:
        addrs = tuple(m.alloc_page(domain, secret=args.secret) for _ in range(args.count))
        rt.note(f"allocates {plural(args.count, 'page')}", addrs[0],
                f"{domain.kind.value} with key slot {domain.slot}")
        return Location(addrs, domain, PAGE_SIZE, _gpns(domain, addrs))
    target = rt.location(args.until)
    pa = target.addrs[0]
    tries = 0
    while tries < args.count:
        tries += 1
        if m.alloc_page(domain, secret=args.secret) == _frame(pa):
            break
    else:
        raise AttackError(f"{domain.name} did not get frame {pa // PAGE_SIZE} back in "
                          f"{plural(args.count, 'allocation')}")
    rt.note(f"gains ownership of the address of {args.until}", pa,
            f"{plural(tries, 'allocation')}; {domain.kind.value} with key slot {domain.slot}")
    size = target.size if len(target.addrs) == 1 else PAGE_SIZE
    addrs = (PhysAddr(pa),)
    return Location(addrs, domain, size, _gpns(domain, (_frame(pa),)))


def free_pages(rt: Runtime, args: FreePages) -> None:
    loc = rt.location(args.address)
    pages = range(len(loc.addrs)) if args.page is None else [args.page]
    for page in pages:
        rt.machine.free_page(loc.domain, _frame(loc.addrs[page]))
    init = "on" if rt.machine.mitigations.init_on_free else "off"
    rt.note(f"frees {plural(len(pages), 'page')}", loc.addrs[pages[0]], f"init_on_free={init}")


def destroy_domain(rt: Runtime, args: DestroyDomain) -> None:
    domain = rt.domain(args.domain)
    rt.machine.destroy_domain(domain)
    init = "on" if rt.machine.mitigations.init_on_free else "off"
    rt.note("exits: its pages return to the free list and its key is released",
            detail=f"init_on_free={init}")


def store_secret(rt: Runtime, args: StoreSecret) -> Location:
    pa, loc = rt.place(args)
    if args.digits is not None:
        pin = int(rt.ctx.rng.integers(0, 10**args.digits))
        secret = f"{args.prefix}{pin:0{args.digits}d}".encode()
        what, rt.secret_kind = f"a {args.digits}-digit PIN", "PIN"
    else:
        secret = make_secret(rt.ctx.rng, args.text, args.size or 0)
        what = f"a {len(secret)}-byte secret"
    buffer = secret.ljust(args.pad_to or 0, b"\0")
    rt.machine.write(loc.domain, pa, buffer)
    rt.secret, rt.space_log2 = secret, args.space_log2
    rt.ctx.log.secret, rt.ctx.log.address = secret, pa
    rt.victim_writes[(loc.domain.name, pa)] = buffer
    rt.note(f"stores {what}", pa, f"{loc.domain.kind.value} with key slot {loc.domain.slot}")
    return rt.within(loc, args.page, pa, len(secret), secret)


def store(rt: Runtime, args: Store) -> Location | None:
    pa, loc = rt.place(args)
    data = args.literal() if args.value is None else rt.data(args.value)
    if data is None:
        rt.note(f"has nothing to write ({args.value} holds no value)", pa)
        return None
    rt.machine.write(loc.domain, pa, data)
    if rt.who == "victim":
        rt.victim_writes[(loc.domain.name, pa)] = data
    rt.note(f"writes {len(data)} bytes to its own page", pa, _short(data))
    return rt.within(loc, args.page, pa, len(data), data)


def read_own(rt: Runtime, args: ReadOwn) -> bytes:
    pa, loc = rt.place(args)
    data = rt.machine.read(loc.domain, pa, rt.length(args, loc))
    rt.note(f"reads {len(data)} bytes of its own page", pa)
    return data


def read_uninit(rt: Runtime, args: ReadUninit) -> bytes:
    pa, loc = rt.place(args)
    data = rt.machine.read(loc.domain, pa, rt.length(args, loc))
    rt.note("reads the reallocated page before writing it", pa,
            f"{loc.domain.kind.value} with key slot {loc.domain.slot}")
    return data


def read_direct_map(rt: Runtime, args: ReadDirectMap) -> bytes:
    pa, loc = rt.place(args)
    va = rt.machine.direct_map.virt(pa)
    rt.note("reads the page through the KeyID-0 kernel direct map", pa,
            f"virtual address {va:#x}")
    return rt.machine.kernel_read(va, rt.length(args, loc))


def read_keyid_map(rt: Runtime, args: ReadKeyidMap) -> bytes:
    pa, loc = rt.place(args)
    slot = rt.domain(args.keyid_of).slot
    va = rt.machine.keyid_direct_map(slot).virt(pa)
    rt.note(f"reads the frame through a kernel mapping with the KeyID of {args.keyid_of}", pa,
            f"key slot {slot}")
    return rt.machine.kernel_read(va, rt.length(args, loc))


def guest_read(rt: Runtime, args: GuestRead) -> bytes:
    pa, loc = rt.place(args)
    if args.page >= len(loc.gpns):
        raise AttackError(f"{args.address} is not a guest page")
    gpa = loc.gpns[args.page] * PAGE_SIZE + pa % PAGE_SIZE
    rt.note("reads its page through its nested page table", pa, f"guest-physical {gpa:#x}")
    return rt.machine.guest_read(loc.domain, gpa, rt.length(args, loc))


def _short(data: bytes) -> str:
    """The first bytes of ``data`` in hexadecimal, for the log."""
    return data[:16].hex() + ("…" if len(data) > 16 else "")
