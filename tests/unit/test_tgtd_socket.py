"""tgtd's management protocol as ``sbps.target.tgt.mgmt`` encodes it (tgt 1.0.85).

The layout is checked against tgt's own C header when a compiler and the header text are
at hand (the header is reproduced from usr/tgtadm.h of tgt 1.0.85, the fields only)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sbps.core.errors import BackendError
from sbps.target.tgt.mapping import half_made
from sbps.target.tgt.mgmt import NO_LUN, REQ, RSP, Mode, Op, Request, account_new
from sbps.target.tgt.tgtadm import Tgtadm, TgtLun

# usr/tgtadm.h of tgt v1.0.85 (unchanged up to 1.0.97): the two structs the socket carries.
HEADER = """
#include <stdint.h>
#define TGT_LLD_NAME_LEN 64
enum tgtadm_op { OP_NEW };
enum tgtadm_mode { MODE_SYSTEM };
struct tgtadm_req {
    enum tgtadm_mode mode; enum tgtadm_op op; char lld[TGT_LLD_NAME_LEN];
    uint32_t len; int32_t tid; uint64_t sid; uint64_t lun; uint32_t cid; uint32_t host_no;
    uint32_t device_type; uint32_t ac_dir; uint32_t pack; uint32_t force;
};
struct tgtadm_rsp { uint32_t err; uint32_t len; };
"""


def test_layout_matches_tgts_header(tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to check the layout with")
    fields = ("mode", "op", "lld", "len", "tid", "sid", "lun", "cid", "host_no",
              "device_type", "ac_dir", "pack", "force")
    src = tmp_path / "l.c"
    src.write_text(HEADER + "#include <stdio.h>\n#include <stddef.h>\nint main(void){"
                   'printf("%zu %zu", sizeof(struct tgtadm_req), sizeof(struct tgtadm_rsp));'
                   + "".join(f'printf(" %zu", offsetof(struct tgtadm_req, {f}));'
                             for f in fields) + "return 0;}\n")
    subprocess.run([cc, str(src), "-o", str(tmp_path / "l")], check=True, timeout=60)
    out = subprocess.run([str(tmp_path / "l")], capture_output=True, text=True, check=True,
                         timeout=10).stdout.split()
    assert (int(out[0]), int(out[1])) == (REQ.size, RSP.size) == (120, 8)
    assert [int(x) for x in out[2:]] == [0, 4, 8, 72, 76, 80, 88, 96, 100, 104, 108, 112, 116]


def test_request_is_header_then_nul_terminated_parameters() -> None:
    raw = Request(Mode.DEVICE, Op.UPDATE, "readonly=1", tid=3, lun=7).encode()
    mode, op, lld, length, tid, sid, lun, _cid, _host, _dev, ac_dir, _pack, force = \
        REQ.unpack(raw[:REQ.size])
    assert (mode, op, lld.rstrip(b"\0"), tid, lun, ac_dir, force) == (2, 5, b"iscsi", 3, 7, 0, 0)
    assert length == len(raw) == REQ.size + len(b"readonly=1\0")
    assert raw[REQ.size:] == b"readonly=1\0"
    # No parameters: no body at all, as tgtadm sends for --op show.
    show = Request(Mode.TARGET, Op.SHOW).encode()
    assert len(show) == REQ.size and REQ.unpack(show)[6] == NO_LUN
    bound = REQ.unpack(Request(Mode.ACCOUNT, Op.BIND, "user=u", tid=1, outgoing=True,
                               force=True).encode()[:REQ.size])
    assert (bound[10], bound[12]) == (1, 1)


def test_account_new_carries_user_then_secret() -> None:
    assert account_new("u1", "s3cret,with=comma").params == "user=u1,password=s3cret,with=comma"
    for user, secret in (("", "x" * 12), ("a,b", "x" * 12), ("u", "a\0b")):
        with pytest.raises(ValueError):
            account_new(user, secret)
    with pytest.raises(ValueError):
        Request(Mode.TARGET, Op.UPDATE, "x" * 9000).encode()


def test_a_secret_never_goes_to_tgtadms_command_line() -> None:
    adm = Tgtadm("/nonexistent/tgtadm")  # would fail to run; the refusal comes first
    with pytest.raises(BackendError, match="never put on a command line") as refused:
        adm(["--mode", "account", "--op", "new", "--user", "u", "--password", "p" * 12],
            operation="create account", obj="u")
    assert "p" * 12 not in str(refused.value)
    with pytest.raises(BackendError, match="cannot reach tgtd") as gone:
        Tgtadm("tgtadm", 999, timeout=1).socket.__class__(999, 1, prefix="/nonexistent/s")(
            account_new("u", "p" * 12), operation="create account", obj="u")
    assert gone.value.temporary and "p" * 12 not in str(gone.value)


def test_half_made_lun_is_one_without_file_identity_or_medium() -> None:
    lu = TgtLun(3, "disk", "IET     00010003", "beaf13", 0, 512, False, False, "rdwr", "")
    assert half_made(lu)
    done = TgtLun(3, "disk", "abcdef012345678", "abcdef0123456789abcdef012345678", 3, 512,
                  True, True, "rdwr", "/c/x")
    assert not half_made(done)
    assert not half_made(TgtLun(3, "disk", "IET     00010003", "beaf13", 3, 512, False, True,
                                "rdwr", "/admin/file"))
