"""sbps: boot-content projection for diskless HPC clusters (the SBPS marshal and tools).

Module map (each module opens with a docstring saying what it owns and must not do):

core (imports nothing else of sbps)
    errors          error hierarchy: temporary (retry with backoff) vs permanent
    decode          bounded decoding (size and depth limits) of every document from outside
    model           frozen dataclasses: images, manifests, identities, claims, cache entries
    target_state    frozen dataclasses: backstores, LUNs, portals, CHAP, ACLs, live state
    actions         the actions plan() emits and apply() executes, notes, Plan
    config/         the one frozen configuration: definition, loading, rendering
components
    s3              the shared S3 client (boto3 in executors), error translation
    identity        identity keys, SHA-224 digests, product id, serial, WWID, IQN
    access          access policy: tenants, initiator patterns, visible(), ACL spec (pure)
    access_files    tenant map and CHAP files, re-read on change (AccessSource)
    claims          LUN id claims in the shared bucket, local journal, quarantine
    bootparams      root=sbps-s3:... generator and parser
    catalog/        IMS client, tolerant record and manifest parsing, label rule, problems
    stager          verified downloads into the local cache, budget and eviction
    backends/       target backend protocol; lio (rtslib-fb) and tgt (tgtadm, tgtd's socket)
    dns/            registrar protocol; off, rfc2136 (TSIG) and pdns (HTTP API)
    gate            node gate providers: always, file, k8s-label
    instance        one marshal per state directory: the marshal.lock file
    metrics         Prometheus collector over the status snapshot
    build/          image build (squashfs, upload as IMS lays it out) and image check
orchestration
    plan            pure plan(): desired + actual -> actions with reasons
    plan_access     pure ACL / mapped LUN / CHAP actions, called by plan()
    apply           executes a plan, per-action results
    desired         the desired images per pass, kept on any doubt (outage, empty, PE change)
    reconciler      triggers, passes, lifecycle, status snapshot
    http/           aiohttp API: catalog, bootparams, metrics, admin endpoints
entry points
    daemon          sbps-marshal: composition root, supervised tasks, signals, sd_notify
    cli/            sbpsctl: one module per command group, discovered at run time

The layering is enforced by import-linter (.importlinter).
"""

__version__ = "0.1.0"
