//! Root reads the limits files: each through an `O_NOFOLLOW` fd (the
//! `limits.d` entries relative to the directory's own fd), checked on that fd
//! (a regular file, root's, writable by nobody else) and read up to a cap.
//! Anything else is skipped with a warning: root must not take its users'
//! limits from a file a user could write.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};

use super::ConfFile;

/// pam_limits' main file.
pub const LIMITS_CONF: &str = "/etc/security/limits.conf";
/// pam_limits' drop-in directory (`*.conf`).
pub const LIMITS_D: &str = "/etc/security/limits.d";
/// The largest file read; a larger one is skipped.
pub const MAX_FILE: u64 = 64 * 1024;
/// The most drop-ins read from `limits.d`.
pub const MAX_DROP_INS: usize = 1000;

fn flags() -> OFlags {
    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC
}

/// `limits.conf`, then the `*.conf` files of `dir` in byte order of their
/// names (pam_limits' order), with a warning for each one skipped.
pub fn read_all(conf: &Path, dir: &Path) -> (Vec<ConfFile>, Vec<String>) {
    let mut files = Vec::new();
    let mut warnings = Vec::new();
    let cwd = rustix::fs::CWD;
    match open_checked(cwd, conf.as_os_str(), false) {
        Ok(Some(fd)) => match read_capped(fd) {
            Ok(text) => files.push(ConfFile {
                name: conf.display().to_string(),
                text,
            }),
            Err(e) => warnings.push(format!("{}: {e} - skipped", conf.display())),
        },
        Ok(None) => {}
        Err(e) => warnings.push(format!("{}: {e} - skipped", conf.display())),
    }
    let dir_fd = match open_checked(cwd, dir.as_os_str(), true) {
        Ok(Some(fd)) => fd,
        Ok(None) => return (files, warnings),
        Err(e) => {
            warnings.push(format!("{}: {e} - skipped", dir.display()));
            return (files, warnings);
        }
    };
    let mut names = match drop_in_names(dir_fd.as_fd()) {
        Ok(names) => names,
        Err(e) => {
            warnings.push(format!("{}: {e} - skipped", dir.display()));
            return (files, warnings);
        }
    };
    names.sort();
    for name in names {
        let path = dir.join(OsStr::from_bytes(&name));
        let read = open_checked(dir_fd.as_fd(), OsStr::from_bytes(&name), false)
            .and_then(|fd| fd.map(read_capped).transpose());
        match read {
            Ok(Some(text)) => files.push(ConfFile {
                name: path.display().to_string(),
                text,
            }),
            Ok(None) => {}
            Err(e) => warnings.push(format!("{}: {e} - skipped", path.display())),
        }
    }
    (files, warnings)
}

/// The names `*.conf` (not starting with a dot, as glob's `*`) in `dir`.
fn drop_in_names(dir: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut entries = rustix::fs::Dir::read_from(dir).map_err(|e| e.to_string())?;
    while let Some(entry) = entries.read() {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name().to_bytes();
        if name.starts_with(b".") || !name.ends_with(b".conf") {
            continue;
        }
        if out.len() >= MAX_DROP_INS {
            return Err(format!("more than {MAX_DROP_INS} drop-ins"));
        }
        out.push(name.to_vec());
    }
    Ok(out)
}

/// Opens `name` below `at` without following a final symlink and checks the
/// fd: `Ok(None)` if it does not exist.
fn open_checked(at: BorrowedFd<'_>, name: &OsStr, dir: bool) -> Result<Option<OwnedFd>, String> {
    let flags = if dir {
        flags() | OFlags::DIRECTORY
    } else {
        flags()
    };
    let fd = match rustix::fs::openat(at, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => return Err("is a symlink".into()),
        Err(e) => return Err(e.to_string()),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| e.to_string())?;
    let want = if dir {
        FileType::Directory
    } else {
        FileType::RegularFile
    };
    if FileType::from_raw_mode(st.st_mode) != want {
        return Err(format!(
            "not a {}",
            if dir { "directory" } else { "regular file" }
        ));
    }
    if st.st_uid != 0 {
        return Err(format!("owned by uid {}, not root", st.st_uid));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o002 != 0 || (mode & 0o020 != 0 && st.st_gid != 0) {
        return Err(format!("mode {mode:04o}: writable by others than root"));
    }
    Ok(Some(fd))
}

fn read_capped(fd: OwnedFd) -> Result<String, String> {
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!("larger than {MAX_FILE} bytes"));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `/proc/sys/fs/nr_open`: the most `nofile` may be.
pub fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("srpcd-limits-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("limits.d")).unwrap();
        dir
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn files_are_read_in_order_and_unsafe_ones_skipped() {
        if rustix::process::geteuid().as_raw() != 0 {
            return; // ownership checks need root-owned files
        }
        let dir = scratch("order");
        let d = dir.join("limits.d");
        write(&dir.join("limits.conf"), "main\n", 0o644);
        write(&d.join("b.conf"), "b\n", 0o644);
        write(&d.join("a.conf"), "a\n", 0o640);
        write(&d.join("B.conf"), "B\n", 0o644);
        write(&d.join(".hidden.conf"), "hidden\n", 0o644);
        write(&d.join("notes.txt"), "txt\n", 0o644);
        write(&d.join("open.conf"), "open\n", 0o666);
        write(&d.join("group.conf"), "group\n", 0o664);
        write(&d.join("theirs.conf"), "theirs\n", 0o644);
        std::os::unix::fs::chown(d.join("theirs.conf"), Some(65534), None).unwrap();
        std::os::unix::fs::chown(d.join("group.conf"), None, Some(65534)).unwrap();
        write(
            &d.join("big.conf"),
            &"#".repeat(usize::try_from(MAX_FILE).unwrap() + 1),
            0o644,
        );
        std::os::unix::fs::symlink(d.join("a.conf"), d.join("link.conf")).unwrap();
        std::fs::create_dir(d.join("sub.conf")).unwrap();

        let (files, warnings) = read_all(&dir.join("limits.conf"), &d);
        let texts: Vec<&str> = files.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(texts, ["main\n", "B\n", "a\n", "b\n"], "{warnings:#?}");
        assert_eq!(files[1].name, d.join("B.conf").display().to_string());
        let skipped = |name: &str, why: &str| {
            let p = d.join(name).display().to_string();
            assert!(
                warnings
                    .iter()
                    .any(|w| w.starts_with(&p) && w.contains(why)),
                "{name}: {warnings:#?}"
            );
        };
        skipped("open.conf", "writable by others");
        skipped("group.conf", "writable by others");
        skipped("theirs.conf", "not root");
        skipped("big.conf", "larger than");
        skipped("link.conf", "symlink");
        skipped("sub.conf", "not a regular file");
        assert_eq!(warnings.len(), 6, "{warnings:#?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_files_are_no_limits_and_an_open_directory_is_skipped() {
        if rustix::process::geteuid().as_raw() != 0 {
            return;
        }
        let dir = scratch("missing");
        let (files, warnings) = read_all(&dir.join("nope.conf"), &dir.join("nope.d"));
        assert!(files.is_empty() && warnings.is_empty(), "{warnings:?}");
        let d = dir.join("limits.d");
        write(&d.join("a.conf"), "a\n", 0o644);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (files, warnings) = read_all(&dir.join("nope.conf"), &d);
        assert!(files.is_empty());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("writable by others"), "{warnings:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
