"""The configuration definition: every section, key, default, bound and help text.

Owns the *shape* of the configuration only. Loading, environment overrides and rendering
live in ``load.py`` and ``render.py`` and read this definition, so the documented example
file, the environment names and the validation can never drift apart. Must not read files
or the environment.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

from sbps.config.choices import (
    AccessMode,
    Allocation,
    BackendKind,
    CatalogAuth,
    DnsMode,
    GateMode,
    LogFormat,
    LogLevel,
    PeImages,
    PeMode,
    Rules,
    S3Proto,
    Untagged,
    Untenanted,
    Verify,
)

ENV_PREFIX = "SBPS_MARSHAL_"
DEFAULT_PATH = "/etc/sbps/marshal.toml"


def opt(
    default: Any,
    help: str,
    *,
    kind: str = "",
    min: float | None = None,
    max: float | None = None,
    secret_path: bool = False,
    alias: str = "",
) -> Any:
    """One configuration key. ``kind`` refines the type: duration, size, path, url.

    A key whose default is a member of a ``choices`` enum takes one of its members; the
    allowed texts are the enum's values, in its order. ``secret_path`` marks a path to a
    file that holds a secret (the value itself is never in the configuration). ``alias``
    is the field agent's environment key, without prefix.
    """
    choice = type(default) if isinstance(default, enum.Enum) else None
    meta = {"help": help, "kind": kind, "min": min, "max": max, "secret_path": secret_path,
            "alias": alias, "enum": choice,
            "choices": tuple(m.value for m in choice) if choice else ()}
    return field(default=default, metadata=meta)


class _Section:
    """A section holds each choice as its enum member. Built by hand (tests, tools) with
    the text instead, it stores the member; a text that is no member is a ValueError."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            choice = f.metadata.get("enum")
            value = getattr(self, f.name)
            if choice is not None and not isinstance(value, choice):
                object.__setattr__(self, f.name, choice(value))


@dataclass(frozen=True)
class NodeConfig(_Section):
    hostname: str = opt("", "This worker's name; the target IQN ends with it. Empty: the host "
                        "name of the machine.")
    system_name: str = opt("", "The system name used in DNS names and boot parameters.")
    site_domain: str = opt("", "The site domain used in DNS names and boot parameters.")
    server_id: str = opt("", "The NNN of iscsi-server-id-NNN. Empty: the digits of ncn-wNNN.")
    gate: GateMode = opt(GateMode.ALWAYS, "When this worker serves: always, while gate_file exists, "
                     "or while its Kubernetes node has gate_label.")
    gate_file: str = opt("/var/lib/sbps/serve", "Flag file for gate = file.", kind="path")
    gate_label: str = opt("iscsi=sbps", "Node label (key=value) for gate = k8s-label.")
    k8s_api: str = opt("https://kubernetes.default.svc", "Kubernetes API URL.", kind="url")
    k8s_token_file: str = opt("/var/run/secrets/kubernetes.io/serviceaccount/token",
                              "Kubernetes bearer token file.", kind="path", secret_path=True)
    k8s_ca_file: str = opt("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
                           "CA bundle for the Kubernetes API.", kind="path")
    k8s_kubeconfig: str = opt("", "Kubeconfig file (its current context: server, CA, client "
                              "certificate or token) for gate = k8s-label, as kubectl "
                              "--kubeconfig reads it; when set, k8s_api, k8s_token_file and "
                              "k8s_ca_file are not used.", kind="path", secret_path=True)


@dataclass(frozen=True)
class CatalogConfig(_Section):
    api_gateway: str = opt("https://api-gw-service-nmn.local", "Base URL of the API gateway.",
                           kind="url", alias="API_GATEWAY")
    ims_uri: str = opt("apis/ims/v3/images", "Path of the IMS image list below api_gateway.",
                       alias="IMS_URI")
    tagging: bool = opt(True, "Project only labelled images; false projects every image.",
                        alias="IMS_TAGGING")
    timeout: float = opt(10.0, "Timeout of one IMS request.", kind="duration", min=0.1,
                         max=600, alias="IMS_TIMEOUT")
    auth: CatalogAuth = opt(CatalogAuth.NONE, "How IMS requests authenticate; spire: a JWT "
                            "from the SPIRE agent, as the field agent does.")
    token_file: str = opt("", "Bearer token file for auth = token-file (re-read on change).",
                          kind="path", secret_path=True)
    token_command: str = opt("spire-agent api fetch jwt -audience {audience} -output json",
                             "Command printing a JWT (or SPIRE JSON) for auth = command.")
    token_audience: str = opt("system-compute", "Audience of the JWT (auth = spire or "
                              "command).", alias="SPIRE_JWT_AUDIENCE")
    spire_agent: str = opt("/opt/cray/cray-spire/sbps-marshal-spire-agent", "SPIRE agent "
                           "program for auth = spire.", kind="path", alias="SPIRE_AGENT_PATH")
    spire_socket: str = opt("/var/lib/spire/agent.sock", "SPIRE agent socket for auth = "
                            "spire.", kind="path", alias="SPIRE_AGENT_SOCK_PATH")
    spire_xname_file: str = opt("/etc/cray/xname", "File holding this node's xname; auth = "
                                "spire also accepts the SVID "
                                "spiffe://shasta/ncn/<xname>/workload/sbps-marshal.",
                                kind="path")
    token_svid_pattern: str = opt("", "Regular expression selecting the SVID id in SPIRE "
                                  "JSON output; empty takes the first.")
    verify_tls: bool = opt(True, "Verify the IMS server certificate.")
    ca_bundle: str = opt("", "CA bundle file for IMS; empty uses the system store. On a CSM "
                         "worker the platform CA is "
                         "/etc/pki/trust/anchors/platform-ca-certs.crt.", kind="path")
    label_key: str = opt("sbps-project", "Metadata key whose value \"true\" labels an image.")
    untagged: Untagged = opt(Untagged.SKIP, "Records with no metadata at all: skip them, or "
                             "project them as the field agent did.")
    rules: Rules = opt(Rules.STRICT, "Which records and PE objects are projected: strict, or "
                       "field (the field agent's set: every object under PE/, the last rootfs "
                       "artifact with a path and an etag, labels exactly \"true\", records "
                       "without metadata projected; untagged is then ignored). docs/upgrade.md.")
    pe: PeImages = opt(PeImages.ALL, "PE images under PE/: all of them, only those labelled "
                       "in IMS, or none.")
    refresh: float = opt(600.0, "Slow refresh that re-checks objects for deletion or "
                         "replacement.", kind="duration", min=10, max=86400)


@dataclass(frozen=True)
class S3Config(_Section):
    endpoint: str = opt("", "S3 endpoint URL. Empty: <proto>://<host>.", kind="url")
    host: str = opt("rgw-vip.nmn", "S3 host when endpoint is empty.", alias="S3_HOST")
    proto: S3Proto = opt(S3Proto.HTTPS, "S3 scheme when endpoint is empty.", alias="S3_PROTO")
    bucket: str = opt("boot-images", "Bucket holding images, manifests, PE/ and .sbps/.",
                      alias="S3_BUCKET")
    allowed_buckets: tuple[str, ...] = opt((), "Other buckets manifests and their artifacts "
                                           "may link to; empty: only bucket.")
    credential_file: str = opt("/root/.ims.s3fs", "Credentials: one line key:secret, or an "
                               "AWS credentials file.", kind="path", secret_path=True,
                               alias="S3_CREDENTIAL_FILE")
    region: str = opt("us-east-1", "Region name given to the S3 client.")
    verify_tls: bool = opt(True, "Verify the S3 server certificate.")
    ca_bundle: str = opt("", "CA bundle file for S3; empty uses the system store.",
                         kind="path")
    timeout: float = opt(30.0, "Connect and read timeout of one S3 request.",
                         kind="duration", min=0.1, max=3600)


@dataclass(frozen=True)
class StageConfig(_Section):
    cache_dir: str = opt("/var/lib/sbps/cache", "Directory of verified image files.",
                         kind="path")
    max_bytes: int = opt(0, "Cache budget; 0 = no fixed budget (keep_free still applies).",
                         kind="size", min=0)
    keep_free: float = opt(0.1, "Fraction of the cache file system's size that staging "
                           "leaves free: an image is staged only if the file system keeps "
                           "this much free after it. 0 turns the floor off.", min=0, max=0.9)
    concurrency: int = opt(2, "Images downloaded at once.", min=1, max=64)
    # These two keep their released names; in the code a ranged GET is a *chunk*
    # (``chunk_size``) and ``part_size`` is always an object's multipart part size.
    part_size: int = opt(16 * 2**20, "Size of one ranged GET.", kind="size", min=2**20,
                         max=2**32)
    part_concurrency: int = opt(4, "Ranged GETs in flight per image.", min=1, max=64)
    bandwidth: int = opt(0, "Download cap in bytes per second; 0 = none.", kind="size",
                         min=0)
    verify: Verify = opt(Verify.STRICT, "strict: never export what cannot be verified; "
                         "best-effort: export it with a warning and a metric.")
    rehash_on_start: bool = opt(True, "Re-hash every cache file in the background at start.")


@dataclass(frozen=True)
class TargetConfig(_Section):
    backend: BackendKind = opt(BackendKind.LIO, "Target backend: kernel LIO via rtslib, or "
                               "userspace tgtd.")
    iqn_prefix: str = opt("iqn.2023-06.csm.iscsi", "The target IQN is <iqn_prefix>:<hostname>.")
    configfs_root: str = opt("/sys/kernel/config/target", "LIO configfs target directory.",
                             kind="path")
    saveconfig_path: str = opt("/etc/target/saveconfig.json", "Where LIO's configuration is "
                               "saved for target.service.", kind="path",
                               alias="LIO_SAVE_FILE")
    portals: tuple[str, ...] = opt((), "Portals as address[:port]; empty: keep the TPG's "
                                   "portals (one with none gets 0.0.0.0 on port).")
    port: int = opt(3260, "Default iSCSI port of the portals.", min=1, max=65535)
    access: AccessMode = opt(AccessMode.OPEN, "open: any initiator, read-only (generated "
                             "ACLs); acl: one node ACL per allowed initiator, mapping only the "
                             "images it may read.")
    pe_identity: PeMode = opt(PeMode.LEGACY, "PE identity key: legacy (path only, as field "
                              "clients expect) or content (path and etag).")
    lun_allocation: Allocation = opt(Allocation.CLAIMS, "claims: ids agreed through claim "
                                     "objects in S3; hash: hash and local journal only "
                                     "(read-only credentials).")
    lun_min: int = opt(1, "Lowest LUN id; LUN 0 is never used.", min=1, max=16383)
    lun_max: int = opt(255, "Highest LUN id (255 with explicit ACLs or tgt).", min=1,
                       max=16383)
    lun_quarantine: float = opt(86400.0, "How long a freed LUN id rests before reuse.",
                                kind="duration", min=0, max=365 * 86400)
    verify_interval: float = opt(300.0, "LIO: how often a pass reads every object of the "
                                 "target in full. In between, a pass re-reads the TPG's "
                                 "settings and the lists of backstores, LUNs and ACLs, and "
                                 "reads in full when one of them changed or sbps wrote; "
                                 "0 reads in full every pass.", kind="duration", min=0,
                                 max=86400)
    adopt_keep_backing: bool = opt(False, "Keep adopted field-agent LUNs on their old backing "
                                   "file instead of switching to the verified cache.")
    tgtadm: str = opt("tgtadm", "tgtadm program for backend = tgt.", kind="path")
    tgt_control_port: int = opt(0, "tgtd control port (tgtadm -C) for backend = tgt.", min=0,
                                max=1024)
    initiators: tuple[str, ...] = opt((), "access = acl: initiators that may read untenanted "
                                      "images: names (iqn./eui./naa.) or name prefixes "
                                      "ending in * (expanded against the tenant map's "
                                      "nodes); on backend = tgt also addresses (a.b.c.d "
                                      "or a CIDR).")
    tenant_label: str = opt("sbps-tenant", "IMS metadata key naming the tenant that owns an "
                            "image; only that tenant's initiators may read it (access = acl).")
    tenant_map_file: str = opt("", "TOML or JSON file mapping tenants to initiator names or "
                               "prefixes (and optional per-tenant CHAP files); re-read when "
                               "it changes. Not with backend = tgt. See docs/access.md.",
                               kind="path")
    untenanted: Untenanted = opt(Untenanted.SHARED, "Untenanted images (no tenant label): "
                                 "shared with every allowed initiator, or listed in "
                                 "target.initiators only.")
    chap_user_file: str = opt("", "File holding the CHAP user name; empty: no CHAP.",
                              kind="path")
    chap_secret_file: str = opt("", "File holding the CHAP secret (12..255 characters).",
                                kind="path", secret_path=True)
    chap_mutual_user_file: str = opt("", "File holding the mutual CHAP user name (the target "
                                     "proves itself to the initiator); empty: one-way CHAP.",
                                     kind="path")
    chap_mutual_secret_file: str = opt("", "File holding the mutual CHAP secret (12..255 "
                                       "characters, not the one-way secret).", kind="path",
                                       secret_path=True)


@dataclass(frozen=True)
class DnsConfig(_Section):
    mode: DnsMode = opt(DnsMode.OFF, "How SRV and A records are registered.")
    server: str = opt("127.0.0.1", "DNS server for rfc2136 updates and SOA queries.")
    port: int = opt(53, "DNS server port.", min=1, max=65535)
    tsig_key_file: str = opt("", "TSIG key: BIND key {} syntax or name:algorithm:secret.",
                             kind="path", secret_path=True)
    pdns_url: str = opt("http://127.0.0.1:8081", "PowerDNS API base URL.", kind="url")
    pdns_api_key_file: str = opt("", "PowerDNS API key file.", kind="path", secret_path=True)
    pdns_server_id: str = opt("localhost", "PowerDNS server id in API paths.")
    ttl: int = opt(3600, "TTL of the records.", min=1, max=86400)
    zones: tuple[str, ...] = opt((), "Zone names; empty: found by SOA queries.")
    networks: tuple[str, ...] = opt(("hsn", "nmn"), "Networks to register.")
    hsn_address: str = opt("", "This worker's HSN address; empty: from hsn_interface.")
    nmn_address: str = opt("", "This worker's NMN address; empty: from nmn_interface.")
    hsn_interface: str = opt("hsn0", "Interface whose address is the HSN address.")
    nmn_interface: str = opt("bond0.nmn0", "Interface whose address is the NMN address.")
    withdraw_on_stop: bool = opt(True, "Withdraw this worker's records on clean shutdown.")
    require_portal: bool = opt(True, "Register only A addresses a target portal listens on; "
                               "false where clients reach the portals through NAT.")
    timeout: float = opt(5.0, "Timeout of one DNS query, update or PowerDNS API request.",
                         kind="duration", min=0.1, max=300)


@dataclass(frozen=True)
class HttpConfig(_Section):
    bind: str = opt("127.0.0.1", "Address of the HTTP API and metrics.")
    port: int = opt(9440, "Port of the HTTP API; 0 picks a free one (logged).", min=0,
                    max=65535)
    admin_token_file: str = opt("", "Bearer token for admin endpoints; empty: created "
                                "(mode 0600) in reconcile.state_dir.", kind="path",
                                secret_path=True)
    tls_cert_file: str = opt("", "TLS certificate for non-loopback binds.", kind="path")
    tls_key_file: str = opt("", "TLS key for non-loopback binds.", kind="path",
                            secret_path=True)
    max_connections: int = opt(512, "HTTP connections open at once; beyond it the oldest "
                               "idle one is closed, or the new one refused (503). Lowered at "
                               "start if the open-files limit leaves no room for it beside "
                               "the reconciler's reserve.", min=8, max=60000)
    max_long_polls: int = opt(128, "Long polls (?wait) waiting at once; beyond it 503. At "
                              "most half of max_connections.", min=1, max=30000)
    textfile_path: str = opt("/var/lib/node_exporter/sbps_iscsi.prom", "Where the field's "
                             "four iscsi_* metrics are written for node-exporter's textfile "
                             "collector (the directory the field's metrics were read from); "
                             "empty: not written. docs/upgrade.md.", kind="path")
    textfile_interval: float = opt(30.0, "Shortest time between two writes of textfile_path "
                                   "(it is written after passes).", kind="duration", min=1,
                                   max=3600)
    header_timeout: float = opt(10.0, "Time a client has to send a complete request (and "
                                "idle time of a kept-alive connection) before it is closed.",
                                kind="duration", min=0.5, max=300)


@dataclass(frozen=True)
class ReconcileConfig(_Section):
    interval: float = opt(30.0, "Time between reconcile passes.", kind="duration", min=1,
                          max=86400, alias="SCAN_FREQUENCY")
    state_dir: str = opt("/var/lib/sbps/state", "Journal, claims cache and admin token.",
                         kind="path")
    retire_grace: float = opt(1800.0, "Idle time (no reads) before a retiring LUN goes.",
                              kind="duration", min=0, max=30 * 86400)
    retire_max_wait: float = opt(7 * 86400.0, "A retiring LUN goes after this even if read.",
                                 kind="duration", min=0, max=365 * 86400)
    empty_catalog_passes: int = opt(3, "Passes an empty catalog is treated as an outage.",
                                    min=1, max=1000)
    drain_delay: float = opt(-1.0, "Wait between DNS withdrawal and TPG disable; -1: the DNS "
                             "TTL capped at 10 min.", kind="duration", min=-1, max=86400)
    backoff_initial: float = opt(30.0, "First retry delay of a failed image.",
                                 kind="duration", min=0.1, max=86400)
    backoff_max: float = opt(3600.0, "Longest retry delay of a failed image.",
                             kind="duration", min=1, max=7 * 86400)
    notify_secret_file: str = opt("", "Shared secret for the S3 notification endpoint; empty "
                                  "disables it.", kind="path", secret_path=True)


@dataclass(frozen=True)
class LogConfig(_Section):
    level: LogLevel = opt(LogLevel.INFO, "Log level.")
    format: LogFormat = opt(LogFormat.TEXT, "Log line format.")


@dataclass(frozen=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    s3: S3Config = field(default_factory=S3Config)
    stage: StageConfig = field(default_factory=StageConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)
    log: LogConfig = field(default_factory=LogConfig)


#: The field agent's variables that have no direct equivalent, and what replaces them.
DEPRECATED_ENV = {
    "TARGETCLI_BIN": "nothing: sbps drives LIO through rtslib, not targetcli processes",
    "SQUASHFS_S3FS_MOUNT": "stage.cache_dir: sbps exports verified local copies, not s3fs",
}
