"""Attestation bypass: get the guest owner's secret into a guest image the hypervisor modified.

Threat: a malicious hypervisor builds the guest from the owner's launch image and carries every
message between the owner and the platform. It inserts a backdoor into the kernel command line
before launch, then has to get past the owner's attestation, because the owner releases its secret
(a disk key) only to a guest whose report it accepted. ``tamper`` picks the answer the hypervisor
gives to the owner's attestation request: ``image`` forwards the genuine report (the PSP measured
the modified image), ``replay`` returns a genuine report recorded at an earlier, unmodified boot,
``forge`` returns a report claiming the genuine digest, signed with a PEK of the hypervisor's own
making; ``vmsa`` leaves the image alone and moves the initial instruction pointer (RIP) in the
guest's VMSA to ``backdoor_rip`` before launch, then forwards the genuine evidence; ``debug``
launches the genuine image under a policy that allows debugging (legacy NODBG cleared, SNP DEBUG
set) and, once the key is in, reads it with DBG_DECRYPT (without a PSP, through the hypervisor's own
mapping of guest memory).
Under legacy firmware the VMSA is measured only for an SEV-ES guest (policy bit 2, ES, set in the
default policy 0x5); with a plain SEV policy (such as 0x1) LAUNCH_UPDATE_VMSA does not exist, the
host sets the registers itself and nothing measures them. ``policy`` is checked at load against
both firmware's rules (SEV API guest policy; SNP ABI guest policy: bit 17 must be one, reserved
bits 63:26 zero, the ABI minimum no newer than the firmware's): a value neither firmware accepts
is refused there; one only the other firmware accepts makes the attack ``not_applicable`` on
this one (its LAUNCH_START would answer POLICY_FAILURE: the owner's guest cannot exist there).
``require_platform_info`` lists PLATFORM_INFO bits the owner requires in an SNP report
(ciphertext hiding, bit 4; ALIAS_CHECK_COMPLETE, bit 5); a legacy report has no such field, so
an owner that requires any refuses every legacy report.
``evidence`` picks what the owner checks: the attestation report (legacy
208-byte report under ``sev``, the SNP ATTESTATION_REPORT under ``sev-snp``, as the engine's
interfaces decide) or, on legacy firmware only, the LAUNCH_MEASURE blob (HMAC-SHA256 under the
owner's TIK).
Source: B. Singh, "[PATCH] target/i386/sev: add the support to query the attestation report"
(qemu-devel, 4 December 2020), and its review thread; SEV API specification (AMD publication
55766), LAUNCH_UPDATE_VMSA and LAUNCH_MEASURE; SEV-SNP Firmware ABI specification (AMD
publication 56860), SNP_LAUNCH_UPDATE and ATTESTATION_REPORT.
Preconditions: capability ``malicious_hypervisor``. Where the engine attests
(:attr:`~testbed.platform.Engine.attests`), a PSP measures the launch and signs reports with a
PEK (SNP: VCEK) certified up to the vendor's root, and the owner's
:class:`~testbed.platform.Verifier` checks the chain, the signature, the nonce, the digest,
the policy (and under SNP the VMPL), or the LAUNCH_MEASURE HMAC; a failed check refuses the
secret and the attack is ``blocked``. Without a PSP the owner can check nothing: its policy there
is to trust the host, and the backdoor receives the secret. ``evidence: launch_measure`` does not
apply to SEV-SNP firmware, which has no LAUNCH_MEASURE.

The run is :func:`attest` and its outcome :func:`judge_attestation`, which the attack programs'
``attest`` step and ``accepted`` goal share.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..crypto.signing import DETERMINISTIC_SIGNING, KEY_SEED_SIZE, SigningKey, issue_x509
from ..errors import AttackError, ConfigError, VerificationFailed
from ..platform import (
    SIGNATURE_OFFSET,
    AttestationReport,
    Certificate,
    Domain,
    EngineWithSnpAttestation,
    KeyUsage,
    Machine,
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
from ..platform.sev import (
    MNONCE_SIZE,
    PLATFORM_INFO_ALIAS_CHECK,
    PLATFORM_INFO_CIPHERTEXT_HIDING,
    SNP_SIGNATURE_OFFSET,
    TIK_SIZE,
    MeasureBlob,
    ReportFormat,
    SnpAttestationReport,
    SnpReport,
    Vmsa,
    decode_nonce,
    encode_mnonce,
    measure_hmac,
    sign_snp_report,
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

U64_MAX = (1 << 64) - 1
U32_MAX = 0xFFFF_FFFF
"""No guest policy is wider: legacy policies are a u32, and SNP's defined bits end at 25."""
CMDLINE_SIZE = 256
"""The image starts with the kernel command line, NUL-padded to this many bytes."""
MAX_IMAGE_PAGES = 16
LAUNCH_UNITS = 12_000
"""Work units of one launch and attestation: the vendor's and the PSP's keys, the
certificate chain (SNP: three X.509 certificates), signing and verifying
(:mod:`testbed.attacks.cost`); measured at 22-36 ms a run of a 16-page image, either report
format..."""
PLATFORM_INFO_BITS = {"ciphertext_hiding": PLATFORM_INFO_CIPHERTEXT_HIDING,
                      "alias_check": PLATFORM_INFO_ALIAS_CHECK}
"""The PLATFORM_INFO bits an owner may require, by the name ``require_platform_info`` uses."""
IMAGE_PAGE_UNITS = 500
"""...and per page of the launch image (and the VMSA page), written, measured and read
back."""



def _guest(name: str) -> str:
    """A launched guest by its name, for the timeline: ``victim`` -> ``victim guest``."""
    return f"{name.replace('-', ' ')} guest"

class AttestationParams(SecretParams):
    """cmdline + backdoor stay under 256 bytes of UTF-8."""

    tamper: Literal["image", "replay", "forge", "vmsa", "debug"] = Field(
        "image", description="how the hypervisor answers the owner's attestation request "
        "(vmsa: it moves the initial RIP in the VMSA instead of changing the image; debug: it "
        "launches the genuine image with a policy that allows debugging, then decrypts the "
        "guest's memory)",
    )
    evidence: Literal["report", "launch_measure"] = Field(
        "report", description="what the owner checks: the attestation report, or the legacy "
        "LAUNCH_MEASURE blob (HMAC under its TIK; not on SEV-SNP firmware)",
    )
    backdoor_rip: int = Field(0x0010_0000, ge=0, le=U64_MAX,
                              description="where the hypervisor points the guest's initial RIP "
                                          "(tamper: vmsa)")
    image_bytes: int = Field(8192, ge=2 * CMDLINE_SIZE, le=MAX_IMAGE_PAGES * PAGE_SIZE,
                             description="size of the launch image (command line + kernel)")
    cmdline: str = Field("console=ttyS0 root=/dev/vda1 ro quiet", min_length=1, max_length=200,
                         description="the owner's kernel command line")
    backdoor: str = Field(" init=/usr/lib/.hv/backdoor", min_length=1, max_length=200,
                          description="text the hypervisor appends to the kernel command line")
    policy: int | None = Field(None, ge=0, le=U32_MAX,
                               description="guest policy the owner asks for and expects in the "
                                           "report (default: the platform's no-debug policy, "
                                           "legacy 0x5 = NODBG | ES, SNP 0x30000); a legacy "
                                           "policy without ES (bit 2) leaves the VMSA "
                                           "unmeasured")
    require_platform_info: list[Literal["ciphertext_hiding", "alias_check"]] = Field(
        default_factory=list,
        description="PLATFORM_INFO bits the owner requires in an SNP report: ciphertext_hiding "
                    "(bit 4), alias_check (ALIAS_CHECK_COMPLETE, bit 5); legacy reports have "
                    "none, so requiring any refuses them",
    )

    @model_validator(mode="after")
    def _cmdline_fits(self) -> AttestationParams:
        size = len((self.cmdline + self.backdoor).encode("utf-8"))
        if size >= CMDLINE_SIZE:
            raise ValueError(f"cmdline + backdoor must be under {CMDLINE_SIZE} bytes in UTF-8, "
                             f"got {size}")
        if self.evidence == "launch_measure" and self.tamper == "replay":
            raise ValueError("tamper: replay needs evidence: report (a LAUNCH_MEASURE blob is "
                             "bound to the TIK of its own launch)")
        if self.tamper == "vmsa" and self.backdoor_rip == Vmsa().rip:
            raise ValueError(f"backdoor_rip: must differ from the reset RIP {Vmsa().rip:#x}")
        if len(set(self.require_platform_info)) != len(self.require_platform_info):
            raise ValueError("require_platform_info: must not repeat")
        return self

    @field_validator("policy")
    @classmethod
    def _some_firmware_accepts(cls, policy: int | None) -> int | None:
        if policy is not None:
            problems = [f"{fmt.value}: {problem}" for fmt in ReportFormat
                        if (problem := fmt.policy_problem(policy)) is not None]
            if len(problems) == len(ReportFormat):
                raise ValueError("no firmware would launch a guest under it (" +
                                 "; ".join(problems) + ")")
        return policy

    @property
    def required_platform_info(self) -> int:
        """The PLATFORM_INFO bits of :attr:`require_platform_info`."""
        bits = 0
        for name in self.require_platform_info:
            bits |= PLATFORM_INFO_BITS[name]
        return bits

    @property
    def image_pages(self) -> int:
        return -(-self.image_bytes // PAGE_SIZE)

    def pages_needed(self) -> int:
        # The image, its VMSA, and the page the secret goes to (an earlier boot is gone by then).
        return self.image_pages + 2

    def work(self, machine: MachineShape) -> Work:
        """One launch, two with ``replay`` (the earlier boot it records), each with its
        image and its VMSA page."""
        launches = 2 if self.tamper == "replay" else 1
        per_launch = LAUNCH_UNITS + IMAGE_PAGE_UNITS * (self.image_pages + 1)
        return Work((run_part(machine),
                     (f"{launches} launch(es) of a {self.image_pages}-page image",
                      launches * per_launch)),
                    hint="lower params.image_bytes")


@dataclass
class _Launched:
    guest: Domain
    frames: list[PhysAddr]
    vmsa_frame: PhysAddr
    handle: int = 0
    digest: bytes | None = None
    blob: bytes | None = None
    """The LAUNCH_MEASURE blob (legacy firmware)."""


@dataclass(frozen=True)
class AttestationMetrics(BaseMetrics):
    tamper: str
    evidence: str
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
    report_format: str | None = omitted_when_none()
    """Which report the platform's firmware produces (``sev`` or ``sev-snp``)."""
    initial_rip: str | None = omitted_when_none()
    """Where the guest starts, read back from its VMSA."""
    platform_info: str | None = omitted_when_none()
    """SNP: the PLATFORM_INFO of the report the owner received (bit 4 ciphertext hiding, bit 5
    ALIAS_CHECK_COMPLETE)."""


class AttestationBypass(Attack[AttestationParams]):
    kind = "attestation"
    title = "Attestation bypass (modified image, replayed or forged report)"
    capabilities = ("malicious_hypervisor",)
    Params = AttestationParams
    Metrics = AttestationMetrics
    platform_settings = frozenset({"ciphertext_hiding"})

    def precondition(self, machine: Machine, params: AttestationParams) -> str | None:
        snp = isinstance(machine.engine, EngineWithSnpAttestation)
        if params.evidence == "launch_measure" and snp:
            return ("SEV-SNP firmware has no LAUNCH_MEASURE: its guest owners check the SNP "
                    "attestation report")
        if machine.engine.attests and params.policy is not None:
            fmt = ReportFormat.SNP if snp else ReportFormat.SEV
            problem = fmt.policy_problem(params.policy)
            if problem is not None:
                return (f"this platform's firmware launches no guest under the owner's policy "
                        f"(LAUNCH_START would answer POLICY_FAILURE: {problem})")
        return None

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
        leaked: what the attacker got of the key: what the backdoor sent out, or what the
            hypervisor read from guest memory (``None``: no backdoor ran).
        how: how it got it, for the verdict.
    """

    basis: str
    secret: bytes
    runs_modified: bool
    leaked: bytes | None
    how: str = "the backdoor handed it over"
    """How the attacker got ``leaked``."""


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
    fmt = ReportFormat.SEV if psp is None else psp.report_format
    policy = params.policy if params.policy is not None else (
        psp.default_policy if psp is not None else 0)
    vmsa = Vmsa()
    measured_vmsa = psp is None or fmt.encrypts_state(policy)
    expected = _digest(fmt, image, vmsa if measured_vmsa else None)
    metrics = AttestationMetrics(
        tamper=params.tamper, evidence=params.evidence, attestation_available=psp is not None,
        report_bytes=0, checks_passed=0, check_failed=None, digest_expected=expected.hex(),
        digest_measured=None, digest_reported=None, secret_provisioned=False,
        report_format=None if psp is None else fmt.value)
    run = _Run(ctx, params, psp, image, vmsa, expected, vendor, metrics, policy)
    log.secret = secret
    algo = "SHA-256" if fmt is ReportFormat.SEV else "SNP SHA-384"
    what = (f"{len(image)} bytes and its VMSA (RIP {vmsa.rip:#x})" if measured_vmsa else
            f"{len(image)} bytes (its VMSA, RIP {vmsa.rip:#x}, is not measured: the policy has "
            "no ES bit)")
    log.step(Actor.OWNER, "hands the host its image and keeps the digest it expects",
             detail=f"{what}, {algo} {run.expected.hex()}, policy {policy:#x}, command line "
                    f"{params.cmdline!r}")
    recorded = run.earlier_boot() if params.tamper == "replay" else None

    modified, launch_vmsa = image, vmsa
    log.begin_attack()
    if params.tamper == "debug":
        run.launch_policy = fmt.allow_debug(policy)
        log.step(Actor.ATTACKER, "starts the launch with a policy that allows debugging",
                 "malicious_hypervisor", detail=f"policy {policy:#x} -> {run.launch_policy:#x}")
    elif params.tamper == "vmsa":
        launch_vmsa = vmsa.with_rip(params.backdoor_rip)
        log.step(Actor.ATTACKER, "moves the guest's initial RIP to its own code before launch",
                 "malicious_hypervisor",
                 detail=f"VMSA RIP {vmsa.rip:#x} -> {params.backdoor_rip:#x}")
    else:
        modified = _modified(image, params)
        log.step(Actor.ATTACKER, "writes a backdoor into the kernel command line before launch",
                 "malicious_hypervisor", detail=repr(params.cmdline + params.backdoor))
    with log.victim_acts():  # the victim's guest is built: no ASID for it is no defence
        launched = run.launch(modified, launch_vmsa, "victim")
    run.note(replace(run.metrics, digest_measured=None if launched.digest is None
                     else launched.digest.hex()))
    # What the guest will run, read back through its own key.
    running = b"".join(m.read(launched.guest, pa, len(chunk))
                       for pa, chunk in zip(launched.frames, _pages(modified), strict=True))
    started = Vmsa.unpack(m.read(launched.guest, launched.vmsa_frame, len(vmsa.pack())))
    runs_modified = running != image or started != vmsa
    run.note(replace(run.metrics, guest_runs_modified_image=runs_modified,
                     initial_rip=f"{started.rip:#x}"))
    basis = run.attest(launched, recorded)
    return run.provision(launched, secret, basis, runs_modified=runs_modified)


def judge_attestation(done: Provisioned) -> Verdict:
    """``succeeded`` when the backdoor handed over the owner's disk key, judged by
    :func:`~testbed.attacks.judge_bytes`."""
    if done.leaked is None:
        return Verdict(Outcome.MITIGATED, "the guest runs the owner's image: no backdoor ran "
                                          "to receive the key")
    verdict = judge_bytes(done.secret, done.leaked, "disk key")
    if verdict.outcome is Outcome.SUCCEEDED:
        guest = ("a guest running the hypervisor's modified image or register state"
                 if done.runs_modified else "its guest")
        return Verdict(Outcome.SUCCEEDED, f"{done.basis}: the owner released its disk key to "
                       f"{guest}, and {done.how} (by chance {chance_text(verdict.chance_log2)})",
                       verdict.chance_log2)
    return verdict


@dataclass
class _Run:
    """One run: the machine and its PSP (if any), the owner's image and its verifier."""

    ctx: AttackContext
    params: AttestationParams
    psp: Psp | None
    image: bytes
    vmsa: Vmsa
    expected: bytes
    vendor: Vendor
    metrics: AttestationMetrics
    policy: int
    owner: Verifier | None = field(init=False)
    """The owner's verifier; ``None`` where there is no PSP (nothing to verify)."""
    launch_policy: int | None = None
    """The policy the hypervisor passes to LAUNCH_START (``None``: the owner's)."""
    tik: bytes = field(init=False)
    """The transport integrity key the owner gives the PSP (never the hypervisor)."""

    def __post_init__(self) -> None:
        self.tik = self.ctx.rng.bytes(TIK_SIZE)
        self.owner = None
        if self.psp is not None:
            fmt = self.psp.report_format
            ark = self.vendor.snp.ark_cert if fmt is ReportFormat.SNP else None
            self.owner = Verifier(self.vendor.root, self.expected, self.policy, self.ctx.rng,
                                  report_format=fmt, trusted_ark=ark, tik=self.tik,
                                  required_platform_info=self.params.required_platform_info)
        self.note(self.metrics)

    def verifier(self) -> Verifier:
        """The owner's verifier (there is a PSP)."""
        if self.owner is None:
            raise AttackError("there is no PSP, so the owner has no verifier")
        return self.owner

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
        if self.params.tamper == "debug":
            return self.debug_read(launched, secret, secret_pa, basis)
        if not runs_modified:
            return Provisioned(basis, secret, runs_modified, None)
        log.recovered = m.read(launched.guest, secret_pa, len(secret))
        log.step(Actor.ATTACKER, "reads the disk key through its backdoor in the guest and "
                 "sends it out",
                 "malicious_hypervisor", secret_pa)
        return Provisioned(basis, secret, runs_modified, log.recovered)

    def debug_read(
        self, launched: _Launched, secret: bytes, pa: PhysAddr, basis: str
    ) -> Provisioned:
        """The hypervisor reads the key out of guest memory: DBG_DECRYPT where there is a PSP,
        its own mapping of guest memory where there is none.

        Raises:
            InvalidArgument: the firmware refused DBG_DECRYPT (the policy forbids debugging).
        """
        m, log, psp = self.ctx.machine, self.ctx.log, self.psp
        if psp is None:
            log.recovered = m.hypervisor_read(pa, len(secret))
            log.step(Actor.ATTACKER, "reads the disk key's page through its own mapping of guest "
                     "memory", "malicious_hypervisor", pa)
            return Provisioned(basis, secret, False, log.recovered,
                               "the hypervisor read the key from guest memory")
        log.recovered = psp.debug_decrypt(launched.handle, pa, len(secret))
        log.step(Actor.ATTACKER, "decrypts the disk key's page with DBG_DECRYPT",
                 "malicious_hypervisor", pa)
        return Provisioned(basis, secret, False, log.recovered,
                           "the hypervisor decrypted the key with DBG_DECRYPT")

    def launch(self, image: bytes, vmsa: Vmsa, name: str) -> _Launched:
        """Create a guest and load ``image`` and its VMSA into it, through the PSP where there
        is one."""
        m, log, psp = self.ctx.machine, self.ctx.log, self.psp
        guest = m.create_domain("guest", name)
        chunks = _pages(image)
        launched = _Launched(guest, [m.alloc_page(guest) for _ in chunks], m.alloc_page(guest))
        if psp is None:
            for pa, chunk in zip(launched.frames, chunks, strict=True):
                m.write(guest, pa, chunk)
            m.write(guest, launched.vmsa_frame, vmsa.pack())
            log.step(Actor.HOST, f"copies the {_guest(name)}'s image and VMSA into its memory",
                     address=launched.frames[0], detail="nothing measures what was loaded")
            return launched
        policy = self.policy if self.launch_policy is None else self.launch_policy
        launched.handle = psp.launch_start(guest, policy, self.tik)
        for pa, chunk in zip(launched.frames, chunks, strict=True):
            psp.launch_update_data(launched.handle, pa, chunk)
        es = psp.report_format.encrypts_state(policy)
        if es:
            psp.launch_update_vmsa(launched.handle, launched.vmsa_frame, vmsa.pack())
        else:
            # Plain SEV: the hypervisor keeps the register state; no firmware command sees it.
            m.write(guest, launched.vmsa_frame, vmsa.pack())
        launched.blob = psp.launch_measure(launched.handle)
        launched.digest = psp.launch_digest(launched.handle)
        psp.launch_finish(launched.handle)
        if psp.report_format is ReportFormat.SNP:
            how = f"SNP_LAUNCH_UPDATE x{len(chunks) + 1} (the last a VMSA page): SHA-384 digest"
        elif es:
            how = (f"LAUNCH_UPDATE_DATA x{len(chunks)}, LAUNCH_UPDATE_VMSA, LAUNCH_MEASURE: "
                   "SHA-256 digest")
        else:
            how = (f"LAUNCH_UPDATE_DATA x{len(chunks)}, LAUNCH_MEASURE (policy {policy:#x} has "
                   "no ES bit: no LAUNCH_UPDATE_VMSA): SHA-256 digest")
        state = "image and VMSA" if es else "image (not its registers)"
        log.step(Actor.PSP, f"encrypts and measures the {_guest(name)}'s {state} as given",
                 address=launched.frames[0], detail=f"{how} {launched.digest.hex()}")
        if not es:
            log.step(Actor.HOST, f"sets the {_guest(name)}'s initial registers itself",
                     address=launched.vmsa_frame,
                     detail="plain SEV: the register state is neither encrypted by the firmware "
                            "nor measured")
        return launched

    def earlier_boot(self) -> AttestationReport | None:
        """An unmodified boot the owner attests; the hypervisor keeps the report."""
        m, log, psp = self.ctx.machine, self.ctx.log, self.psp
        if psp is None:
            log.step(Actor.OWNER, "earlier boot: ran without attestation",
                     detail="there is no PSP, so no report exists to be recorded")
            return None
        owner = self.verifier()
        earlier = self.launch(self.image, self.vmsa, "earlier-boot")
        nonce = owner.new_nonce()
        reply = query_attestation_report(m, psp, earlier.handle, nonce)
        owner.verify(reply, _chain(psp))
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
        m, log, psp = self.ctx.machine, self.ctx.log, self.psp
        if psp is not None and self.params.evidence == "launch_measure":
            return self.check_measure(launched)
        if psp is None:
            nonce = encode_mnonce(self.ctx.rng.bytes(MNONCE_SIZE))
            log.step(Actor.OWNER, "asks the host for an attestation report",
                     detail=f"mnonce {nonce}")
            try:
                query_attestation_report(m, psp, launched.handle, nonce)
            except ConfigError as exc:
                log.step(Actor.OWNER, "cannot check anything, so it trusts the host (the policy "
                         "where there is no attestation)", detail=str(exc))
                return "no attestation was possible"
            raise AttackError("an attestation report came back from a machine without a PSP")
        owner = self.verifier()
        nonce = owner.new_nonce()
        label = "report_data" if psp.report_format is ReportFormat.SNP else "mnonce"
        log.step(Actor.OWNER, "asks the host for an attestation report",
                 detail=f"{label} {nonce}")
        reply, chain = self.answer(psp, launched, nonce, recorded)
        snp = psp.report_format is ReportFormat.SNP
        component = reply.snp if snp else reply.sev
        data = component.raw() if component is not None else b""
        signature_at = SNP_SIGNATURE_OFFSET if snp else SIGNATURE_OFFSET
        log.captured = data if DETERMINISTIC_SIGNING else data[:signature_at]
        reported, info = None, None
        if data and snp:
            parsed = SnpReport.unpack(data)
            reported, info = parsed.measurement.hex(), f"{parsed.platform_info:#x}"
        elif data:
            reported = SevReport.unpack(data).launch_digest.hex()
        self.note(replace(self.metrics, report_bytes=len(data), digest_reported=reported,
                          platform_info=info))
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

    def check_measure(self, launched: _Launched) -> str:
        """Legacy pre-launch attestation: the owner checks the LAUNCH_MEASURE blob.

        Raises:
            VerificationFailed: the owner rejected the blob.
        """
        log, owner = self.ctx.log, self.verifier()
        if launched.blob is None:
            raise AttackError("the firmware returned no LAUNCH_MEASURE blob")
        log.step(Actor.OWNER, "asks the host for the LAUNCH_MEASURE blob",
                 detail="it will recompute the HMAC with the TIK it gave the PSP")
        blob = launched.blob
        if self.params.tamper == "forge":
            # The hypervisor knows the genuine digest but not the owner's TIK: it MACs with a
            # key of its own.
            own_tik = self.ctx.rng.bytes(TIK_SIZE)
            mnonce = MeasureBlob.unpack(blob).mnonce
            blob = MeasureBlob(measure_hmac(own_tik, self.policy, self.expected, mnonce),
                               mnonce).pack()
            log.step(Actor.ATTACKER, "forges the LAUNCH_MEASURE blob over the genuine digest "
                     "with a TIK of its own", "malicious_hypervisor")
        else:
            log.step(Actor.ATTACKER, "forwards the PSP's LAUNCH_MEASURE blob unchanged (it lacks "
                     "the TIK to recompute the HMAC)", "malicious_hypervisor")
        log.captured = blob
        self.note(replace(self.metrics, report_bytes=len(blob)))
        try:
            owner.verify_measure(blob)
        except VerificationFailed as exc:
            self.note(replace(self.metrics, checks_passed=owner.checks_passed,
                              check_failed=owner.results[-1].check.value))
            log.step(Actor.OWNER, "rejects the launch measurement and keeps its disk key",
                     detail=str(exc))
            raise
        self.note(replace(self.metrics, checks_passed=owner.checks_passed))
        log.step(Actor.OWNER, "accepts the launch measurement",
                 detail=f"{owner.checks_passed} checks passed")
        return "the owner accepted the launch measurement"

    def answer(
        self, psp: Psp, launched: _Launched, nonce: str, recorded: AttestationReport | None
    ) -> tuple[AttestationReport, tuple[Certificate, ...] | tuple[bytes, ...]]:
        """What the hypervisor sends back to the owner."""
        log, tamper = self.ctx.log, self.params.tamper
        if tamper == "replay" and recorded is not None:
            log.step(Actor.ATTACKER, "answers with the report recorded at the earlier boot",
                     "malicious_hypervisor", detail=f"the owner asked with nonce {nonce}")
            return recorded, _chain(psp)
        if tamper == "forge" and psp.report_format is ReportFormat.SNP:
            return self.forge_snp(psp, nonce)
        if tamper == "forge":
            own = SigningKey(self.ctx.rng.bytes(KEY_SEED_SIZE))
            fake_pek = issue_certificate(KeyUsage.PEK, own.public_key, KeyUsage.CEK, own)
            # The hypervisor hashes the genuine image it was handed: it knows the digest.
            body = SevReport(decode_mnonce(nonce), self.expected, self.policy)
            forged = sign_report(body, own).pack()
            log.step(Actor.ATTACKER, "signs a report claiming the genuine digest with its own PEK",
                     "malicious_hypervisor",
                     detail="the PEK certificate is signed by the hypervisor's key, presented "
                            "as the CEK; the rest of the chain is the platform's")
            reply = AttestationReport(sev=SevAttestationReport.of(forged))
            return reply, (*psp.cert_chain[:-1], fake_pek)
        reply = query_attestation_report(self.ctx.machine, psp, launched.handle, nonce)
        signer = "VCEK" if psp.report_format is ReportFormat.SNP else "PEK"
        log.step(Actor.ATTACKER, "forwards the PSP's report unchanged (changing it would break the "
                 f"{signer}'s signature)", "malicious_hypervisor")
        return reply, _chain(psp)

    def forge_snp(self, psp: Psp, nonce: str) -> tuple[AttestationReport, tuple[bytes, ...]]:
        """An SNP report with the genuine measurement, signed by a VCEK of the hypervisor's own,
        whose X.509 certificate names the vendor's ASK as issuer but is signed by that key."""
        own = SigningKey(self.ctx.rng.bytes(KEY_SEED_SIZE))
        fake_vcek = issue_x509("SEV-VCEK", own.public_key, "SEV-Model", own, ca=False)
        body = SnpReport(decode_nonce(nonce, psp.report_format.nonce_size),
                         self.expected, self.policy, chip_id=psp.chip_id)
        forged = sign_snp_report(body, own).pack()
        self.ctx.log.step(Actor.ATTACKER, "signs an SNP report claiming the genuine measurement "
                          "with a VCEK of its own", "malicious_hypervisor",
                          detail="its VCEK certificate names the vendor's ASK as issuer but is "
                                 "signed by the hypervisor's key; ARK and ASK are the vendor's")
        return (AttestationReport(snp=SnpAttestationReport.of(forged)),
                (*psp.vcek_chain[:-1], fake_vcek))


def _chain(psp: Psp) -> tuple[Certificate, ...] | tuple[bytes, ...]:
    """The certificates the host exports for the PSP's reports (PEK chain or VCEK chain)."""
    return psp.vcek_chain if psp.report_format is ReportFormat.SNP else psp.cert_chain


def _digest(fmt: ReportFormat, image: bytes, vmsa: Vmsa | None) -> bytes:
    """The launch digest the owner expects: its image page by page, then its VMSA (``None``:
    a plain SEV guest, whose VMSA is not measured)."""
    digest = fmt.new_digest()
    for i, page in enumerate(_pages(image)):
        digest.add_page(page.ljust(PAGE_SIZE, b"\0") if fmt is ReportFormat.SNP else page,
                        i * PAGE_SIZE)
    if vmsa is not None:
        digest.add_vmsa(vmsa.pack())
    return digest.digest()


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
