"""What an SBPS client image needs, level by level: the image maturity model as data.

Owns the table ``image check`` evaluates. The levels follow the image maturity model of
"Building Non-Standard Images for CSM" (shared/reference, section 2): level 1 boots a
stock distribution through SBPS (kernel, initrd with the dracut handler of
``root=sbps-s3``, iSCSI initiator and multipath, both enabled); level 2 adds the CSM and
USS agents of its Table 1 so BOS, CFS and HSM can see and configure the node; level 3 is
the workload content of its Table 2. Only level 1 is required.

Package names: the distribution names of open-iscsi and multipath-tools differ (Debian
and SUSE vs RHEL and Rocky). The dracut handler of ``root=sbps-s3`` ships as
``csm-sbps-dracut`` since CSM 1.7 (Cray-HPE/csm-config CHANGELOG 1.34.0, "RPMs
transferred from COS to CSM"; docs-csm CSM 1.7.1-patch.1 release notes) and before that
as USS's ``cray-cps-dracut`` (Table 1; MTL-2555 "Migrate hpc-shasta-os-cray-cps-dracut",
docs-csm release notes). The public sources do not show the module's directory name, so
the module is recognised by content: a dracut module directory with a file that handles
``sbps-s3``. Pure data; must not do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = {
    1: "boot: boots a stock distribution through SBPS",
    2: "managed: CSM services see and configure the node (Table 1)",
    3: "production: workload content (Table 2)",
}
SBIN_DIRS = ("usr/sbin", "sbin", "usr/bin", "bin")
SBPS_PROTOCOL = b"sbps-s3"
DRACUT_DIRS = ("usr/lib/dracut/modules.d", "lib/dracut/modules.d")
UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")


@dataclass(frozen=True)
class Requirement:
    """One piece: present if any of ``packages`` is installed, or else if every one of
    ``files`` exists (a bare name is looked up in the sbin and bin directories)."""

    key: str
    level: int
    title: str
    packages: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    #: Package to install per distribution family (debian, rhel, suse); "" = any name.
    install: tuple[tuple[str, str], ...] = ()
    hint: str = ""

    @property
    def required(self) -> bool:
        return self.level == 1


@dataclass(frozen=True)
class Service:
    """A systemd unit that must be enabled (a wants/requires link to any of ``units``)."""

    key: str
    title: str
    units: tuple[str, ...]
    needs: str  # the Requirement.key that ships it
    hint: str


ISCSI = Requirement(
    "iscsi-initiator", 1, "iSCSI initiator (iscsid, iscsiadm)",
    packages=("open-iscsi", "iscsi-initiator-utils"), files=("iscsid", "iscsiadm"),
    install=(("debian", "open-iscsi"), ("suse", "open-iscsi"),
             ("rhel", "iscsi-initiator-utils")))
MULTIPATH = Requirement(
    "multipath", 1, "device-mapper multipath (multipathd)",
    packages=("multipath-tools", "device-mapper-multipath"), files=("multipathd",),
    install=(("debian", "multipath-tools"), ("suse", "multipath-tools"),
             ("rhel", "device-mapper-multipath")))
SBPS_DRACUT = Requirement(
    "sbps-dracut", 1, "dracut module handling root=sbps-s3",
    packages=("csm-sbps-dracut", "cray-cps-dracut"),
    install=(("", "csm-sbps-dracut"),),
    hint="install csm-sbps-dracut (CSM >= 1.7; cray-cps-dracut on USS) and rebuild the "
    "initrd with dracut")

BOOT = (ISCSI, MULTIPATH, SBPS_DRACUT)

SERVICES = (
    Service("iscsid-enabled", "iscsid service enabled",
            ("iscsid.service", "iscsid.socket", "iscsi.service", "open-iscsi.service"),
            "iscsi-initiator", "systemctl enable iscsid.socket iscsid.service (in the image)"),
    Service("multipathd-enabled", "multipathd service enabled",
            ("multipathd.service", "multipathd.socket"), "multipath",
            "systemctl enable multipathd.service (in the image)"),
)


def _t1(key: str, title: str, *alts: str, files: tuple[str, ...] = ()) -> Requirement:
    return Requirement(key, 2, title, packages=(key, *alts), files=files,
                       install=(("", key),))


MANAGED = (
    _t1("csm-node-heartbeat", "node heartbeat to HSM"),
    _t1("bos-reporter", "state reports to BOS"),
    _t1("cfs-state-reporter", "state reports to CFS"),
    _t1("cfs-trust", "CFS authentication"),
    _t1("cfs-debugger", "CFS debugging agent"),
    _t1("spire-agent", "node attestation (SPIRE agent)", files=("spire-agent",)),
    _t1("cray-spire-dracut", "node attestation in the initrd"),
    _t1("csm-auth-utils", "node attestation utilities"),
    _t1("tpm-provisioner-client", "node attestation (TPM)"),
    _t1("craycli", "cray command", files=("cray",)),
    _t1("hpe-yq", "yq utility", "yq", files=("yq",)),
    _t1("cray-cps-utils", "content projection utilities", "csm-sbps-utils"),
    _t1("cray-netif-dracut", "network interface configuration", "csm-netif-dracut"),
    _t1("cray-scripts-dracut", "early boot configuration and rootfs pivot",
        "csm-scripts-dracut"),
    _t1("cray-system-setup-scripts", "node level tunings"),
)


def _t2(key: str, title: str, *alts: str, files: tuple[str, ...] = ()) -> Requirement:
    return Requirement(key, 3, title, packages=(key, *alts), files=files,
                       install=(("", key),))


PRODUCTION = (
    _t2("slurm", "workload manager (Slurm or PBS)", "slurm-slurmd", "slurmd", "openpbs",
        "openpbs-execution", "pbspro-execution", "pbspro"),
    _t2("lustre-client", "Lustre client and LNet", "lustre-utils", "lustre-client-utils",
        files=("lctl",)),
    _t2("xpmem", "xpmem", "cray-xpmem", "xpmem-kmp-default"),
    _t2("cray-pals", "PALS application launcher"),
    _t2("msr-tools", "msr-tools"),
    _t2("msr-safe", "msr-safe"),
    _t2("cray-rasdaemon", "RAS daemon", "rasdaemon"),
    _t2("cray-hugepage-setup", "huge page setup"),
    _t2("cray-libhugetlbfs", "libhugetlbfs", "libhugetlbfs"),
    _t2("cray-crash-utility", "crash utility", "crash"),
    _t2("cray-freemem", "cray-freemem"),
    _t2("cray-atom-energy-plugin", "ATOM energy plugin"),
    _t2("bpcmdmod", "power utilization counters"),
)
