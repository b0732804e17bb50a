//! The monitor's SELinux side: which context each user's worker runs in, at
//! which level, and where clone node types come from.
//!
//! A user's context is computed, never asked of libselinux's default-context
//! calls (from `srpcd_t` they answer the failsafe `sysadm_t` context): the
//! seusers line (as `semanage login` writes it, read afresh at each start, so a
//! mapping change applies to the next login) gives the SELinux user and range,
//! the label map the role and worker type, the allocator a level of the user's
//! own (see `srpc_labels::alloc`), and the loaded policy must accept the result.
//! Anything missing refuses the login with a message naming user, SELinux user,
//! role, level and the context tried; nothing falls back.
//!
//! A user keeps the level while srpcd has a worker entry for the user (all
//! sessions, a crash restart included) and gives it back when that entry goes.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use srpc_labels::{FileContexts, LabelMap, LevelAllocator, PolicyPaths, Seusers};

use super::clone::OpenTypes;
use super::labeling::{NodeTypes, UserLabels, UserSecurity};
use super::startup::StartError;
use crate::config::Config;
use crate::users::Account;

/// The SELinux state every worker start consults.
pub struct Security {
    paths: PolicyPaths,
    label_map: LabelMap,
    levels: Mutex<LevelAllocator>,
    allow_shared: bool,
}

impl Security {
    /// The SELinux state when the kernel runs SELinux (`None` without it: DAC
    /// alone, which startup already said loudly). Fails start on a label map
    /// or policy configuration that cannot be read.
    pub fn init(
        config: &Config,
        mode: srpc_os::selinux::Mode,
    ) -> Result<Option<Arc<Security>>, StartError> {
        if mode == srpc_os::selinux::Mode::Disabled {
            return Ok(None);
        }
        let own = srpc_os::selinux::current_context()
            .map_err(StartError::io("reading srpcd's own SELinux context"))?;
        let paths = PolicyPaths::from_config(Path::new(srpc_labels::selinux_config::SELINUX_DIR))
            .map_err(|e| StartError::Check(e.to_string()))?;
        let label_map = LabelMap::builtin_with_overrides(&config.selinux.label_map)
            .map_err(|e| StartError::Check(e.to_string()))?;
        tracing::info!(
            context = own,
            policy = %paths.root().display(),
            label_map = %config.selinux.label_map.display(),
            "SELinux: workers and handlers run in the contexts the label map and seusers give"
        );
        Ok(Some(Arc::new(Security {
            paths,
            label_map,
            levels: Mutex::new(LevelAllocator::new()),
            allow_shared: config.selinux.allow_shared_level,
        })))
    }

    /// The worker context and clone labels for `account`, holding a level for
    /// the user until [`Security::release`]. Reads seusers and the user's group
    /// names (NSS may be remote): call it off the monitor's loop.
    pub fn for_user(&self, account: &Account) -> Result<UserSecurity, String> {
        let resolved = {
            let mut levels = self.levels.lock().unwrap_or_else(PoisonError::into_inner);
            self.resolve(account, &mut levels)?
        };
        if resolved.shared_level {
            tracing::warn!(
                user = account.name,
                level = %resolved.level,
                shares_with = resolved.shares_with.join(","),
                "SELinux: {} logs in at the shared level {} (selinux.allow_shared_level = true): \
                 MCS does not separate this user's worker, handlers and clone from other users' \
                 at that level",
                account.name,
                resolved.level
            );
        }
        Ok(UserSecurity {
            worker: resolved.context,
            labels: UserLabels::new(resolved.level),
        })
    }

    /// What [`Security::for_user`] would decide for `account`, and why, without
    /// holding a level (`srpcctl explain-user`); an active user's answer is
    /// the level the user holds.
    pub fn explain(&self, account: &Account) -> Result<srpc_labels::Resolved, String> {
        let mut dry_run = self
            .levels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.resolve(account, &mut dry_run)
    }

    fn resolve(
        &self,
        account: &Account,
        levels: &mut LevelAllocator,
    ) -> Result<srpc_labels::Resolved, String> {
        let seusers = Seusers::load(&self.paths.seusers()).map_err(|e| e.to_string())?;
        let groups: Vec<String> = account
            .groups
            .iter()
            .filter_map(|g| {
                nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(*g))
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .collect();
        let user = srpc_labels::UserIdentity {
            name: &account.name,
            uid: account.uid,
            groups: &groups,
        };
        let sources = srpc_labels::Sources {
            seusers: &seusers,
            label_map: &self.label_map,
            policy: &KernelPolicy,
            allow_shared_level: self.allow_shared,
        };
        srpc_labels::resolve(&user, &sources, levels).map_err(|e| e.to_string())
    }

    /// Gives the user's level back (the user's worker entry went).
    pub fn release(&self, user: &str) {
        self.levels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(user);
    }

    /// How a labelled sync opens the file-context rules.
    pub fn open_types(&self) -> OpenTypes {
        let path = self.paths.file_contexts();
        Box::new(move || open_types(&path))
    }
}

fn open_types(path: &Path) -> Result<Box<dyn NodeTypes>, String> {
    FileContexts::open(path)
        .map(|fc| Box::new(Rules(fc)) as Box<dyn NodeTypes>)
        .map_err(|e| e.to_string())
}

/// The loaded policy, asked through selinuxfs.
struct KernelPolicy;

impl srpc_labels::Policy for KernelPolicy {
    fn check_context(&self, context: &str) -> std::io::Result<bool> {
        srpc_os::selinux::check_context(context)
    }
}

/// The file-context rules of one sync.
struct Rules(FileContexts);

impl NodeTypes for Rules {
    fn type_of(&self, canonical: &Path, mode: u32) -> Result<String, String> {
        self.0
            .lookup_type(canonical, mode)
            .map_err(|e| e.to_string())
    }
}

/// The context a per-user handler runs in: what the policy gives the user's
/// worker context on the handler file's label (its `type_transition`), at the
/// worker's level. A policy with no such rule answers the worker's own type,
/// which is refused here, naming the fix (the exec would fail on the domain's
/// entrypoint anyway).
pub fn handler_context(worker: &str, exe: &Path) -> std::io::Result<String> {
    let file = srpc_os::selinux::file_context(exe).map_err(|e| {
        std::io::Error::new(e.kind(), format!("the label of {}: {e}", exe.display()))
    })?;
    let context = srpc_os::selinux::compute_create(worker, &file, "process")?;
    let kind = |c: &str| c.split(':').nth(2).map(str::to_owned);
    if kind(&context) == kind(worker) {
        return Err(std::io::Error::other(format!(
            "the policy gives the worker context {worker} no handler domain on {} (labelled \
             {file}): give the endpoint a type with a handler domain (srpc_handler_domain in \
             a policy module, docs/selinux.md)",
            exe.display()
        )));
    }
    Ok(context)
}
