#!/usr/bin/python3
"""Policy decision tests for the srpcd module, on any host (no SELinux kernel needed).

Links the given modules into a private copy of the installed policy store
(`semodule -p ALTROOT -n -i`), then asks the resulting binary policy:
  - access decisions with libselinux's audit2why module (TE rules, constraints, MCS),
    the same answer `audit2why -p` gives for an AVC line;
  - type_transition rules and type attributes with setools (what `sesearch -T` reads);
  - context validity with libsepol's sepol_check_context (ctypes);
  - file contexts with matchpathcon against the built file_contexts.

Every check says what it expects and why; a failure prints the policy's own reason.
Exit status: 0 when every check passes, 1 otherwise, 2 when the policy could not be built.

Usage: policy_test.py MODULE... (srpcd.pp srpcd_port.cil example/srpcexample.pp)
"""

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
import tempfile
import time

import selinux.audit2why as audit2why
import setools

# A test-only SELinux user that may hold user_r at any level: stock user_u's range is s0
# alone, so a user_r worker at s0:c1 needs either a widened user_u or a user like this one
# (docs/selinux.md "Levels").  Linked into the scratch store only.
TEST_USER_CIL = """\
(user srpctest_u)
(userrole srpctest_u user_r)
(userlevel srpctest_u (s0))
(userrange srpctest_u ((s0) (s0 (range c0 c1023))))
"""

REASONS = {v: k for k, v in vars(audit2why).items() if k.isupper() and isinstance(v, int)}

# Each worker domain with an SELinux user whose range allows categories.
WORKERS = {
    "user": "srpctest_u:user_r:user_srpc_worker_t",
    "staff": "staff_u:staff_r:staff_srpc_worker_t",
    "sysadm": "sysadm_u:sysadm_r:sysadm_srpc_worker_t",
    "unconfined": "unconfined_u:unconfined_r:unconfined_srpc_worker_t",
}
# Handler domains and their endpoint types.
HANDLERS = {
    "srpc_handler_t": "srpc_endpoint_t",
    "srpc_admin_handler_t": "srpc_admin_endpoint_t",
    "srpcexample_handler_t": "srpcexample_endpoint_t",
}
SRPCD = "system_u:system_r:srpcd_t:s0"
FRONT = "system_u:system_r:srpc_front_t:s0"


def obj(t, level="s0"):
    return f"system_u:object_r:{t}:{level}"


def listener(level):
    return f"system_u:system_r:srpcd_t:{level}"


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed.append(what)
            print(f"FAIL {what}" + (f"\n     {detail}" if detail else ""))


def build_store(modules, workdir):
    """Copies the installed store and policy into workdir and links the modules there."""
    root = os.path.join(workdir, "root")
    os.makedirs(os.path.join(root, "var/lib"))
    os.makedirs(os.path.join(root, "etc"))
    shutil.copytree("/var/lib/selinux", os.path.join(root, "var/lib/selinux"), symlinks=True)
    shutil.copytree("/etc/selinux", os.path.join(root, "etc/selinux"), symlinks=True)
    test_user = os.path.join(workdir, "srpctest_user.cil")
    with open(test_user, "w") as f:
        f.write(TEST_USER_CIL)
    cmd = ["semodule", "-p", root, "-n"]
    for m in list(modules) + [test_user]:
        cmd += ["-i", m]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    noise = "libsemanage.add_user: user sddm not in password file"
    err = "\n".join(l for l in proc.stderr.splitlines() if noise not in l)
    if proc.returncode != 0:
        print(f"policy-test: {' '.join(cmd)} failed ({proc.returncode}):\n{err}", file=sys.stderr)
        sys.exit(2)
    name = "default"
    with open("/etc/selinux/config") as f:
        for line in f:
            if line.startswith("SELINUXTYPE="):
                name = line.split("=", 1)[1].strip()
    poldir = os.path.join(root, "etc/selinux", name)
    pols = sorted(p for p in os.listdir(os.path.join(poldir, "policy")) if p.startswith("policy."))
    return os.path.join(poldir, "policy", pols[-1]), os.path.join(poldir, "contexts/files/file_contexts")


class Sepol:
    """sepol_check_context on a policy file (libsepol, no kernel)."""

    def __init__(self, policy):
        self.lib = ctypes.CDLL(ctypes.util.find_library("sepol") or "libsepol.so.2")
        libc = ctypes.CDLL(None)
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        self.lib.sepol_set_policydb_from_file.argtypes = [ctypes.c_void_p]
        self.lib.sepol_check_context.argtypes = [ctypes.c_char_p]
        fp = libc.fopen(policy.encode(), b"r")
        if not fp or self.lib.sepol_set_policydb_from_file(fp) != 0:
            print(f"policy-test: libsepol could not load {policy}", file=sys.stderr)
            sys.exit(2)
        libc.fclose(fp)

    def valid(self, context):
        # libsepol reports an invalid context on stderr; keep the summary readable.
        saved = os.dup(2)
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            try:
                return self.lib.sepol_check_context(context.encode()) == 0
            finally:
                os.dup2(saved, 2)
                os.close(saved)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    started = time.monotonic()
    r = Results()
    with tempfile.TemporaryDirectory(prefix="srpc-policy-test.") as work:
        policy, fc = build_store(argv[1:], work)
        linked = time.monotonic()
        if audit2why.init(policy) != 0:
            print(f"policy-test: audit2why could not load {policy}", file=sys.stderr)
            return 2
        pol = setools.SELinuxPolicy(policy)
        sepol = Sepol(policy)
        run_checks(r, pol, sepol, fc)
        audit2why.finish()
    took = time.monotonic() - started
    print(
        f"policy-test: {r.passed} passed, {len(r.failed)} failed "
        f"(link {linked - started:.1f} s, checks {took - (linked - started):.1f} s)"
    )
    return 1 if r.failed else 0


def run_checks(r, pol, sepol, fc):
    def decide(s, t, c, p):
        rc, _why = audit2why.analyze(s, t, c, [p])
        return rc, _why

    def allowed(s, t, c, p, why):
        rc, detail = decide(s, t, c, p)
        r.check(rc == audit2why.ALLOW, f"allowed: {s} -> {t} {c} {{ {p} }} ({why})",
                f"got {REASONS.get(rc, rc)} {detail or ''}".strip())

    def denied(s, t, c, p, why, by=None):
        """by: 'constraint' (MCS/UBAC), 'te' (no allow rule), or None (either)."""
        rc, detail = decide(s, t, c, p)
        want = {"constraint": {audit2why.CONSTRAINT},
                "te": {audit2why.TERULE, audit2why.DONTAUDIT, audit2why.BOOLEAN}}.get(
            by, {audit2why.CONSTRAINT, audit2why.TERULE, audit2why.DONTAUDIT,
                 audit2why.BOOLEAN, audit2why.RBAC})
        r.check(rc in want, f"denied{' by ' + by if by else ''}: {s} -> {t} {c} {{ {p} }} ({why})",
                f"got {REASONS.get(rc, rc)} {detail or ''}".strip())

    # ---- Contexts in the contract -------------------------------------------------------
    for ctx in [
        "staff_u:staff_r:staff_srpc_worker_t:s0:c1",
        "user_u:user_r:user_srpc_worker_t:s0",
        "srpctest_u:user_r:user_srpc_worker_t:s0:c1",
        "sysadm_u:sysadm_r:sysadm_srpc_worker_t:s0:c1",
        "staff_u:sysadm_r:sysadm_srpc_worker_t:s0:c1",
        "root:sysadm_r:sysadm_srpc_worker_t:s0",
        "unconfined_u:unconfined_r:unconfined_srpc_worker_t:s0:c1",
        "unconfined_u:unconfined_r:unconfined_srpc_worker_t:s0-s0:c0.c1023",
        "staff_u:staff_r:srpc_handler_t:s0:c1",
        "staff_u:staff_r:srpc_admin_handler_t:s0:c1",
        "user_u:user_r:srpc_handler_t:s0",
        "srpctest_u:user_r:srpcexample_handler_t:s0:c1",
        "unconfined_u:unconfined_r:srpcexample_handler_t:s0:c1",
        SRPCD, FRONT, "system_u:system_r:srpcd_t:s0:c1",
        obj("srpc_session_t", "s0:c1"), obj("srpc_endpoint_t", "s0:c1,c2"),
    ]:
        r.check(sepol.valid(ctx), f"valid context: {ctx}")
    for ctx, why in [
        ("user_u:user_r:user_srpc_worker_t:s0:c1", "stock user_u range is s0 only"),
        ("staff_u:staff_r:user_srpc_worker_t:s0:c1", "staff_r does not hold the user_r worker"),
        ("user_u:user_r:staff_srpc_worker_t:s0", "user_r does not hold the staff_r worker"),
        ("system_u:system_r:staff_srpc_worker_t:s0", "workers are not system_r domains"),
    ]:
        r.check(not sepol.valid(ctx), f"invalid context: {ctx} ({why})")

    # ---- MCS: alice at s0:c1, bob at s0:c2 ---------------------------------------------
    for name, base in WORKERS.items():
        alice = f"{base}:s0:c1"
        for lvl, ok in [("s0:c1", True), ("s0:c2", False)]:
            cases = [
                (listener(lvl), "unix_stream_socket", "connectto", "connect to a clone listener"),
                (obj("srpc_endpoint_t", lvl), "sock_file", "write", "connect() to a clone node"),
                (obj("srpc_session_t", lvl), "dir", "search", "the per-user clone directory"),
                (obj("srpc_tree_t", lvl), "dir", "search", "a clone directory"),
                (obj("srpc_tree_t", lvl), "dir", "read", "list a clone directory"),
            ]
            for t, c, p, why in cases:
                if ok:
                    allowed(alice, t, c, p, f"{name} worker, own level: {why}")
                else:
                    denied(alice, t, c, p, f"{name} worker, other user's level: {why}", "constraint")
        denied(alice, listener("s0-s0:c0.c1023"), "unix_stream_socket", "connectto",
               f"{name} worker, a listener ranged over every category", "constraint")
        # Objects at s0 (the runtime dirs) stay reachable from every level.
        allowed(alice, obj("srpc_runtime_t"), "dir", "search", f"{name} worker walks /run/srpc")
        allowed(alice, "system_u:system_r:srpcd_t:s0", "unix_stream_socket", "write",
                f"{name} worker uses its link socketpair")
        allowed(alice, obj("etc_t"), "file", "read", f"{name} worker reads /etc/passwd")

    # ---- The admin endpoint type --------------------------------------------------------
    for lvl in ["s0:c1"]:
        denied(f"{WORKERS['user']}:{lvl}", obj("srpc_admin_endpoint_t", lvl), "sock_file", "write",
               "user_r workers may not call admin endpoints", "te")
        for name in ["staff", "sysadm", "unconfined"]:
            allowed(f"{WORKERS[name]}:{lvl}", obj("srpc_admin_endpoint_t", lvl), "sock_file",
                    "write", f"{name} workers may call admin endpoints")
        for name, base in WORKERS.items():
            allowed(f"{base}:{lvl}", obj("srpc_endpoint_t", lvl), "sock_file", "write",
                    f"{name} workers call default endpoints")
            allowed(f"{base}:{lvl}", obj("srpcexample_endpoint_t", lvl), "sock_file", "write",
                    f"{name} workers call the example's endpoints (srpc_workers_call_endpoint)")
            allowed(f"{base}:{lvl}", obj("srpc_admin_endpoint_t", lvl), "sock_file", "getattr",
                    f"{name} workers stat every endpoint")
    denied("user_u:user_r:user_srpc_worker_t:s0", obj("srpc_admin_endpoint_t"), "sock_file",
           "write", "user_r worker at a shared s0", "te")

    # ---- The monitor starts every domain ------------------------------------------------
    for name, base in WORKERS.items():
        w = f"{base}:s0:c1"
        allowed(SRPCD, w, "process", "transition", f"monitor starts the {name} worker")
        allowed(SRPCD, w, "process2", "nnp_transition", f"{name} worker under NO_NEW_PRIVS")
        allowed(w, obj("srpc_worker_exec_t"), "file", "entrypoint", f"{name} worker entrypoint")
        allowed(w, SRPCD, "process", "sigchld", f"{name} worker exit reaches the monitor")
        allowed(SRPCD, w, "process", "sigkill", f"monitor ends the {name} worker")
        allowed(SRPCD, w, "process", "rlimitinh", f"{name} worker keeps the limits srpc-launch set")
        denied(SRPCD, w, "process", "noatsecure",
               f"{name} worker runs with AT_SECURE (LD_* from PAM ignored)", "te")
        for handler, entry in HANDLERS.items():
            h = base.rsplit(":", 1)[0] + f":{handler}:s0:c1"
            allowed(SRPCD, h, "process", "transition", f"monitor starts {handler} for {name}")
            allowed(SRPCD, h, "process2", "nnp_transition", f"{handler} under NO_NEW_PRIVS")
            allowed(SRPCD, h, "process", "rlimitinh", f"{handler} keeps the limits srpc-launch set")
            denied(SRPCD, h, "process", "noatsecure", f"{handler} runs with AT_SECURE", "te")
    for handler, entry in HANDLERS.items():
        h = f"staff_u:staff_r:{handler}:s0:c1"
        allowed(h, obj(entry), "file", "entrypoint", f"{handler} is entered by {entry}")
        allowed(SRPCD, obj(entry), "file", "execute", f"monitor execs {entry} handler files")
        denied(h, obj("srpc_worker_exec_t"), "file", "entrypoint",
               f"{handler} is not entered by srpc-worker", "te")
    allowed(SRPCD, FRONT, "process", "transition", "monitor starts the front")
    allowed(SRPCD, FRONT, "process2", "nnp_transition", "front under NO_NEW_PRIVS")
    allowed(SRPCD, FRONT, "process", "rlimitinh", "front keeps its fd limit")
    allowed(SRPCD, obj("srpcd_exec_t"), "file", "execute_no_trans", "srpc-launch stays srpcd_t")
    denied(SRPCD, "staff_u:staff_r:staff_t:s0:c1", "process", "transition",
           "the monitor starts srpc domains only, not user shells", "te")

    # type_transition rules, matched as `sesearch -T -s S -t T` does (a rule written on an
    # attribute applies to its member types).  One pass over the rules: a query per pair
    # would read the whole policy each time.
    members = {}

    def expand(x):
        key = str(x)
        if key not in members:
            members[key] = {str(t) for t in x.expand()}
        return members[key]

    rules = [rule for rule in setools.TERuleQuery(pol, ruletype=["type_transition"],
                                                  tclass=["process", "dir"]).results()]

    def type_trans(source, target, tclass):
        return sorted({str(rule.default) for rule in rules
                       if str(rule.tclass) == tclass and source in expand(rule.source)
                       and target in expand(rule.target)})

    for name, base in WORKERS.items():
        wt = base.split(":")[2]
        for handler, entry in HANDLERS.items():
            got = type_trans(wt, entry, "process")
            r.check(got == [handler], f"type_transition {wt} {entry}:process {handler}",
                    f"got {got}")
        got = type_trans(wt, "srpc_worker_exec_t", "process")
        r.check(got == [], f"no type_transition {wt} srpc_worker_exec_t:process", f"got {got}")
    got = type_trans("srpcd_t", "srpc_front_exec_t", "process")
    r.check(got == ["srpc_front_t"], "type_transition srpcd_t srpc_front_exec_t:process srpc_front_t",
            f"got {got}")
    got = type_trans("srpcd_t", "srpc_worker_exec_t", "process")
    r.check(got == [], "workers start only by explicit exec context (no srpcd_t type_transition)",
            f"got {got}")
    got = type_trans("srpcd_t", "var_run_t", "dir")
    r.check(got == ["srpc_runtime_t"], "type_transition srpcd_t var_run_t:dir srpc_runtime_t",
            f"got {got}")

    # srpcd --generate-certificate: the key created in /etc/srpc/tls gets srpc_tls_key_t by
    # name (what srpcd.fc says); any other name there gets the directory's srpc_conf_t.
    named = sorted((str(rule.filename), str(rule.default)) for rule in setools.TERuleQuery(
        pol, ruletype=["type_transition"], source="srpcd_t", target="srpc_conf_t",
        tclass=["file"]).results() if hasattr(rule, "filename"))
    r.check(named == [("server.key", "srpc_tls_key_t")],
            'type_transition srpcd_t srpc_conf_t:file srpc_tls_key_t "server.key"', f"got {named}")

    # ---- What the monitor itself may do -------------------------------------------------
    for perm in ["setexec", "setfscreate", "setsockcreate", "setrlimit"]:
        allowed(SRPCD, SRPCD, "process", perm, "exec, file and socket contexts, user limits")
    allowed(SRPCD, listener("s0:c1"), "unix_stream_socket", "create", "clone listener at a level")
    allowed(SRPCD, obj("srpc_endpoint_t", "s0:c1"), "sock_file", "create", "clone node at a level")
    allowed(SRPCD, obj("srpc_session_t", "s0:c1"), "dir", "create", "users/<user> at a level")
    allowed(SRPCD, obj("srpc_tree_t", "s0:c2"), "dir", "add_name", "clone directories")
    allowed(SRPCD, obj("srpcexample_endpoint_t", "s0:c2"), "sock_file", "rename",
            "staging to clone, also application endpoint types")
    for t in ["srpc_endpoint_t", "srpc_admin_endpoint_t", "srpcexample_endpoint_t"]:
        for p in ["relabelfrom", "relabelto"]:
            allowed(SRPCD, obj(t, "s0:c1"), "sock_file", p, "relabel clone sockets")
        allowed(obj(t, "s0:c1"), obj("tmpfs_t"), "filesystem", "associate", "clone nodes on /run")
    for p in ["relabelfrom", "relabelto"]:
        allowed(SRPCD, obj("srpc_tree_t", "s0:c1"), "dir", p, "relabel clone directories")
    denied(SRPCD, obj("shadow_t"), "sock_file", "relabelto", "only srpc types", "te")
    denied(SRPCD, obj("var_t"), "sock_file", "create", "only srpc types in clones", "te")
    allowed(SRPCD, "system_u:object_r:security_t:s0", "security", "compute_create", "handler context")
    allowed(SRPCD, "system_u:object_r:security_t:s0", "security", "check_context", "validate contexts")
    for t, why in [("selinux_config_t", "seusers"), ("file_context_t", "file_contexts"),
                   ("default_context_t", "default contexts"), ("srpc_conf_t", "srpcd.toml"),
                   ("srpc_tls_key_t", "TLS key"), ("etc_t", "pam.d, limits.conf")]:
        allowed(SRPCD, obj(t), "file", "read", f"monitor reads {why}")
    allowed(SRPCD, obj("srpc_port_t"), "tcp_socket", "name_bind", "TLS listener on 5640")
    # The first start's certificate (srpcd --generate-certificate, ExecStartPre).
    allowed(SRPCD, obj("srpc_conf_t"), "dir", "add_name", "generate the pair in /etc/srpc/tls")
    for t in ["srpc_tls_key_t", "srpc_conf_t"]:
        for p in ["create", "write"]:
            allowed(SRPCD, obj(t), "file", p, f"generate the pair: {p} the {t} file")
    for t in ["srpc_tls_key_t", "srpc_conf_t"]:
        denied(SRPCD, obj(t), "file", "unlink", "an existing pair is never replaced", "te")
    denied(SRPCD, obj("srpc_conf_t"), "dir", "remove_name", "nor removed from /etc/srpc/tls", "te")
    denied(SRPCD, obj("etc_t"), "file", "create", "no file elsewhere in /etc", "te")
    denied(FRONT, obj("srpc_conf_t"), "dir", "add_name", "the front writes no configuration", "te")
    denied(SRPCD, SRPCD, "capability", "sys_admin", "no sys_admin (trusted.delegate probe refused)")
    allowed(SRPCD, obj("sysctl_fs_t"), "file", "read", "/proc/sys/fs/nr_open (nofile unlimited)")
    for s_ in [SRPCD, FRONT, f"{WORKERS['user']}:s0:c1", "staff_u:staff_r:srpcexample_handler_t:s0:c1"]:
        allowed(s_, obj("sysctl_vm_overcommit_t"), "file", "read", "glibc malloc's overcommit_memory")
    denied(SRPCD, obj("srpc_worker_exec_t"), "file", "execute_no_trans",
           "srpc-worker runs only in a worker domain", "te")
    allowed(SRPCD, f"{WORKERS['staff']}:s0:c1", "file", "read", "/proc/<pid>/stat of a worker")
    denied(SRPCD, "system_u:system_r:sshd_t:s0", "file", "read", "/proc of unrelated processes")
    denied(SRPCD, f"{WORKERS['staff']}:s0:c1", "process", "ptrace", "never ptrace a worker", "te")
    allowed(SRPCD, obj("srpc_endpoint_t"), "lnk_file", "getattr", "lstat a symlink it skips")
    denied(SRPCD, obj("srpc_endpoint_t"), "lnk_file", "read", "and never follows it", "te")
    denied(SRPCD, obj("unreserved_port_t"), "tcp_socket", "name_bind", "no other port", "te")
    allowed(SRPCD, "system_u:system_r:chkpwd_t:s0", "process", "transition", "pam_unix's unix_chkpwd")
    denied(SRPCD, obj("shadow_t"), "file", "read", "pam_unix asks unix_chkpwd instead")
    ports = [str(pc.context.type_) for pc in pol.portcons()
             if pc.protocol.name.lower() == "tcp" and pc.ports.low <= 5640 <= pc.ports.high]
    r.check(ports[:1] == ["srpc_port_t"], "portcon tcp 5640 is srpc_port_t (srpcd_port.cil)",
            f"got {ports}")

    # ---- The admin interface on the system bus --------------------------------------
    allowed(SRPCD, "system_u:system_r:system_dbusd_t:s0", "dbus", "acquire_svc", "own org.srpc.Srpcd1")
    allowed(SRPCD, obj("system_dbusd_runtime_t"), "sock_file", "write", "connect to the system bus")
    allowed("unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023", SRPCD, "dbus", "send_msg",
            "srpcctl as root")
    allowed(SRPCD, "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023", "dbus", "send_msg",
            "srpcd answers srpcctl")
    denied("user_u:user_r:user_t:s0", SRPCD, "dbus", "send_msg", "a confined user cannot call it", "te")
    denied(f"{WORKERS['staff']}:s0:c1", SRPCD, "dbus", "send_msg", "nor can a worker", "te")

    # ---- The front ---------------------------------------------------------------------
    allowed(FRONT, SRPCD, "tcp_socket", "accept", "TLS connections on srpcd's listener")
    allowed(FRONT, SRPCD, "unix_stream_socket", "read", "the monitor channel")
    denied(FRONT, obj("srpc_tls_key_t"), "file", "read", "the key reaches the front in memory", "te")
    denied(FRONT, obj("srpc_port_t"), "tcp_socket", "name_bind", "only srpcd binds", "te")
    denied(FRONT, obj("srpc_endpoint_t"), "sock_file", "write", "the front calls no endpoint", "te")
    allowed(FRONT, FRONT, "process", "setrlimit", "the front makes its core limit 0")
    allowed(FRONT, obj("devlog_t"), "sock_file", "write", "the front logs to journald")
    allowed(f"{WORKERS['staff']}:s0:c1", obj("devlog_t"), "sock_file", "write",
            "workers log to journald")
    denied(FRONT, obj("shell_exec_t"), "file", "execute", "the front runs no program", "te")

    # ---- Hostile handlers and workers ---------------------------------------------------
    hostile = [
        (obj("shadow_t"), "file", "read", "read /etc/shadow"),
        (obj("user_home_t"), "file", "read", "read a user's home"),
        (obj("user_home_dir_t"), "dir", "search", "enter a home directory"),
        (obj("shell_exec_t"), "file", "execute", "exec /bin/sh"),
        (obj("bin_t"), "file", "execute", "exec programs"),
        (obj("srpc_tree_t"), "dir", "write", "write the canonical tree"),
        (obj("srpc_tree_t"), "dir", "add_name", "create in the canonical tree"),
        (obj("srpc_endpoint_t"), "file", "write", "rewrite a handler file"),
        (obj("srpc_tls_key_t"), "file", "read", "read the TLS key"),
        (obj("srpc_conf_t"), "file", "read", "read srpcd's configuration"),
    ]
    for handler in HANDLERS:
        h = f"staff_u:staff_r:{handler}:s0:c1"
        for t, c, p, why in hostile:
            denied(h, t, c, p, f"hostile handler: {why}", "te")
        denied(h, h, "tcp_socket", "create", "hostile handler: open a network socket", "te")
        denied(h, h, "udp_socket", "create", "hostile handler: open a network socket", "te")
        # (Unix sockets of its own, bind and listen included, every domain may have in
        # Debian's policy: domain.te calls setrans_translate_context(domain).)
        allowed(h, h, "unix_stream_socket", "create", "tokio's signal socketpair")
        denied(h, "system_u:system_r:syslogd_t:s0", "unix_stream_socket", "connectto",
               "hostile handler: connect to a system service", "te")
        for name, base in WORKERS.items():
            for lvl in ["s0:c1", "s0:c2"]:
                for p in ["ptrace", "signal", "sigkill"]:
                    denied(h, f"{base}:{lvl}", "process", p,
                           f"hostile handler: {p} the {name} worker at {lvl}")
        other = f"srpctest_u:user_r:{handler}:s0:c2"
        denied(h, other, "process", "signal", "hostile handler: signal another user's handler")
        allowed(h, listener("s0:c1"), "unix_stream_socket", "accept", "accept on its endpoint")
        allowed(h, listener("s0:c1"), "unix_stream_socket", "getopt", "SO_PEERSEC of callers")
        denied(h, listener("s0:c2"), "unix_stream_socket", "accept",
               "another user's listener", "constraint")
    allowed("staff_u:staff_r:srpcexample_handler_t:s0:c1", obj("srpcexample_data_t"), "file", "read",
            "the example's handler reads its data")
    for handler in ["srpc_handler_t", "srpc_admin_handler_t"]:
        h = f"staff_u:staff_r:{handler}:s0:c1"
        allowed(h, obj("etc_t"), "file", "read", f"{handler} resolves names (/etc/passwd)")
        allowed(h, obj("proc_t"), "file", "read", f"{handler} reads /proc/loadavg")
    for t, c, p, why in [("etc_t", "file", "read", "/etc/passwd"), ("proc_t", "file", "read", "/proc")]:
        denied("staff_u:staff_r:srpcexample_handler_t:s0:c1", obj(t), c, p,
               f"an application's handler gets only what its module grants: {why}", "te")
    denied("staff_u:staff_r:srpc_handler_t:s0:c1", obj("srpcexample_data_t"), "file", "read",
           "other handlers do not", "te")
    for name, base in WORKERS.items():
        w = f"{base}:s0:c1"
        for t, c, p, why in hostile:
            denied(w, t, c, p, f"{name} worker: {why}", "te")
        denied(w, w, "tcp_socket", "create", f"{name} worker: open a network socket", "te")
        denied(w, f"{WORKERS['staff']}:s0:c2", "process", "signal", f"{name} worker: signal a worker")
        denied(w, f"{WORKERS['staff']}:s0:c2", "process", "ptrace", f"{name} worker: ptrace a worker")
        denied(w, SRPCD, "process", "ptrace", f"{name} worker: ptrace the monitor", "te")

    # ---- No permissive, no unconfined, every worker and handler MCS-constrained ---------
    srpc_types = [t for t in pol.types() if str(t).startswith(("srpc", "srpcd")) or "_srpc_" in str(t)]
    r.check(len(srpc_types) >= 20, f"found the srpc types ({len(srpc_types)})")
    permissive = [str(t) for t in srpc_types if t.ispermissive]
    r.check(permissive == [], "no srpc type is permissive", f"permissive: {permissive}")
    # srpcd_t is in can_change_object_identity through auth_use_pam (PAM's kerberos replay
    # cache, kerberos_manage_host_rcache); it labels every clone object system_u itself.
    for attr, allowed_members in [
        ("unconfined_domain_type", set()), ("can_change_object_identity", {"srpcd_t"}),
        ("can_load_policy", set()), ("can_setenforce", set()),
        ("can_write_shadow_passwords", set()), ("can_relabelto_shadow_passwords", set()),
    ]:
        members = {str(t) for t in pol.lookup_typeattr(attr).expand()}
        bad = sorted(members & {str(t) for t in srpc_types} - allowed_members)
        r.check(bad == [], f"no srpc type in {attr}", f"members: {bad}")
    constrained = {str(t) for t in pol.lookup_typeattr("mcs_constrained_type").expand()}
    for attr in ["srpc_worker_domain", "srpc_handler_domain"]:
        members = sorted(str(t) for t in pol.lookup_typeattr(attr).expand())
        want = ({WORKERS[n].split(":")[2] for n in WORKERS} if attr == "srpc_worker_domain"
                else set(HANDLERS))
        r.check(set(members) == want, f"{attr} is {sorted(want)}", f"got {members}")
        loose = [m for m in members if m not in constrained]
        r.check(loose == [], f"every {attr} type is mcs_constrained", f"not constrained: {loose}")

    # ---- File contexts (the installed layout) -------------------------------------------
    expected = [
        ("/usr/sbin/srpcd", "file", "srpcd_exec_t"),
        ("/usr/libexec/srpc/srpc-launch", "file", "srpcd_exec_t"),
        ("/usr/libexec/srpc/srpc-front", "file", "srpc_front_exec_t"),
        ("/usr/libexec/srpc/srpc-worker", "file", "srpc_worker_exec_t"),
        ("/etc/srpc/srpcd.toml", "file", "srpc_conf_t"),
        ("/etc/srpc/tls/server.crt", "file", "srpc_conf_t"),
        ("/etc/srpc/tls/server.key", "file", "srpc_tls_key_t"),
        ("/run/srpc", "dir", "srpc_runtime_t"),
        ("/run/srpc/users", "dir", "srpc_runtime_t"),
        ("/run/srpc/users/alice", "dir", "<<none>>"),
        ("/run/srpc/staging/x", "sock_file", "<<none>>"),
        ("/srv/srpc", "dir", "srpc_tree_t"),
        ("/srv/srpc/demo", "dir", "srpc_tree_t"),
        ("/srv/srpc/demo/echo", "file", "srpc_endpoint_t"),
        ("/srv/srpc/example", "dir", "srpc_tree_t"),
        ("/srv/srpc/demo/link", "lnk_file", "srpc_endpoint_t"),
        ("/srv/srpc/demo/sock", "sock_file", "srpc_endpoint_t"),
        ("/srv/srpc/example/hello", "file", "srpcexample_endpoint_t"),
        ("/var/lib/srpcexample/greeting", "file", "srpcexample_data_t"),
    ]
    answers = {}
    for mode in sorted({m for _, m, _ in expected}):
        paths = [p for p, m, _ in expected if m == mode]
        out = subprocess.run(["matchpathcon", "-N", "-f", fc, "-m", mode] + paths,
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            fields = line.split()
            if len(fields) == 2:
                answers[(fields[0], mode)] = fields[1]
    for path, mode, want in expected:
        got = answers.get((path, mode), "?")
        got = got if got == "<<none>>" or got.count(":") < 3 else got.split(":")[2]
        r.check(got == want, f"file context {path} ({mode}) is {want}", f"got {got}")

if __name__ == "__main__":
    sys.exit(main(sys.argv))
