"""Attestation bypass: get the guest owner's secret into a guest image the hypervisor modified.

Threat: a malicious hypervisor builds the guest from the owner's launch image and carries every
message between the owner and the platform. It inserts a backdoor into the kernel command line
before launch, then has to get past the owner's attestation, because the owner releases its
secret (a disk key) only to a guest whose report it accepted. ``tamper`` picks the answer the
hypervisor gives to the owner's attestation request: ``image`` forwards the genuine report (the
PSP measured the modified image), ``replay`` returns a genuine report recorded at an earlier,
unmodified boot, ``forge`` returns a report claiming the genuine digest, signed with a PEK of
the hypervisor's own making.
Source: B. Singh, "[PATCH] target/i386/sev: add the support to query the attestation report"
(qemu-devel, 4 December 2020), and its review thread.
Preconditions: capability ``malicious_hypervisor``. Where the engine attests
(:attr:`~testbed.platform.Engine.attests`), a PSP measures the launch and signs reports with a
PEK certified up to the vendor's root, and the owner's
:class:`~testbed.platform.Verifier` checks the chain, the signature, the nonce, the digest
and the policy; a failed check refuses the secret and the attack is ``blocked``. Without a PSP
the owner can check nothing: its policy there is to trust the host, and the backdoor receives
the secret.

The run is :func:`attest` and its outcome :func:`judge_attestation`, which the attack programs'
``attest`` step and ``accepted`` goal share.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Literal

from pydantic import Field, model_validator

from ..crypto.signing import DETERMINISTIC_SIGNING, KEY_SEED_SIZE, SigningKey
from ..errors import AttackError, ConfigError, VerificationFailed
from ..platform import (
    POLICY_NODBG,
    SIGNATURE_OFFSET,
    AttestationReport,
    Certificate,
    Domain,
    KeyUsage,
    Psp,
    SevAttestationReport,
    SevReport,
    Vendor,
    Verifier,
    decode_mnonce,
    issue_certificate,
    query_attestation_report,
    sign_report,
)
from ..results import chance_text, omitted_when_none
from ..types import PAGE_SIZE, Outcome, PhysAddr
from ._base import (
    Actor,
    Attack,
    AttackContext,
    BaseMetrics,
    SecretParams,
    Verdict,
    judge_bytes,
    make_secret,
)
from .cost import MachineShape, Work, run_part

__all__ = [
    "AttestationBypass",
    "AttestationMetrics",
    "AttestationParams",
    "Provisioned",
    "attest",
    "judge_attestation",
]

CMDLINE_SIZE = 256
"""The image starts with the kernel command line, NUL-padded to this many bytes."""
MAX_IMAGE_PAGES = 16
LAUNCH_UNITS = 12_000
"""Work units of one launch and attestation: the vendor's and the PSP's keys, the
certificate chain, signing and verifying (:mod:`testbed.attacks.cost`)..."""
IMAGE_PAGE_UNITS = 500
"""...and per page of the launch image, written, measured and read back."""



def _guest(name: str) -> str:
    """A launched guest by its name, for the timeline: ``victim`` -> ``victim guest``."""
    return f"{name.replace('-', ' ')} guest"

class AttestationParams(SecretParams):
    """cmdline + backdoor stay under 256 bytes of UTF-8."""

    tamper: Literal["image", "replay", "forge"] = Field(
        "image", description="how the hypervisor answers the owner's attestation request",
    )
    image_bytes: int = Field(8192, ge=2 * CMDLINE_SIZE, le=MAX_IMAGE_PAGES * PAGE_SIZE,
                             description="size of the launch image (command line + kernel)")
    cmdline: str = Field("console=ttyS0 root=/dev/vda1 ro quiet", min_length=1, max_length=200,
                         description="the owner's kernel command line")
    backdoor: str = Field(" init=/usr/lib/.hv/backdoor", min_length=1, max_length=200,
                          description="text the hypervisor appends to the kernel command line")
    policy: int = Field(POLICY_NODBG, ge=0, le=0xFFFF_FFFF,
                        description="guest policy the owner asks for and expects in the report")

    @model_validator(mode="after")
    def _cmdline_fits(self) -> AttestationParams:
        size = len((self.cmdline + self.backdoor).encode("utf-8"))
        if size >= CMDLINE_SIZE:
            raise ValueError(f"cmdline + backdoor must be under {CMDLINE_SIZE} bytes in UTF-8, "
                             f"got {size}")
        return self

    @property
    def image_pages(self) -> int:
        return -(-self.image_bytes // PAGE_SIZE)

    def pages_needed(self) -> int:
        # The image, plus the page the secret goes to (an earlier boot is gone by then).
        return self.image_pages + 1

    def work(self, machine: MachineShape) -> Work:
        """One launch, two with ``replay`` (the earlier boot it records), each with its
        image."""
        launches = 2 if self.tamper == "replay" else 1
        per_launch = LAUNCH_UNITS + IMAGE_PAGE_UNITS * self.image_pages
        return Work((run_part(machine),
                     (f"{launches} launch(es) of a {self.image_pages}-page image",
                      launches * per_launch)),
                    hint="lower params.image_bytes")


@dataclass
class _Launched:
    guest: Domain
    frames: list[PhysAddr]
    handle: int = 0
    digest: bytes | None = None


@dataclass(frozen=True)
class AttestationMetrics(BaseMetrics):
    tamper: str
    attestation_available: bool
    """Whether a PSP measured the launch and signed a report."""
    report_bytes: int
    checks_passed: int
    """Checks of the owner's verifier passed before it accepted or rejected."""
    check_failed: str | None
    digest_expected: str
    digest_measured: str | None
    digest_reported: str | None
    secret_provisioned: bool
    guest_runs_modified_image: bool | None = omitted_when_none()


class AttestationBypass(Attack[AttestationParams]):
    kind = "attestation"
    title = "Attestation bypass (modified image, replayed or forged report)"
    capabilities = ("malicious_hypervisor",)
    Params = AttestationParams
    Metrics = AttestationMetrics
    platform_settings = frozenset()

    def run(self, ctx: AttackContext, params: AttestationParams) -> Verdict:
        return judge_attestation(attest(ctx, params))


@dataclass(frozen=True)
class Provisioned:
    """What the owner did with its secret once it trusted the guest.

    Attributes:
        basis: on what grounds it trusted the guest (a report it accepted, or nothing to
            check without a PSP).
        secret: the owner's disk key.
        runs_modified: whether the guest runs the hypervisor's modified image.
        leaked: what the backdoor read of the key and sent out (``None``: no backdoor ran).
    """

    basis: str
    secret: bytes
    runs_modified: bool
    leaked: bytes | None


def attest(ctx: AttackContext, params: AttestationParams) -> Provisioned:
    """The owner hands the host its image; the hypervisor launches it with a backdoor on
    ``ctx.machine`` and answers the owner's attestation request as ``params.tamper`` says; the
    owner releases its disk key to a guest it trusts. The metrics go to ``ctx.log``.

    Raises:
        VerificationFailed: the owner's verifier rejected the report (the attack is blocked).
    """
    m, log = ctx.machine, ctx.log
    image = _image(ctx, params)
    secret = make_secret(ctx.rng, params.secret, params.secret_bytes)
    vendor = Vendor(ctx.rng)
    psp = Psp(m, vendor) if m.engine.attests else None
    expected = hashlib.sha256(image).digest()
    metrics = AttestationMetrics(
        tamper=params.tamper, attestation_available=psp is not None, report_bytes=0,
        checks_passed=0, check_failed=None, digest_expected=expected.hex(),
        digest_measured=None, digest_reported=None, secret_provisioned=False)
    run = _Run(ctx, params, psp, image, expected, vendor, metrics)
    log.secret = secret
    log.step(Actor.OWNER, "hands the host its image and keeps the digest it expects",
             detail=f"{len(image)} bytes, SHA-256 {run.expected.hex()}, policy "
                    f"{params.policy:#x}, command line {params.cmdline!r}")
    recorded = run.earlier_boot() if params.tamper == "replay" else None

    modified = _modified(image, params)
    log.begin_attack()
    log.step(Actor.ATTACKER, "writes a backdoor into the kernel command line before launch",
             "malicious_hypervisor", detail=repr(params.cmdline + params.backdoor))
    with log.victim_acts():  # the victim's guest is built: no ASID for it is no defence
        launched = run.launch(modified, "victim")
    run.note(replace(run.metrics, digest_measured=None if launched.digest is None
                     else launched.digest.hex()))
    # What the guest will run, read back through its own key.
    running = b"".join(m.read(launched.guest, pa, len(chunk))
                       for pa, chunk in zip(launched.frames, _pages(modified), strict=True))
    runs_modified = running != image
    run.note(replace(run.metrics, guest_runs_modified_image=runs_modified))
    basis = run.attest(launched, recorded)
    return run.provision(launched, secret, basis, runs_modified=runs_modified)


def judge_attestation(done: Provisioned) -> Verdict:
    """``succeeded`` when the backdoor handed over the owner's disk key, judged by
    :func:`~testbed.attacks.judge_bytes`."""
    if not done.runs_modified:
        return Verdict(Outcome.MITIGATED, "the guest runs the owner's image: no backdoor ran "
                                          "to receive the key")
    verdict = judge_bytes(done.secret, done.leaked, "disk key")
    if verdict.outcome is Outcome.SUCCEEDED:
        return Verdict(Outcome.SUCCEEDED, f"{done.basis}: the owner released its disk key to a "
                       "guest running the hypervisor's modified image, and the backdoor handed "
                       f"it over (by chance {chance_text(verdict.chance_log2)})",
                       verdict.chance_log2)
    return verdict


@dataclass
class _Run:
    """One run: the machine and its PSP (if any), the owner's image and its verifier."""

    ctx: AttackContext
    params: AttestationParams
    psp: Psp | None
    image: bytes
    expected: bytes
    vendor: Vendor
    metrics: AttestationMetrics
    owner: Verifier = field(init=False)

    def __post_init__(self) -> None:
        self.owner = Verifier(self.vendor.root, self.expected, self.params.policy, self.ctx.rng)
        self.note(self.metrics)

    def note(self, metrics: AttestationMetrics) -> None:
        """Keep ``metrics`` as what the run has measured so far."""
        self.metrics = self.ctx.log.metrics = metrics

    def provision(
        self, launched: _Launched, secret: bytes, basis: str, *, runs_modified: bool
    ) -> Provisioned:
        """The owner releases its secret to the guest; a backdoor, if it runs, passes it on."""
        m, log = self.ctx.machine, self.ctx.log
        with log.victim_acts():  # the owner provisions its own guest
            secret_pa = m.alloc_page(launched.guest)
            m.write(launched.guest, secret_pa, secret)
        log.address = secret_pa
        self.note(replace(self.metrics, secret_provisioned=True))
        log.step(Actor.OWNER, "releases its disk key to the guest", address=secret_pa, detail=basis)
        if not runs_modified:
            return Provisioned(basis, secret, runs_modified, None)
        log.recovered = m.read(launched.guest, secret_pa, len(secret))
        log.step(Actor.ATTACKER, "reads the disk key through its backdoor in the guest and "
                 "sends it out",
                 "malicious_hypervisor", secret_pa)
        return Provisioned(basis, secret, runs_modified, log.recovered)

    def launch(self, image: bytes, name: str) -> _Launched:
        """Create a guest and load ``image`` into it, through the PSP where there is one."""
        m, log, psp = self.ctx.machine, self.ctx.log, self.psp
        guest = m.create_domain("guest", name)
        chunks = _pages(image)
        launched = _Launched(guest, [m.alloc_page(guest) for _ in chunks])
        if psp is None:
            for pa, chunk in zip(launched.frames, chunks, strict=True):
                m.write(guest, pa, chunk)
            log.step(Actor.HOST, f"copies the {_guest(name)}'s image into its memory",
                     address=launched.frames[0], detail="nothing measures what was loaded")
            return launched
        launched.handle = psp.launch_start(guest, self.params.policy)
        for pa, chunk in zip(launched.frames, chunks, strict=True):
            psp.launch_update_data(launched.handle, pa, chunk)
        launched.digest = psp.launch_measure(launched.handle)
        psp.launch_finish(launched.handle)
        log.step(Actor.PSP, f"encrypts and measures the {_guest(name)}'s image as it is given",
                 address=launched.frames[0],
                 detail=f"LAUNCH_UPDATE_DATA x{len(chunks)}, LAUNCH_MEASURE: SHA-256 "
                        f"{launched.digest.hex()}")
        return launched

    def earlier_boot(self) -> AttestationReport | None:
        """An unmodified boot the owner attests; the hypervisor keeps the report."""
        m, log, psp, owner = self.ctx.machine, self.ctx.log, self.psp, self.owner
        if psp is None:
            log.step(Actor.OWNER, "earlier boot: ran without attestation",
                     detail="there is no PSP, so no report exists to be recorded")
            return None
        earlier = self.launch(self.image, "earlier-boot")
        nonce = owner.new_nonce()
        reply = query_attestation_report(m, psp, earlier.handle, nonce)
        owner.verify(reply, psp.cert_chain)
        log.step(Actor.OWNER, "earlier boot: verifies the genuine report and accepts it",
                 detail=f"{owner.checks_passed} checks passed; mnonce {nonce}")
        log.begin_attack()
        log.step(Actor.ATTACKER, "keeps a copy of the signed report as it passes through the host",
                 "malicious_hypervisor", detail=f"mnonce {nonce}")
        psp.decommission(earlier.handle)
        m.destroy_domain(earlier.guest)
        return reply

    def attest(self, launched: _Launched, recorded: AttestationReport | None) -> str:
        """The owner asks for a report; returns on what grounds it trusts the guest.

        Raises:
            VerificationFailed: the owner rejected the report it got.
        """
        m, log, psp, owner = self.ctx.machine, self.ctx.log, self.psp, self.owner
        nonce = owner.new_nonce()
        log.step(Actor.OWNER, "asks the host for an attestation report", detail=f"mnonce {nonce}")
        if psp is None:
            try:
                query_attestation_report(m, psp, launched.handle, nonce)
            except ConfigError as exc:
                log.step(Actor.OWNER, "cannot check anything, so it trusts the host (the policy "
                         "where there is no attestation)", detail=str(exc))
                return "no attestation was possible"
            raise AttackError("an attestation report came back from a machine without a PSP")
        reply, chain = self.answer(psp, launched, nonce, recorded)
        data = reply.sev.raw() if reply.sev is not None else b""
        log.captured = data if DETERMINISTIC_SIGNING else data[:SIGNATURE_OFFSET]
        reported = SevReport.unpack(data).launch_digest.hex() if data else None
        self.note(replace(self.metrics, report_bytes=len(data), digest_reported=reported))
        try:
            owner.verify(reply, chain)
        except VerificationFailed as exc:
            self.note(replace(self.metrics, checks_passed=owner.checks_passed,
                              check_failed=owner.results[-1].check.value))
            log.step(Actor.OWNER, "rejects the report and keeps its disk key", detail=str(exc))
            raise
        self.note(replace(self.metrics, checks_passed=owner.checks_passed))
        log.step(Actor.OWNER, "accepts the report", detail=f"{owner.checks_passed} checks passed")
        return "the owner accepted the report"

    def answer(
        self, psp: Psp, launched: _Launched, nonce: str, recorded: AttestationReport | None
    ) -> tuple[AttestationReport, tuple[Certificate, ...]]:
        """What the hypervisor sends back to the owner."""
        log, tamper = self.ctx.log, self.params.tamper
        if tamper == "replay" and recorded is not None:
            log.step(Actor.ATTACKER, "answers with the report recorded at the earlier boot",
                     "malicious_hypervisor", detail=f"the owner asked with mnonce {nonce}")
            return recorded, psp.cert_chain
        if tamper == "forge":
            own = SigningKey(self.ctx.rng.bytes(KEY_SEED_SIZE))
            fake_pek = issue_certificate(KeyUsage.PEK, own.public_key, KeyUsage.CEK, own)
            # The hypervisor hashes the genuine image it was handed: it knows the digest.
            body = SevReport(decode_mnonce(nonce), hashlib.sha256(self.image).digest(),
                             self.params.policy)
            forged = sign_report(body, own).pack()
            log.step(Actor.ATTACKER, "signs a report claiming the genuine digest with its own PEK",
                     "malicious_hypervisor",
                     detail="the PEK certificate is signed by the hypervisor's key, presented "
                            "as the CEK; the rest of the chain is the platform's")
            reply = AttestationReport(sev=SevAttestationReport.of(forged))
            return reply, (*psp.cert_chain[:-1], fake_pek)
        reply = query_attestation_report(self.ctx.machine, psp, launched.handle, nonce)
        log.step(Actor.ATTACKER, "forwards the PSP's report unchanged (changing it would break the "
                 "PEK's signature)", "malicious_hypervisor")
        return reply, psp.cert_chain


def _image(ctx: AttackContext, params: AttestationParams) -> bytes:
    """The owner's image: the command line block, then a (random) kernel."""
    block = params.cmdline.encode("utf-8").ljust(CMDLINE_SIZE, b"\0")
    return block + ctx.rng.bytes(params.image_bytes - CMDLINE_SIZE)


def _modified(image: bytes, params: AttestationParams) -> bytes:
    """The image with the backdoor appended to its command line (same size)."""
    block = (params.cmdline + params.backdoor).encode("utf-8").ljust(CMDLINE_SIZE, b"\0")
    return block + image[CMDLINE_SIZE:]


def _pages(image: bytes) -> list[bytes]:
    return [image[i : i + PAGE_SIZE] for i in range(0, len(image), PAGE_SIZE)]
