#!/usr/bin/python3
"""Shows that the policy decision tests can fail: breaks one rule at a time in a copy of
policy-module/, runs `make policy-test` there and expects it to fail with the named check.

Not part of `make test` (each case rebuilds and relinks, ~20 s): `make -C policy-module
mutation-test`.  Prints one line per case and `N caught, M missed`; exit 1 on a miss.
"""

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, file, text to replace, replacement, a FAIL line that must appear)
WORKER_ROLE = "role $2 types { $1_srpc_worker_t srpc_handler_domain };"
TE_TAIL = "allow srpc_handler_domain self:fifo_file rw_fifo_file_perms;"
CASES = [
    ("worker not MCS-constrained", "srpcd.if", "mcs_constrained($1_srpc_worker_t)", "",
     "denied by constraint: staff_u:staff_r:staff_srpc_worker_t:s0:c1 -> system_u:object_r:srpc_endpoint_t:s0:c2 sock_file { write }"),
    ("handler not MCS-constrained", "srpcd.if", "\tmcs_constrained($1)\n", "\n",
     "every srpc_handler_domain type is mcs_constrained"),
    ("user_r worker may call admin endpoints", "srpcd.te",
     "srpc_call_endpoint(staff_srpc_worker_t, srpc_admin_endpoint_t)",
     "srpc_call_endpoint(staff_srpc_worker_t, srpc_admin_endpoint_t)\n"
     "srpc_call_endpoint(user_srpc_worker_t, srpc_admin_endpoint_t)",
     "user_r workers may not call admin endpoints"),
    ("staff worker may not call admin endpoints", "srpcd.te",
     "srpc_call_endpoint(staff_srpc_worker_t, srpc_admin_endpoint_t)", "",
     "staff workers may call admin endpoints"),
    ("no sock_file write on the default endpoint", "srpcd.te",
     "srpc_workers_call_endpoint(srpc_endpoint_t)", "",
     "user workers call default endpoints"),
    ("no connectto on clone listeners", "srpcd.if",
     "allow $1 srpcd_t:unix_stream_socket connectto;", "",
     "own level: connect to a clone listener"),
    ("no dir search in the clone", "srpcd.te",
     "allow srpc_worker_domain srpc_clone_type:dir list_dir_perms;", "",
     "own level: the per-user clone directory"),
    ("handler exec without nnp_transition", "srpcd.if",
     "allow srpcd_t $1:process2 nnp_transition;", "",
     "srpc_handler_t under NO_NEW_PRIVS"),
    ("worker exec without nnp_transition", "srpcd.if",
     "allow srpcd_t $1_srpc_worker_t:process2 nnp_transition;", "",
     "staff worker under NO_NEW_PRIVS"),
    ("no handler type_transition", "srpcd.if",
     "type_transition srpc_worker_domain $2:process $1;", "",
     "type_transition user_srpc_worker_t srpc_endpoint_t:process srpc_handler_t"),
    ("no worker domain transition", "srpcd.if",
     "spec_domtrans_pattern(srpcd_t, srpc_worker_exec_t, $1_srpc_worker_t)", "",
     "monitor starts the staff worker"),
    ("worker not a user-exemption target", "srpcd.if",
     "domain_user_exemption_target($1_srpc_worker_t)", "",
     "monitor starts the staff worker"),
    ("roles do not hold the handler domains", "srpcd.if", WORKER_ROLE,
     "role $2 types $1_srpc_worker_t;", "valid context: staff_u:staff_r:srpc_handler_t:s0:c1"),
    ("staff_r holds the user_r worker", "srpcd.if", WORKER_ROLE,
     WORKER_ROLE + "\n\trole staff_r types user_srpc_worker_t;",
     "invalid context: staff_u:staff_r:user_srpc_worker_t:s0:c1"),
    ("handler reads shadow", "srpcd.te", TE_TAIL, TE_TAIL + "\nauth_read_shadow(srpc_handler_t)",
     "hostile handler: read /etc/shadow"),
    ("handler runs a shell", "srpcd.te", TE_TAIL, TE_TAIL + "\ncorecmd_exec_shell(srpc_handler_domain)",
     "hostile handler: exec /bin/sh"),
    ("handler opens TCP sockets", "srpcd.te", TE_TAIL,
     TE_TAIL + "\nallow srpc_handler_domain self:tcp_socket create_socket_perms;",
     "hostile handler: open a network socket"),
    ("handler signals and ptraces workers", "srpcd.te", TE_TAIL,
     TE_TAIL + "\nallow srpc_handler_domain srpc_worker_domain:process { ptrace signal sigkill };",
     "hostile handler: ptrace the staff worker at s0:c1"),
    ("handler writes the canonical tree", "srpcd.te", TE_TAIL,
     TE_TAIL + "\nallow srpc_handler_domain srpc_tree_t:dir rw_dir_perms;",
     "hostile handler: write the canonical tree"),
    ("a permissive handler", "srpcd.te", TE_TAIL, TE_TAIL + "\npermissive srpc_handler_t;",
     "no srpc type is permissive"),
    ("an unconfined handler", "srpcd.te", TE_TAIL, TE_TAIL + "\nunconfined_domain(srpc_handler_t)",
     "no srpc type in unconfined_domain_type"),
    ("children lose the limits srpc-launch set", "srpcd.te",
     "srpc_handler_domain }:process rlimitinh;", "srpc_handler_domain }:process signull;",
     "keeps the limits srpc-launch set"),
    ("monitor may not compute contexts", "srpcd.te", "selinux_compute_create_context(srpcd_t)", "",
     "handler context"),
    ("monitor may not bind the port", "srpcd.te",
     "allow srpcd_t srpc_port_t:tcp_socket name_bind;", "", "TLS listener on 5640"),
    ("srpcd cannot answer srpcctl", "srpcd.te", "unconfined_dbus_chat(srpcd_t)",
     "dbus_system_bus_client(srpcd_t)", "srpcd answers srpcctl"),
    ("port module on another port", "srpcd_port.cil", "tcp 5640", "tcp 5641",
     "portcon tcp 5640 is srpc_port_t"),
    ("tree files not endpoints", "srpcd.fc", "/srv/srpc/.*\t\t\t\t--",
     "/srv/srpc/[^/]+\t\t\t\t--", "file context /srv/srpc/demo/echo (file) is srpc_endpoint_t"),
    ("example endpoints not callable", "example/srpcexample.te",
     "srpc_workers_call_endpoint(srpcexample_endpoint_t)", "",
     "workers call the example's endpoints"),
    ("example handler may not read its data", "example/srpcexample.te",
     "allow srpcexample_handler_t srpcexample_data_t:file read_file_perms;", "",
     "the example's handler reads its data"),
    ("generated key not srpc_tls_key_t", "srpcd.te",
     'type_transition srpcd_t srpc_conf_t:file srpc_tls_key_t "server.key";', "",
     'type_transition srpcd_t srpc_conf_t:file srpc_tls_key_t "server.key"'),
    ("generator may not add to /etc/srpc/tls", "srpcd.te",
     "allow srpcd_t srpc_conf_t:dir add_entry_dir_perms;", "",
     "generate the pair in /etc/srpc/tls"),
]


def main():
    only = sys.argv[1:]
    caught, missed = 0, []
    for name, path, old, new, expect in CASES:
        if only and not any(o in name for o in only):
            continue
        with tempfile.TemporaryDirectory(prefix="srpc-mutation.") as work:
            copy = os.path.join(work, "policy-module")
            shutil.copytree(HERE, copy, ignore=shutil.ignore_patterns("tmp", "*.pp", "*.bz2"))
            target = os.path.join(copy, path)
            with open(target) as f:
                text = f.read()
            if old not in text:
                print(f"ERROR {name}: {path} no longer contains {old!r}")
                missed.append(name)
                continue
            with open(target, "w") as f:
                f.write(text.replace(old, new, 1))
            proc = subprocess.run(["make", "-s", "-C", copy, "policy-test"],
                                  capture_output=True, text=True)
            out = proc.stdout + proc.stderr
            if proc.returncode != 0 and expect in out:
                caught += 1
                summary = [l for l in out.splitlines() if l.startswith("policy-test:")]
                print(f"caught {name}: {summary[-1] if summary else 'build failed'}")
            else:
                missed.append(name)
                print(f"MISSED {name} (exit {proc.returncode}; wanted a line with {expect!r})")
                print("\n".join("    " + l for l in out.splitlines()[-15:]))
    print(f"mutation-test: {caught} caught, {len(missed)} missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
