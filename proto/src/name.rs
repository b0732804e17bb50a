//! Validation of names and attach paths: the rules that keep every name one
//! element of a tree that cannot be left.

use crate::error::NameError;

/// Checks one name: non-empty, not `.` or `..`, no NUL, no `/`, at most `max`
/// bytes. (The JSON layer has already ensured it is valid UTF-8.)
pub fn validate_name(name: &str, max: u32) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name == "." {
        return Err(NameError::Dot);
    }
    if name == ".." {
        return Err(NameError::DotDot);
    }
    if name.contains('\0') {
        return Err(NameError::Nul);
    }
    if name.contains('/') {
        return Err(NameError::Slash);
    }
    if name.len() > max as usize {
        return Err(NameError::TooLong {
            len: name.len(),
            max,
        });
    }
    Ok(())
}

/// Checks an attach path: `/` or `/`-separated names each valid by
/// [`validate_name`]; no empty elements (so no `//` and no trailing `/`).
pub fn validate_path(path: &str, max_name: u32) -> Result<(), NameError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(NameError::NotAbsolute);
    };
    if rest.is_empty() {
        return Ok(());
    }
    rest.split('/')
        .try_for_each(|element| validate_name(element, max_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(validate_name("echo", 255), Ok(()));
        assert_eq!(validate_name("", 255), Err(NameError::Empty));
        assert_eq!(validate_name(".", 255), Err(NameError::Dot));
        assert_eq!(validate_name("..", 255), Err(NameError::DotDot));
        assert_eq!(validate_name("...", 255), Ok(()));
        assert_eq!(validate_name("a\0b", 255), Err(NameError::Nul));
        assert_eq!(validate_name("a/b", 255), Err(NameError::Slash));
        assert_eq!(
            validate_name("abcd", 3),
            Err(NameError::TooLong { len: 4, max: 3 })
        );
    }

    #[test]
    fn paths() {
        assert_eq!(validate_path("/", 255), Ok(()));
        assert_eq!(validate_path("/a/b", 255), Ok(()));
        assert_eq!(validate_path("a/b", 255), Err(NameError::NotAbsolute));
        assert_eq!(validate_path("", 255), Err(NameError::NotAbsolute));
        assert_eq!(validate_path("/a//b", 255), Err(NameError::Empty));
        assert_eq!(validate_path("/a/", 255), Err(NameError::Empty));
        assert_eq!(validate_path("/a/../b", 255), Err(NameError::DotDot));
    }
}
