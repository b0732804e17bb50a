//! What the monitor tells the launcher: the program, its argv and environment,
//! the ids, the resource limits and the cgroup, serialised as NUL-terminated
//! `key`, `value` pairs (binary-safe for anything a `CString` can hold). It
//! travels through a pipe, not argv or the environment: the launcher runs as
//! root, so nothing the user's environment holds may reach its dynamic loader,
//! and argv is readable by everyone in /proc.

use std::ffi::{CStr, CString};

use crate::rlimit::Rlimit;
use crate::spawn::Credentials;

/// The most a spec may hold: it is written into a pipe before the fork and
/// must fit its buffer (64 KiB by default), so the write never blocks.
pub(crate) const MAX_SPEC: usize = 60 * 1024;

/// One spawn, as the launcher applies it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Spec {
    pub program: CString,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub credentials: Option<Credentials>,
    pub rlimits: Vec<Rlimit>,
    /// The cgroup directory whose `cgroup.procs` the launcher joins.
    pub cgroup: Option<CString>,
    /// The SELinux context the program is exec'd in.
    pub exec_context: Option<CString>,
}

impl Spec {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |key: &str, value: &[u8]| {
            out.extend_from_slice(key.as_bytes());
            out.push(0);
            out.extend_from_slice(value);
            out.push(0);
        };
        put("program", self.program.as_bytes());
        for arg in &self.argv {
            put("arg", arg.as_bytes());
        }
        for var in &self.env {
            put("env", var.as_bytes());
        }
        if let Some(c) = &self.credentials {
            let mut ids = format!("{} {}", c.uid, c.gid);
            for g in &c.groups {
                ids.push(' ');
                ids.push_str(&g.to_string());
            }
            put("ids", ids.as_bytes());
        }
        for l in &self.rlimits {
            put("rlimit", l.encode().as_bytes());
        }
        if let Some(cg) = &self.cgroup {
            put("cgroup", cg.as_bytes());
        }
        if let Some(c) = &self.exec_context {
            put("context", c.as_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Spec, String> {
        let mut fields = bytes.split(|b| *b == 0);
        // A well-formed spec ends in a NUL, which leaves one empty tail.
        if bytes.last().is_some_and(|b| *b != 0) {
            return Err("spec does not end in NUL".into());
        }
        let mut spec = Spec::default();
        let mut program = None;
        while let Some(key) = fields.next() {
            if key.is_empty() && fields.clone().next().is_none() {
                break;
            }
            let value = fields
                .next()
                .ok_or_else(|| "spec: key without a value".to_owned())?;
            let cstring = || CString::new(value).map_err(|e| e.to_string());
            let text = || std::str::from_utf8(value).map_err(|e| e.to_string());
            match key {
                b"program" => program = Some(cstring()?),
                b"arg" => spec.argv.push(cstring()?),
                b"env" => spec.env.push(cstring()?),
                b"ids" => spec.credentials = Some(parse_ids(text()?)?),
                b"rlimit" => spec.rlimits.push(Rlimit::decode(text()?)?),
                b"cgroup" => spec.cgroup = Some(cstring()?),
                b"context" => spec.exec_context = Some(cstring()?),
                other => {
                    return Err(format!(
                        "spec: unknown key {:?}",
                        String::from_utf8_lossy(other)
                    ))
                }
            }
        }
        spec.program = program.ok_or_else(|| "spec: no program".to_owned())?;
        if spec.argv.is_empty() {
            return Err("spec: no argv".into());
        }
        Ok(spec)
    }
}

fn parse_ids(text: &str) -> Result<Credentials, String> {
    let mut numbers = text
        .split(' ')
        .map(|n| n.parse::<u32>().map_err(|_| format!("spec: bad id {n:?}")));
    let uid = numbers.next().ok_or("spec: no uid")??;
    let gid = numbers.next().ok_or("spec: no gid")??;
    let groups = numbers.collect::<Result<Vec<u32>, String>>()?;
    Ok(Credentials { uid, gid, groups })
}

/// `CStr` of a spec field, for the launcher's messages.
pub(crate) fn lossy(s: &CStr) -> String {
    s.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rlimit::Resource;

    #[test]
    fn a_spec_round_trips() {
        let spec = Spec {
            program: c"/bin/sh".to_owned(),
            argv: vec![
                c"/bin/sh".to_owned(),
                c"-c".to_owned(),
                c"echo 'a b'".to_owned(),
            ],
            env: vec![c"A=1".to_owned(), c"EMPTY=".to_owned()],
            credentials: Some(Credentials {
                uid: 1001,
                gid: 1002,
                groups: vec![],
            }),
            rlimits: vec![Rlimit {
                resource: Resource::Nofile,
                soft: Some(777),
                hard: None,
            }],
            cgroup: Some(c"/sys/fs/cgroup/srpcd/u-1001".to_owned()),
            exec_context: Some(c"staff_u:staff_r:staff_srpc_worker_t:s0:c1,c2".to_owned()),
        };
        assert_eq!(Spec::decode(&spec.encode()), Ok(spec.clone()));
        let with_groups = Spec {
            credentials: Some(Credentials {
                uid: 1,
                gid: 2,
                groups: vec![3, 4],
            }),
            ..spec
        };
        assert_eq!(Spec::decode(&with_groups.encode()), Ok(with_groups));
    }

    #[test]
    fn a_bad_spec_is_an_error() {
        for bad in [
            &b""[..],
            b"program\0/x\0",
            b"arg\0/x\0",
            b"program\0/x\0arg\0/x",
            b"program\0/x\0arg\0/x\0what\0y\0",
            b"program\0/x\0arg\0/x\0ids\0a b\0",
            b"program\0/x\0arg\0/x\0rlimit\0nofile\0",
            b"program\0",
        ] {
            assert!(Spec::decode(bad).is_err(), "{bad:?}");
        }
    }
}
