//! What a clone node's owner, group, mode and POSIX ACL are, given its
//! canonical node's: one translation for directories and endpoints alike.
//!
//! Invariants (they are what keeps root safe while it syncs a clone):
//! - no node of a user's clone is owned by that user: where the canonical owner
//!   is the clone's user, root owns the clone node and the owner's rights
//!   become a named ACL entry for that user, so the kernel decides the same;
//! - no clone directory is writable by anyone but root (the worker only walks,
//!   stats and lists: write is never needed);
//! - rights never widen: each class's *effective* canonical rights (an ACL
//!   entry masked by the ACL mask, as the kernel applies them) are translated,
//!   and the clone's mask is the union of what it grants, never the canonical
//!   group bits (the bug this replaces gave a group the canonical ACL mask).
//!
//! Translation per kind: a directory keeps read and search; an endpoint
//! socket gets read+write (what `connect` needs) for each class that may
//! execute a handler or read a service descriptor.

use std::fmt;

/// `system.posix_acl_access`, the kernel's ACL xattr.
pub const ACL_XATTR: &str = "system.posix_acl_access";
const VERSION: u32 = 2;
const HEADER: usize = 4;
const ENTRY: usize = 8;
/// ACLs of up to ~500 entries; a larger one is refused rather than cut.
pub const MAX_ACL: usize = 4096;

const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

/// What a node of the clone is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory: read and search are kept, write is dropped.
    Dir,
    /// A per-user handler: who may execute it may call it.
    Handler,
    /// A service descriptor: who may read it may call it.
    Service,
}

impl NodeKind {
    /// The clone rights for canonical rights `perm` (three bits).
    fn translate(self, perm: u16) -> u16 {
        match self {
            NodeKind::Dir => perm & 0o5,
            NodeKind::Handler if perm & 0o1 != 0 => 0o6,
            NodeKind::Service if perm & 0o4 != 0 => 0o6,
            NodeKind::Handler | NodeKind::Service => 0,
        }
    }
}

/// A canonical node's access attributes, as read from its own fd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    /// The raw access ACL, if it has one.
    pub acl: Option<Vec<u8>>,
}

/// What the clone node gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneAttrs {
    /// Owner: never the clone's user.
    pub uid: u32,
    /// Group: the canonical group (owning a group grants no chmod).
    pub gid: u32,
    /// Permission bits (no setuid, setgid or sticky).
    pub mode: u32,
    /// The access ACL to set, or `None` to remove any (the mode says it all).
    pub acl: Option<Vec<u8>>,
}

/// A canonical ACL that is not a well-formed version-2 POSIX ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedAcl(&'static str);

impl fmt::Display for MalformedAcl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed POSIX ACL: {}", self.0)
    }
}

impl std::error::Error for MalformedAcl {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    tag: u16,
    perm: u16,
    id: u32,
}

/// The effective rights of each class of a canonical node.
struct Effective {
    owner: u16,
    users: Vec<(u32, u16)>,
    group: u16,
    groups: Vec<(u32, u16)>,
    other: u16,
}

fn parse(raw: &[u8]) -> Result<Vec<Entry>, MalformedAcl> {
    let (head, body) = raw
        .split_first_chunk::<HEADER>()
        .ok_or(MalformedAcl("shorter than its header"))?;
    if u32::from_le_bytes(*head) != VERSION {
        return Err(MalformedAcl("not version 2"));
    }
    if body.len() % ENTRY != 0 {
        return Err(MalformedAcl("a partial entry"));
    }
    let mut out = Vec::with_capacity(body.len() / ENTRY);
    for chunk in body.chunks_exact(ENTRY) {
        let (tag, rest) = chunk.split_at(2);
        let (perm, id) = rest.split_at(2);
        let (Ok(tag), Ok(perm), Ok(id)) = (
            <[u8; 2]>::try_from(tag),
            <[u8; 2]>::try_from(perm),
            <[u8; 4]>::try_from(id),
        ) else {
            return Err(MalformedAcl("a partial entry"));
        };
        out.push(Entry {
            tag: u16::from_le_bytes(tag),
            perm: u16::from_le_bytes(perm) & 0o7,
            id: u32::from_le_bytes(id),
        });
    }
    Ok(out)
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + entries.len() * ENTRY);
    out.extend_from_slice(&VERSION.to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        out.extend_from_slice(&e.id.to_le_bytes());
    }
    out
}

fn bits(mode: u32, shift: u32) -> u16 {
    u16::try_from((mode >> shift) & 0o7).unwrap_or(0)
}

fn effective(c: &Canonical) -> Result<Effective, MalformedAcl> {
    let mut e = Effective {
        owner: bits(c.mode, 6),
        users: Vec::new(),
        group: bits(c.mode, 3),
        groups: Vec::new(),
        other: bits(c.mode, 0),
    };
    let Some(raw) = &c.acl else {
        return Ok(e);
    };
    let entries = parse(raw)?;
    let mask = entries
        .iter()
        .find(|x| x.tag == MASK)
        .map_or(0o7, |x| x.perm);
    for x in &entries {
        match x.tag {
            USER_OBJ => e.owner = x.perm,
            USER => e.users.push((x.id, x.perm & mask)),
            GROUP_OBJ => e.group = x.perm & mask,
            GROUP => e.groups.push((x.id, x.perm & mask)),
            OTHER => e.other = x.perm,
            MASK => {}
            _ => return Err(MalformedAcl("an unknown entry tag")),
        }
    }
    Ok(e)
}

/// The clone attributes of a canonical node of `kind` in the clone of the
/// user `clone_uid`.
pub fn translate(
    c: &Canonical,
    kind: NodeKind,
    clone_uid: u32,
) -> Result<CloneAttrs, MalformedAcl> {
    let e = effective(c)?;
    let t = |p: u16| kind.translate(p);
    // Whoever the canonical owner is, root owns it in that user's own clone.
    let own_clone = c.uid == clone_uid && clone_uid != 0;
    let uid = if own_clone { 0 } else { c.uid };
    let mut users: Vec<(u32, u16)> = Vec::new();
    if own_clone {
        users.push((clone_uid, t(e.owner)));
    }
    // The owner's own class decides for the owner, as in the canonical tree;
    // root is never restricted, so entries for either are left out.
    for &(id, p) in &e.users {
        if id != c.uid && id != 0 {
            users.push((id, t(p)));
        }
    }
    let mut groups: Vec<(u32, u16)> = e.groups.iter().map(|&(id, p)| (id, t(p))).collect();
    users.sort_unstable();
    users.dedup_by_key(|u| u.0);
    groups.sort_unstable();
    groups.dedup_by_key(|g| g.0);
    let user_obj = t(e.owner);
    let group_obj = t(e.group);
    let other = t(e.other);
    let extended = !users.is_empty() || !groups.is_empty();
    let mask = users
        .iter()
        .chain(&groups)
        .fold(group_obj, |m, &(_, p)| m | p);
    let class = if extended { mask } else { group_obj };
    let mode = u32::from(user_obj) << 6 | u32::from(class) << 3 | u32::from(other);
    let acl = extended.then(|| {
        let mut entries = vec![Entry {
            tag: USER_OBJ,
            perm: user_obj,
            id: UNDEFINED_ID,
        }];
        entries.extend(users.iter().map(|&(id, perm)| Entry {
            tag: USER,
            perm,
            id,
        }));
        entries.push(Entry {
            tag: GROUP_OBJ,
            perm: group_obj,
            id: UNDEFINED_ID,
        });
        entries.extend(groups.iter().map(|&(id, perm)| Entry {
            tag: GROUP,
            perm,
            id,
        }));
        entries.push(Entry {
            tag: MASK,
            perm: mask,
            id: UNDEFINED_ID,
        });
        entries.push(Entry {
            tag: OTHER,
            perm: other,
            id: UNDEFINED_ID,
        });
        encode(&entries)
    });
    Ok(CloneAttrs {
        uid,
        gid: c.gid,
        mode,
        acl,
    })
}

/// Root-owned, mode 0700, searchable by `uid` alone (an ACL entry `u:uid:x`):
/// the directory that holds one user's clone.
pub fn private_to(uid: u32, gid: u32) -> CloneAttrs {
    let entries = [
        Entry {
            tag: USER_OBJ,
            perm: 0o7,
            id: UNDEFINED_ID,
        },
        Entry {
            tag: USER,
            perm: 0o1,
            id: uid,
        },
        Entry {
            tag: GROUP_OBJ,
            perm: 0,
            id: UNDEFINED_ID,
        },
        Entry {
            tag: MASK,
            perm: 0o1,
            id: UNDEFINED_ID,
        },
        Entry {
            tag: OTHER,
            perm: 0,
            id: UNDEFINED_ID,
        },
    ];
    CloneAttrs {
        uid: 0,
        gid,
        mode: 0o710,
        acl: Some(encode(&entries)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let e: Vec<Entry> = entries
            .iter()
            .map(|&(tag, perm, id)| Entry { tag, perm, id })
            .collect();
        encode(&e)
    }

    const X: u32 = UNDEFINED_ID;

    fn canonical(uid: u32, gid: u32, mode: u32, acl: Option<Vec<u8>>) -> Canonical {
        Canonical {
            uid,
            gid,
            mode,
            acl,
        }
    }

    #[test]
    fn plain_modes_translate_per_kind() {
        let c = canonical(0, 0, 0o755, None);
        let h = translate(&c, NodeKind::Handler, 1000).unwrap();
        assert_eq!((h.uid, h.mode, h.acl), (0, 0o666, None));
        let d = translate(&c, NodeKind::Dir, 1000).unwrap();
        assert_eq!(d.mode, 0o555, "directories lose write");
        let s = translate(&canonical(0, 5, 0o640, None), NodeKind::Service, 1000).unwrap();
        assert_eq!((s.gid, s.mode), (5, 0o660));
        assert_eq!(
            translate(&canonical(0, 0, 0o4711, None), NodeKind::Handler, 1)
                .unwrap()
                .mode,
            0o666
        );
        assert_eq!(
            translate(&canonical(0, 0, 0o644, None), NodeKind::Handler, 1)
                .unwrap()
                .mode,
            0
        );
    }

    #[test]
    fn the_clone_user_never_owns_a_node_of_its_own_clone() {
        // /private: 0700, owned by bob (1002). In bob's clone root owns it and
        // bob keeps his rights through a named entry; others still get none.
        let c = canonical(1002, 1002, 0o700, None);
        let own = translate(&c, NodeKind::Dir, 1002).unwrap();
        assert_eq!(own.uid, 0);
        assert_eq!(own.mode, 0o550);
        assert_eq!(
            own.acl.unwrap(),
            acl(&[
                (USER_OBJ, 0o5, X),
                (USER, 0o5, 1002),
                (GROUP_OBJ, 0, X),
                (MASK, 0o5, X),
                (OTHER, 0, X)
            ])
        );
        // In alice's clone bob stays the owner: he cannot reach it.
        let other = translate(&c, NodeKind::Dir, 1001).unwrap();
        assert_eq!((other.uid, other.mode, other.acl), (1002, 0o500, None));
    }

    #[test]
    fn a_directory_acl_mask_is_never_copied_as_group_bits() {
        // chmod 700 d; setfacl -m u:nobody:rx d  →  mode reads 0750 (the mask).
        let c = canonical(
            0,
            100,
            0o750,
            Some(acl(&[
                (USER_OBJ, 0o7, X),
                (USER, 0o5, 65534),
                (GROUP_OBJ, 0, X),
                (MASK, 0o5, X),
                (OTHER, 0, X),
            ])),
        );
        let d = translate(&c, NodeKind::Dir, 1000).unwrap();
        assert_eq!(
            d.acl.unwrap(),
            acl(&[
                (USER_OBJ, 0o5, X),
                (USER, 0o5, 65534),
                (GROUP_OBJ, 0, X),
                (MASK, 0o5, X),
                (OTHER, 0, X)
            ]),
            "the owning group gets nothing, as in the canonical tree"
        );
    }

    #[test]
    fn masked_rights_stay_masked_and_execute_becomes_read_write() {
        // user:1001:rwx but mask r-- : 1001 may not execute, so may not call.
        let c = canonical(
            0,
            0,
            0o745,
            Some(acl(&[
                (USER_OBJ, 0o7, X),
                (USER, 0o7, 1001),
                (USER, 0o1, 1003),
                (GROUP_OBJ, 0o5, X),
                (GROUP, 0o1, 50),
                (MASK, 0o4, X),
                (OTHER, 0o5, X),
            ])),
        );
        let h = translate(&c, NodeKind::Handler, 1000).unwrap();
        assert_eq!(
            h.acl.unwrap(),
            acl(&[
                (USER_OBJ, 0o6, X),
                (USER, 0, 1001),
                (USER, 0, 1003),
                (GROUP_OBJ, 0, X),
                (GROUP, 0, 50),
                (MASK, 0, X),
                (OTHER, 0o6, X)
            ])
        );
        assert_eq!(h.mode, 0o606);
    }

    #[test]
    fn malformed_acls_are_refused() {
        let c = |raw: Vec<u8>| canonical(0, 0, 0o755, Some(raw));
        assert!(translate(&c(vec![1, 0, 0, 0]), NodeKind::Dir, 1).is_err());
        assert!(translate(&c(vec![2, 0, 0, 0, 1]), NodeKind::Dir, 1).is_err());
        assert!(translate(&c(acl(&[(0x40, 7, X)])), NodeKind::Dir, 1).is_err());
    }

    #[test]
    fn a_users_clone_directory_is_searchable_by_that_user_only() {
        let p = private_to(1001, 0);
        assert_eq!((p.uid, p.mode), (0, 0o710));
        let entries = parse(&p.acl.unwrap()).unwrap();
        assert!(entries.contains(&Entry {
            tag: USER,
            perm: 1,
            id: 1001
        }));
        assert!(entries.contains(&Entry {
            tag: GROUP_OBJ,
            perm: 0,
            id: X
        }));
    }
}
