//! The check that srpcd's PAM service is configured at all.

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
    find_service_file(service, &dirs)
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
