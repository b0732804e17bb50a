//! What the labels need from the live policy: one question, asked through a trait so that
//! this crate stays free of FFI (srpcd implements it in `os/` with
//! `security_check_context`) and tests answer it from a fixture.

/// The loaded SELinux policy.
pub trait Policy {
    /// Whether the loaded policy accepts `context` as a valid security context (user may
    /// hold the role, role may hold the type, level inside the user's range).
    /// `Err` when the policy cannot be asked (no selinuxfs, I/O error): the caller refuses
    /// the login, as it does for `Ok(false)`.
    fn check_context(&self, context: &str) -> std::io::Result<bool>;
}
