//! The D-Bus side of srpcctl: a proxy for `org.srpc.Srpcd1` on the system
//! bus (`DBUS_SYSTEM_BUS_ADDRESS` if set), and the few ways a call fails
//! that an administrator needs told apart, each with its exit status.

use zbus::proxy;

use srpc_admin::{Explanation, Handler, Session, Status, TreeNode, Worker, BUS_NAME};

/// The interface, as srpcd serves it.
#[proxy(
    interface = "org.srpc.Srpcd1",
    default_service = "org.srpc.Srpcd1",
    default_path = "/org/srpc/Srpcd1"
)]
pub trait Srpcd1 {
    /// Version, uptime and counts.
    fn status(&self) -> zbus::Result<Status>;
    /// Sessions attached.
    fn list_sessions(&self) -> zbus::Result<Vec<Session>>;
    /// Workers.
    fn list_workers(&self) -> zbus::Result<Vec<Worker>>;
    /// Ends a session.
    fn kill_session(&self, id: u64) -> zbus::Result<String>;
    /// Ends a user's sessions and worker.
    fn stop_worker(&self, user: &str) -> zbus::Result<String>;
    /// Rereads the configuration.
    fn reload(&self) -> zbus::Result<String>;
    /// Sets the log filter.
    fn set_log_level(&self, directives: &str) -> zbus::Result<String>;
    /// Explains a user's login.
    fn explain_user(&self, user: &str) -> zbus::Result<Explanation>;
    /// Handlers running.
    fn list_handlers(&self) -> zbus::Result<Vec<Handler>>;
    /// The canonical tree and its problems.
    fn check_tree(&self, path: &str) -> zbus::Result<Vec<TreeNode>>;
}

/// Why a command did not work, as srpcctl reports it: one line, one exit
/// status (srpcctl(8), EXIT STATUS).
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// srpcd said no to what was asked (no such session, a refused reload).
    Refused(String),
    /// srpcd does not run, or there is no system bus.
    NotRunning(String),
    /// The bus policy or srpcd refused this caller.
    AccessDenied(String),
}

impl Failure {
    /// The exit status.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Refused(_) => 1,
            Failure::NotRunning(_) => 3,
            Failure::AccessDenied(_) => 4,
        }
    }

    /// The one line to print.
    pub fn message(&self) -> String {
        match self {
            Failure::Refused(m) => m.clone(),
            Failure::NotRunning(m) => format!("srpcd is not running: {m}"),
            Failure::AccessDenied(m) => {
                format!("access denied: {m} (the admin methods are for root and group srpcadmin)")
            }
        }
    }
}

/// Sorts a zbus failure into what the administrator can act on.
pub fn classify(e: &zbus::Error) -> Failure {
    let (name, detail) = match e {
        zbus::Error::MethodError(name, detail, _) => {
            (name.as_str().to_owned(), detail.clone().unwrap_or_default())
        }
        zbus::Error::FDO(fdo) => {
            let name = zbus::DBusError::name(fdo.as_ref()).as_str().to_owned();
            let detail = zbus::DBusError::description(fdo.as_ref())
                .unwrap_or_default()
                .to_owned();
            (name, detail)
        }
        zbus::Error::InputOutput(io) => {
            return Failure::NotRunning(format!("cannot reach the system bus ({io})"))
        }
        zbus::Error::Address(a) => {
            return Failure::NotRunning(format!("no system bus address ({a})"))
        }
        other => return Failure::Refused(format!("D-Bus: {other}")),
    };
    let short = name.rsplit('.').next().unwrap_or(&name).to_owned();
    match short.as_str() {
        "ServiceUnknown" | "NameHasNoOwner" | "NoReply" | "Disconnected" | "UnknownObject" => {
            Failure::NotRunning(format!("{BUS_NAME} has no owner on the system bus"))
        }
        // The bus daemon's refusal carries its whole rule dump: one line
        // says it better. srpcd's own names the uid and the group.
        "AccessDenied" if name.starts_with("org.freedesktop.DBus.") || detail.is_empty() => {
            Failure::AccessDenied("the bus policy refused the call".to_owned())
        }
        "AccessDenied" => Failure::AccessDenied(detail),
        _ if detail.is_empty() => Failure::Refused(short),
        _ => Failure::Refused(detail),
    }
}

/// Connects to the system bus and makes the proxy.
pub async fn connect() -> Result<Srpcd1Proxy<'static>, Failure> {
    // Whatever stops the connection (no socket, refused, a bad address):
    // there is no bus to find srpcd on.
    let conn = zbus::Connection::system()
        .await
        .map_err(|e| Failure::NotRunning(format!("cannot reach the system bus: {e}")))?;
    Srpcd1Proxy::new(&conn).await.map_err(|e| classify(&e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{classify, Failure};

    fn method_error(name: &str, detail: &str) -> zbus::Error {
        let msg = zbus::message::Message::method_call("/", "Ping")
            .unwrap()
            .build(&())
            .unwrap();
        zbus::Error::MethodError(name.try_into().unwrap(), Some(detail.to_owned()), msg)
    }

    #[test]
    fn failures_are_sorted_by_what_the_administrator_can_do() {
        let gone = classify(&method_error(
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "The name is not activatable",
        ));
        assert!(matches!(gone, Failure::NotRunning(_)), "{gone:?}");
        assert_eq!(gone.code(), 3);

        let policy = classify(&method_error(
            "org.freedesktop.DBus.Error.AccessDenied",
            "Rejected send message",
        ));
        assert_eq!(policy.code(), 4);
        assert_eq!(
            policy.message(),
            "access denied: the bus policy refused the call \
             (the admin methods are for root and group srpcadmin)"
        );
        let ours = classify(&method_error(
            "org.srpc.Srpcd1.Error.AccessDenied",
            "uid 1000 is neither root nor in group srpcadmin",
        ));
        assert_eq!(
            ours.message(),
            "access denied: uid 1000 is neither root nor in group srpcadmin \
             (the admin methods are for root and group srpcadmin)"
        );
        let refused = classify(&method_error(
            "org.srpc.Srpcd1.Error.NoSuchSession",
            "no session 7",
        ));
        assert_eq!(refused, Failure::Refused("no session 7".to_owned()));
        assert_eq!(refused.code(), 1);
    }
}
