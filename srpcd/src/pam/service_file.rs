//! The checks of srpcd's PAM service file: that it exists at all, and that its
//! `session` stack (followed through `@include`, `include` and `substack`)
//! runs no module that changes the calling process, which is the root monitor.

use std::path::{Path, PathBuf};

use super::PamError;

/// Where Linux-PAM looks for `<service>`, in its order: the admin's directory,
/// then the distribution's (Linux-PAM reads `/usr/lib/pam.d` when a service has
/// no file in `/etc/pam.d`; Fedora ships its defaults there).
pub const SERVICE_DIRS: [&str; 2] = ["/etc/pam.d", "/usr/lib/pam.d"];

/// Finds the file that configures PAM `service`, or fails.
///
/// srpcd refuses to start without one: PAM would silently use the `other`
/// service instead, which on many systems lets any valid login through.
///
/// ```no_run
/// let file = srpcd::pam::check_service_file("srpcd")?;
/// println!("PAM service file: {}", file.display());
/// # Ok::<(), srpcd::pam::PamError>(())
/// ```
pub fn check_service_file(service: &str) -> Result<PathBuf, PamError> {
    let dirs = SERVICE_DIRS.map(Path::new);
    let file = find_service_file(service, &dirs)?;
    check_session_stack(&file, &dirs)?;
    Ok(file)
}

/// [`check_service_file`] over the given directories, first match wins.
fn find_service_file(service: &str, dirs: &[&Path]) -> Result<PathBuf, PamError> {
    let plain = !service.is_empty() && !service.starts_with('.') && !service.contains(['/', '\0']);
    if !plain {
        return Err(PamError::InvalidServiceName(service.to_owned()));
    }
    let searched: Vec<PathBuf> = dirs.iter().map(|d| d.join(service)).collect();
    for path in &searched {
        // Follows symlinks, as PAM's fopen does.
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => return Ok(path.clone()),
            Ok(_) => return Err(PamError::NotAFile { path: path.clone() }),
            Err(_) => {}
        }
    }
    Err(PamError::MissingServiceFile {
        service: service.to_owned(),
        searched,
    })
}

/// Session modules that change the process they run in, with what they
/// change. srpcd runs its session stack inside the root monitor, so each would
/// change the monitor (and nothing of the user's worker).
const PROCESS_CHANGING: [(&str, &str); 7] = [
    (
        "pam_limits",
        "it sets resource limits (srpcd applies limits.conf to workers and handlers itself)",
    ),
    ("pam_loginuid", "it writes the process's audit loginuid"),
    ("pam_keyinit", "it makes the process join a session keyring"),
    (
        "pam_systemd",
        "it moves the process into the user's login session scope",
    ),
    (
        "pam_selinux",
        "it sets the process's SELinux exec and key contexts",
    ),
    ("pam_namespace", "it unshares the process's mount namespace"),
    ("pam_umask", "it sets the process's umask"),
];

/// How deep `@include`, `include` and `substack` are followed (Linux-PAM's
/// own cap on substacks is 16).
const MAX_INCLUDE_DEPTH: usize = 16;

/// The largest service file read.
const MAX_SERVICE_FILE: u64 = 64 * 1024;

/// Refuses a `session` stack in `file` that runs a process-changing module,
/// following `@include` (every line of the other file), `session include`
/// and `session substack` (its session lines) as Linux-PAM does: a relative
/// name is looked up in `dirs` in order, an absolute one as is.
fn check_session_stack(file: &Path, dirs: &[&Path]) -> Result<(), PamError> {
    walk(file, dirs, &mut Vec::new())
}

/// One file's session lines (whether the file was reached by `@include` or
/// by `session include`, only its session lines can join the session
/// stack); `via` is the include chain that led here, for the message.
fn walk(file: &Path, dirs: &[&Path], via: &mut Vec<String>) -> Result<(), PamError> {
    let bad = |line: usize, why: String, via: &[String]| PamError::BadSessionStack {
        file: file.to_path_buf(),
        line,
        why,
        via: via.to_vec(),
    };
    if via.len() > MAX_INCLUDE_DEPTH {
        return Err(bad(
            0,
            format!("includes nest deeper than {MAX_INCLUDE_DEPTH}"),
            via,
        ));
    }
    let text = read_capped(file).map_err(|e| bad(0, format!("cannot read it: {e}"), via))?;
    for (number, line) in logical_lines(&text) {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = Fields(line);
        let Some(kind) = fields.next() else {
            continue;
        };
        let target = if kind == "@include" {
            fields.next()
        } else {
            let kind = kind.strip_prefix('-').unwrap_or(kind);
            if !kind.eq_ignore_ascii_case("session") {
                continue;
            }
            let control = fields.next();
            let module = fields.next();
            match control {
                Some(c)
                    if c.eq_ignore_ascii_case("include") || c.eq_ignore_ascii_case("substack") =>
                {
                    module
                }
                _ => {
                    if let Some(module) = module {
                        check_module(module).map_err(|why| bad(number, why, via))?;
                    }
                    continue;
                }
            }
        };
        let Some(name) = target else {
            continue;
        };
        let Some(target) = resolve(name, dirs) else {
            // PAM fails the stack itself on a missing file; nothing runs.
            continue;
        };
        via.push(format!("{}:{number}", file.display()));
        let r = walk(&target, dirs, via);
        via.pop();
        r?;
    }
    Ok(())
}

/// Refuses `module` (a path or name) if it changes the calling process.
fn check_module(module: &str) -> Result<(), String> {
    let base = module.rsplit('/').next().unwrap_or(module);
    let name = base.strip_suffix(".so").unwrap_or(base);
    match PROCESS_CHANGING.iter().find(|(m, _)| *m == name) {
        Some((_, why)) => Err(format!(
            "session module {base} would run inside srpcd's root monitor and change \
             the monitor, not the user's worker: {why}; remove it from srpcd's session stack"
        )),
        None => Ok(()),
    }
}

/// An include's file: absolute as given, else the first of `dirs` holding it.
fn resolve(name: &str, dirs: &[&Path]) -> Option<PathBuf> {
    if name.starts_with('/') {
        return Some(PathBuf::from(name));
    }
    if name.is_empty() || name.contains('/') {
        return None;
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
}

fn read_capped(file: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(file)?
        .take(MAX_SERVICE_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SERVICE_FILE {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_SERVICE_FILE} bytes"
        )));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Lines joined at a trailing backslash (PAM's continuation), each with the
/// number of its first physical line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (first, mut acc) = current.take().unwrap_or((i + 1, String::new()));
        if let Some(head) = raw.strip_suffix('\\') {
            acc.push_str(head);
            acc.push(' ');
            current = Some((first, acc));
        } else {
            acc.push_str(raw);
            out.push((first, acc));
        }
    }
    out.extend(current);
    out
}

/// The fields of a PAM line: whitespace-separated, a `[...]` control as one.
struct Fields<'a>(&'a str);

impl<'a> Iterator for Fields<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.0.trim_start();
        if rest.is_empty() {
            self.0 = rest;
            return None;
        }
        let end = if rest.starts_with('[') {
            rest.find(']').map_or(rest.len(), |i| i + 1)
        } else {
            rest.find(char::is_whitespace).unwrap_or(rest.len())
        };
        let (field, tail) = rest.split_at(end);
        self.0 = tail;
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("srpcd-pam-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::create_dir_all(dir.join("vendor")).unwrap();
        dir
    }

    #[test]
    fn admin_file_wins_then_vendor_file_is_accepted() {
        let dir = scratch("order");
        let (etc, vendor) = (dir.join("etc"), dir.join("vendor"));
        let dirs = [etc.as_path(), vendor.as_path()];
        std::fs::write(vendor.join("svc"), "auth required pam_deny.so\n").unwrap();
        assert_eq!(find_service_file("svc", &dirs).unwrap(), vendor.join("svc"));
        std::fs::write(etc.join("svc"), "auth required pam_deny.so\n").unwrap();
        assert_eq!(find_service_file("svc", &dirs).unwrap(), etc.join("svc"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_file_names_service_and_every_path() {
        let dir = scratch("missing");
        let (etc, vendor) = (dir.join("etc"), dir.join("vendor"));
        let e = find_service_file("svc", &[etc.as_path(), vendor.as_path()]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("\"svc\""), "{msg}");
        assert!(
            msg.contains(&etc.join("svc").display().to_string()),
            "{msg}"
        );
        assert!(
            msg.contains(&vendor.join("svc").display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("\"other\""), "{msg}");
        std::fs::create_dir(etc.join("svc")).unwrap();
        assert!(matches!(
            find_service_file("svc", &[etc.as_path()]),
            Err(PamError::NotAFile { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn refusal(file: &Path, dirs: &[&Path]) -> String {
        match check_session_stack(file, dirs) {
            Err(e @ PamError::BadSessionStack { .. }) => e.to_string(),
            other => panic!("{}: {other:?}", file.display()),
        }
    }

    #[test]
    fn session_modules_that_change_the_monitor_are_refused_with_file_and_line() {
        let dir = scratch("session");
        let (etc, vendor) = (dir.join("etc"), dir.join("vendor"));
        let dirs = [etc.as_path(), vendor.as_path()];
        let ok = "auth required pam_unix.so nodelay\n\
                  auth required pam_limits.so\n\
                  session [success=ok default=bad] pam_unix.so\n\
                  session optional pam_env.so # pam_limits.so\n\
                  # session required pam_limits.so\n";
        std::fs::write(etc.join("svc"), ok).unwrap();
        check_session_stack(&etc.join("svc"), &dirs).unwrap();
        for (module, why) in [
            ("pam_limits.so", "resource limits"),
            ("/lib/x86_64-linux-gnu/security/pam_loginuid.so", "loginuid"),
            ("pam_keyinit.so force revoke", "keyring"),
            ("pam_systemd.so", "scope"),
            ("pam_selinux.so open", "SELinux"),
            ("pam_namespace.so", "namespace"),
            ("pam_umask.so", "umask"),
        ] {
            for line in [
                format!("session required {module}"),
                format!("-session optional {module}"),
                format!("Session [default=1 success=ok] {module}"),
                format!("session \\\n  required \\\n {module}"),
            ] {
                std::fs::write(etc.join("svc"), format!("{ok}{line}\n")).unwrap();
                let msg = refusal(&etc.join("svc"), &dirs);
                let base = module
                    .split(' ')
                    .next()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap();
                assert!(
                    msg.starts_with(&format!(
                        "{}:6: session module {base} ",
                        etc.join("svc").display()
                    )),
                    "{msg}"
                );
                assert!(msg.contains("root monitor") && msg.contains(why), "{msg}");
            }
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn includes_and_substacks_are_followed_in_pam_order() {
        let dir = scratch("include");
        let (etc, vendor) = (dir.join("etc"), dir.join("vendor"));
        let dirs = [etc.as_path(), vendor.as_path()];
        let svc = etc.join("svc");
        // @include: every line of the other file counts, from /usr/lib/pam.d
        // when /etc/pam.d has none.
        std::fs::write(
            vendor.join("common-session"),
            "session optional pam_systemd.so\n",
        )
        .unwrap();
        std::fs::write(&svc, "auth required pam_unix.so\n@include common-session\n").unwrap();
        let msg = refusal(&svc, &dirs);
        assert!(
            msg.starts_with(&format!(
                "{}:1: session module pam_systemd.so",
                vendor.join("common-session").display()
            )),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("included from {}:2", svc.display())),
            "{msg}"
        );
        // /etc/pam.d's copy wins over the vendor's.
        std::fs::write(etc.join("common-session"), "session required pam_unix.so\n").unwrap();
        check_session_stack(&svc, &dirs).unwrap();
        // `session include` / `substack`, nested, and an absolute path.
        let abs = dir.join("abs-stack");
        std::fs::write(&abs, "session required pam_limits.so\n").unwrap();
        std::fs::write(etc.join("inner"), format!("@include {}\n", abs.display())).unwrap();
        std::fs::write(etc.join("middle"), "session substack inner\n").unwrap();
        std::fs::write(&svc, "session include middle\n").unwrap();
        let msg = refusal(&svc, &dirs);
        assert!(
            msg.starts_with(&format!(
                "{}:1: session module pam_limits.so",
                abs.display()
            )),
            "{msg}"
        );
        assert!(
            msg.contains(&format!(
                "included from {}:1 via {}:1 via {}:1",
                svc.display(),
                etc.join("middle").display(),
                etc.join("inner").display()
            )),
            "{msg}"
        );
        // Another type's include takes only that type's lines.
        std::fs::write(&svc, "auth include middle\naccount include middle\n").unwrap();
        check_session_stack(&svc, &dirs).unwrap();
        // A missing include is PAM's to refuse; the check has nothing to see.
        std::fs::write(&svc, "session include nosuch\n@include\n").unwrap();
        check_session_stack(&svc, &dirs).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_include_loop_ends_at_the_depth_cap() {
        let dir = scratch("loop");
        let (etc, vendor) = (dir.join("etc"), dir.join("vendor"));
        let dirs = [etc.as_path(), vendor.as_path()];
        std::fs::write(etc.join("a"), "session include b\n").unwrap();
        std::fs::write(etc.join("b"), "@include a\n").unwrap();
        let msg = refusal(&etc.join("a"), &dirs);
        assert!(msg.contains("includes nest deeper than 16"), "{msg}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn names_that_leave_the_directory_are_refused() {
        for bad in ["", "../shadow", "a/b", ".hidden", "a\0b"] {
            assert!(
                matches!(
                    check_service_file(bad),
                    Err(PamError::InvalidServiceName(_))
                ),
                "{bad:?}"
            );
        }
    }
}
