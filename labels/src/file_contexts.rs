//! Node → file type, from the selabel file backend (the shipped `.fc` rules compiled into
//! `file_contexts`, plus the admin's `semanage fcontext` rules in `file_contexts.local`).
//!
//! Facts this relies on (checked, see the SELinux notes): the backend works without an
//! SELinux kernel; opened with `SELABEL_OPT_PATH` it still reads `.local`; the node's mode
//! matters (a `--` rule does not match a socket), so callers pass the canonical node's own
//! `st_mode` and a mode without file-type bits is refused; the handle never reloads, so
//! after a policy or fcontext change srpcd opens a new one. The node's full context is
//! [`crate::object_context`] of the type and the user's level.

use std::ffi::{c_int, c_void, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use selinux::label::{back_end, Labeler};
use selinux::FileAccessMode;

/// `SELABEL_OPT_PATH` from `<selinux/label.h>` (ABI-stable; the safe crate does not
/// re-export the constant).
const SELABEL_OPT_PATH: c_int = 3;

/// The file-type bits of `st_mode` (`S_IFMT`).
const S_IFMT: u32 = 0o170_000;

/// An open file-contexts handle.
///
/// Neither `Send` nor `Sync` (it owns a libselinux `selabel_handle` and the safe crate
/// does not mark it): open it on the thread that looks up, or keep it on one thread. With
/// Debian's policy, opening took about 10 ms here and a lookup under 1 ms (the first
/// compiles the regexes), so a fresh handle per clone rebuild is affordable.
pub struct FileContexts {
    labeler: Labeler<back_end::File>,
    path: PathBuf,
}

impl std::fmt::Debug for FileContexts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileContexts")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A lookup that gave no type.
#[derive(Debug, thiserror::Error)]
pub enum FileContextError {
    /// The file cannot be opened or parsed by libselinux.
    #[error("cannot open file contexts {}: {}", path.display(), chain(source))]
    Open {
        /// The file_contexts file.
        path: PathBuf,
        /// libselinux's error.
        source: selinux::errors::Error,
    },
    /// A path with a NUL byte cannot be passed to libselinux.
    #[error("path {} contains a NUL byte", path.display())]
    NulInPath {
        /// The path.
        path: PathBuf,
    },
    /// The mode has no file-type bits.
    #[error("mode {mode:#o} for {} has no file type bits (pass the node's own st_mode)", path.display())]
    NoFileType {
        /// The node.
        path: PathBuf,
        /// The mode given.
        mode: u32,
    },
    /// No rule matches, or the matching rule is `<<none>>`.
    #[error("file contexts {} give no context for {} (mode {mode:#o}): no rule matches or the rule is <<none>>; add one with `semanage fcontext -a -t <type> '{}'`", fc.display(), path.display(), path.display())]
    NoMatch {
        /// The file_contexts file.
        fc: PathBuf,
        /// The node.
        path: PathBuf,
        /// The mode.
        mode: u32,
    },
    /// Any other lookup failure.
    #[error("looking up {} in file contexts {}: {}", path.display(), fc.display(), chain(source))]
    Lookup {
        /// The file_contexts file.
        fc: PathBuf,
        /// The node.
        path: PathBuf,
        /// libselinux's error.
        source: selinux::errors::Error,
    },
    /// The context libselinux returned has no type field.
    #[error("file contexts {} gave '{context}' for {}, which is not user:role:type:level", fc.display(), path.display())]
    Malformed {
        /// The file_contexts file.
        fc: PathBuf,
        /// The node.
        path: PathBuf,
        /// The context returned.
        context: String,
    },
}

impl FileContexts {
    /// Opens the file backend on `file_contexts` (e.g.
    /// `/etc/selinux/default/contexts/files/file_contexts`; its `.local` is read too).
    pub fn open(file_contexts: &Path) -> Result<FileContexts, FileContextError> {
        let c_path = CString::new(file_contexts.as_os_str().as_bytes()).map_err(|_| {
            FileContextError::NulInPath {
                path: file_contexts.to_owned(),
            }
        })?;
        let options = [(SELABEL_OPT_PATH, c_path.as_ptr().cast::<c_void>())];
        // raw_format: no mcstrans translation, levels stay `s0:c1,c2`.
        let labeler = Labeler::<back_end::File>::new(&options, true).map_err(|source| {
            FileContextError::Open {
                path: file_contexts.to_owned(),
                source,
            }
        })?;
        Ok(FileContexts {
            labeler,
            path: file_contexts.to_owned(),
        })
    }

    /// The file_contexts file this handle was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The type the rules give `path` (the canonical path) for a node of mode `st_mode`.
    pub fn lookup_type(&self, path: &Path, st_mode: u32) -> Result<String, FileContextError> {
        if st_mode & S_IFMT == 0 {
            return Err(FileContextError::NoFileType {
                path: path.to_owned(),
                mode: st_mode,
            });
        }
        if path.as_os_str().as_bytes().contains(&0) {
            return Err(FileContextError::NulInPath {
                path: path.to_owned(),
            });
        }
        let context = self
            .labeler
            .look_up_by_path(path, FileAccessMode::new(st_mode))
            .map_err(|source| {
                let not_found = std::error::Error::source(&source)
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound);
                if not_found {
                    FileContextError::NoMatch {
                        fc: self.path.clone(),
                        path: path.to_owned(),
                        mode: st_mode,
                    }
                } else {
                    FileContextError::Lookup {
                        fc: self.path.clone(),
                        path: path.to_owned(),
                        source,
                    }
                }
            })?;
        let text = String::from_utf8_lossy(context.as_bytes()).into_owned();
        match text.split(':').nth(2) {
            Some(ty) if crate::valid_identifier(ty) => Ok(ty.to_owned()),
            _ => Err(FileContextError::Malformed {
                fc: self.path.clone(),
                path: path.to_owned(),
                context: text,
            }),
        }
    }
}

/// libselinux's error with its OS cause (`selabel_open() failed: No such file or
/// directory (os error 2)`).
fn chain(e: &selinux::errors::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
