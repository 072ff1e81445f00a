"""sbps: boot-content projection for diskless HPC clusters (the SBPS marshal and tools).

The wings (docs/architecture.md; import-linter keeps each one to the wings below it):

cli/         sbpsctl: one module per command group, discovered at run time
dev/         development only: the demo, its servers on loopback, a userspace initiator
daemon/      sbps-marshal: main (process, signals, sd_notify), compose (the one composition
             root), supervisor, sdnotify, instance (one marshal per state directory)
publish/     how a worker shows itself: gate (whether to serve), dns/ (SRV and A records),
             http/ (the API, its limits), metrics, boot/ (root=sbps-s3:... parameters)
reconcile/   the loop: loop (triggers, passes, snapshot), commands, gather, desired, plan
             and plan_access (pure), apply, effects, staging, lifecycle, adoption, serving,
             status, failures
sources/     what comes from IMS and the bucket: s3 (the client), catalog/, stager/ (the
             verified cache), claims/ (LUN ids every worker agrees on)
target/      the target: the backend protocol, factory, lio/ (rtslib, configfs), tgt/
             (tgtd), access/ (policy and its files)
imagebuild/  sbpsctl image build|check: squashfs, upload as IMS lays it out, checks
config/      the one frozen configuration: definition, choices (enums), loading, rendering
core/        errors, model, target_state, actions, identity, interfaces (what the loop
             needs from components), decode (bounded), rejections, logs

Each module opens with a docstring saying what it owns and must not do.
"""

__version__ = "0.1.0"
