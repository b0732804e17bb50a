//! The command line: hand-written parsing of a small, fixed grammar.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use srpc::client::{Fingerprint, Trust};
use srpc::proto::{validate_name, validate_path, HARD_LIMITS};

pub const USAGE: &str = "\
Usage: srpc (--pin sha256:HEX | --ca FILE) --user NAME [OPTIONS] VERB HOST:PORT [PATH]

Calls, lists and describes the endpoints of an sRPC server.

Verbs:
  call HOST:PORT PATH    call the endpoint at PATH: the request is read from stdin
                         and the reply written to stdout, both as raw bytes
  ls HOST:PORT [PATH]    list the directory at PATH (default /), one line per entry:
                         type (d directory, e endpoint) and mode, owner, group,
                         SELinux label (when the server has labels), modification
                         time (UTC), name
  stat HOST:PORT [PATH]  describe the node at PATH (default /) as `key: value` lines

Options:
  --pin sha256:HEX       trust the server whose public key has this fingerprint
                         (srpcd prints it at start)
  --ca FILE              trust servers whose certificate is issued for the server
                         name by a CA in this PEM file
  --user NAME            the user to authenticate as
  --password-fd N        read the password from the first line of file descriptor N
                         (for scripts: `3<password-file` in the shell, or 0 to read
                         it from stdin, before a call's request); without it, the
                         password is asked for on the terminal with echo off
  --aname PATH           attach at PATH of the server's tree (default /); the PATH
                         of the verb is relative to it
  --server-name NAME     the name to check the server's certificate against with
                         --ca (default: the host part of HOST:PORT)
  --timeout SECS         seconds allowed for connecting, and for each request
                         (default: 10 to connect, 30 a request)
  -h, --help             show this text
  -V, --version          show the version

Other messages of the server's login (PAM) are shown on stderr; other questions
are asked on the terminal. Names and messages from the server are shown with
control characters escaped.

Exit status: 0 success; 1 the connection, the login or the request failed (the
message names the server's error code, e.g. permission_denied); 2 bad usage.
";

/// What to do with the node at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Call,
    Ls,
    Stat,
}

/// A parsed command line that runs a verb.
#[derive(Debug)]
pub struct Args {
    pub trust: Trust,
    pub user: String,
    pub password_fd: Option<RawFd>,
    pub aname: String,
    pub timeout: Option<Duration>,
    pub verb: Verb,
    /// `HOST:PORT` as given, for connecting.
    pub addr: String,
    pub server_name: String,
    pub path: String,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Args),
    Help,
    Version,
}

/// Options that take a value.
const VALUED: &[&str] = &[
    "--pin",
    "--ca",
    "--user",
    "--password-fd",
    "--aname",
    "--server-name",
    "--timeout",
];

/// Reads the command line (without the program name). The error is the
/// message for a usage error.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut options: Vec<(&'static str, String)> = Vec::new();
    let mut positional = Vec::new();
    let mut args = args.into_iter();
    let mut options_done = false;
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument {a:?} is not valid UTF-8"))?;
        if options_done || !arg.starts_with('-') || arg == "-" {
            positional.push(arg);
            continue;
        }
        match arg.as_str() {
            "--" => options_done = true,
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {
                let (name, inline) = match arg.split_once('=') {
                    Some((name, value)) => (name, Some(value.to_owned())),
                    None => (arg.as_str(), None),
                };
                let name = VALUED
                    .iter()
                    .copied()
                    .find(|v| *v == name)
                    .ok_or_else(|| format!("unknown option {name}"))?;
                let value = match inline {
                    Some(value) => value,
                    None => args
                        .next()
                        .ok_or_else(|| format!("{name} needs a value"))?
                        .into_string()
                        .map_err(|a| format!("the value of {name}, {a:?}, is not valid UTF-8"))?,
                };
                if options.iter().any(|(n, _)| *n == name) {
                    return Err(format!("{name} is given twice"));
                }
                options.push((name, value));
            }
        }
    }
    let take = |name: &str| {
        options
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    build(&take, &positional).map(Command::Run)
}

fn build<'a>(
    take: &dyn Fn(&str) -> Option<&'a str>,
    positional: &[String],
) -> Result<Args, String> {
    let trust = match (take("--pin"), take("--ca")) {
        (Some(pin), None) => Trust::Pin(
            pin.parse::<Fingerprint>()
                .map_err(|e| format!("--pin: {e}"))?,
        ),
        (None, Some(ca)) => Trust::CaFile(PathBuf::from(ca)),
        (Some(_), Some(_)) => return Err("give either --pin or --ca, not both".into()),
        (None, None) => {
            return Err("say how to trust the server: --pin sha256:HEX or --ca FILE".into())
        }
    };
    let user = take("--user").ok_or("--user NAME is required")?.to_owned();
    validate_name(&user, HARD_LIMITS.max_name).map_err(|e| format!("--user {user:?}: {e}"))?;
    let password_fd = take("--password-fd")
        .map(|fd| {
            fd.parse::<RawFd>()
                .ok()
                .filter(|fd| *fd >= 0)
                .ok_or_else(|| format!("--password-fd {fd:?}: not a file descriptor number"))
        })
        .transpose()?;
    let aname = take("--aname").unwrap_or("/").to_owned();
    validate_path(&aname, HARD_LIMITS.max_name).map_err(|e| format!("--aname {aname:?}: {e}"))?;
    let timeout = take("--timeout").map(parse_timeout).transpose()?;

    let [verb, rest @ ..] = positional else {
        return Err("no verb: say call, ls or stat".into());
    };
    let verb = match verb.as_str() {
        "call" => Verb::Call,
        "ls" => Verb::Ls,
        "stat" => Verb::Stat,
        other => return Err(format!("unknown verb {other:?}: say call, ls or stat")),
    };
    let (addr, path) = match (rest, verb) {
        ([], _) => return Err("HOST:PORT is missing".into()),
        ([_], Verb::Call) => return Err("call needs the PATH of an endpoint".into()),
        ([addr], _) => (addr, "/"),
        ([addr, path], _) => (addr, path.as_str()),
        (too_many, _) => return Err(format!("unexpected argument {:?} after PATH", too_many[2])),
    };
    let host = host_of(addr)?;
    validate_path(path, HARD_LIMITS.max_name).map_err(|e| format!("PATH {path:?}: {e}"))?;
    Ok(Args {
        trust,
        user,
        password_fd,
        aname,
        timeout,
        verb,
        addr: addr.clone(),
        server_name: take("--server-name").unwrap_or(host).to_owned(),
        path: path.to_owned(),
    })
}

/// The host part of `HOST:PORT` (`[v6]:PORT` for IPv6 addresses), checking the port.
fn host_of(addr: &str) -> Result<&str, String> {
    let bad = |why: &str| format!("{addr:?} is not HOST:PORT: {why}");
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(bad("the port must be a number from 1 to 65535")),
    }
    let host = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .ok_or_else(|| bad("an opening [ without its ]"))?,
        None if host.contains(':') => return Err(bad("write an IPv6 address as [ADDRESS]:PORT")),
        None => host,
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(host)
}

fn parse_timeout(secs: &str) -> Result<Duration, String> {
    secs.parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("--timeout {secs:?}: not a positive number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn run(line: &str) -> Result<Args, String> {
        match parse(line.split_whitespace().map(OsString::from))? {
            Command::Run(args) => Ok(args),
            other => panic!("{line}: {other:?}"),
        }
    }

    fn usage_error(line: &str) -> String {
        run(line).unwrap_err()
    }

    #[test]
    fn a_full_command_line_is_read() {
        let a = run(&format!(
            "--pin {PIN} --user alice --password-fd 3 --aname /demo --timeout 2.5 \
             call srpc.example.org:7001 /math/add"
        ))
        .unwrap();
        assert_eq!(a.trust, Trust::Pin(PIN.parse().unwrap()));
        assert_eq!(a.user, "alice");
        assert_eq!(a.password_fd, Some(3));
        assert_eq!(a.aname, "/demo");
        assert_eq!(a.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(a.verb, Verb::Call);
        assert_eq!(a.addr, "srpc.example.org:7001");
        assert_eq!(a.server_name, "srpc.example.org");
        assert_eq!(a.path, "/math/add");
    }

    #[test]
    fn defaults_and_other_spellings() {
        let a = run("ls --ca=ca.pem --user=bob [::1]:7001").unwrap();
        assert_eq!(a.trust, Trust::CaFile("ca.pem".into()));
        assert_eq!(a.password_fd, None);
        assert_eq!(a.aname, "/");
        assert_eq!(a.timeout, None);
        assert_eq!(a.verb, Verb::Ls);
        assert_eq!(a.addr, "[::1]:7001");
        assert_eq!(a.server_name, "::1");
        assert_eq!(a.path, "/");
        let a = run("--ca ca.pem --user bob --server-name srpc.internal stat 10.0.0.1:7001 /x")
            .unwrap();
        assert_eq!(a.server_name, "srpc.internal");
        assert_eq!(a.verb, Verb::Stat);
        assert!(matches!(
            parse(["--user", "x", "--help"].map(OsString::from)),
            Ok(Command::Help)
        ));
        assert!(matches!(
            parse(["-V"].map(OsString::from)),
            Ok(Command::Version)
        ));
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        let ok = format!("--pin {PIN} --user alice");
        for (line, expected) in [
            (
                "--user alice ls h:1".to_owned(),
                "--pin sha256:HEX or --ca FILE",
            ),
            (format!("--pin {PIN} --ca x --user a ls h:1"), "not both"),
            (
                "--pin sha256:12 --user a ls h:1".to_owned(),
                "--pin: fingerprint must have 64",
            ),
            (format!("--pin {PIN} ls h:1"), "--user NAME is required"),
            (format!("{ok} --user bob ls h:1"), "--user is given twice"),
            (
                format!("{ok} --frobnicate ls h:1"),
                "unknown option --frobnicate",
            ),
            (format!("{ok} ls h:1 --timeout"), "--timeout needs a value"),
            (format!("{ok} --timeout 0 ls h:1"), "not a positive number"),
            (
                format!("{ok} --timeout nan ls h:1"),
                "not a positive number",
            ),
            (
                format!("{ok} --password-fd -1 ls h:1"),
                "not a file descriptor",
            ),
            (
                format!("{ok} --aname demo ls h:1"),
                "--aname \"demo\": path must be absolute",
            ),
            (ok.clone(), "no verb"),
            (format!("{ok} list h:1"), "unknown verb \"list\""),
            (format!("{ok} ls"), "HOST:PORT is missing"),
            (format!("{ok} call h:1"), "call needs the PATH"),
            (
                format!("{ok} ls h:1 / extra"),
                "unexpected argument \"extra\"",
            ),
            (format!("{ok} ls h"), "no port"),
            (format!("{ok} ls h:0"), "from 1 to 65535"),
            (format!("{ok} ls h:http"), "from 1 to 65535"),
            (format!("{ok} ls ::1:7001"), "[ADDRESS]:PORT"),
            (format!("{ok} ls [::1:7001"), "without its ]"),
            (format!("{ok} ls :7001"), "no host"),
            (
                format!("{ok} ls h:1 /a/../b"),
                "PATH \"/a/../b\": name `..`",
            ),
            (format!("{ok} ls h:1 a"), "must be absolute"),
            ("--user .. --pin x ls h:1".to_owned(), "--pin"),
        ] {
            let err = usage_error(&line);
            assert!(err.contains(expected), "{line}: {err}");
        }
        assert!(usage_error(&format!("{ok} --user=.. ls h:1")).contains("given twice"));
        assert!(usage_error(&format!("--pin {PIN} --user .. ls h:1")).contains("`..`"));
    }

    #[test]
    fn the_usage_text_names_every_option() {
        for option in VALUED {
            assert!(USAGE.contains(option), "{option}");
        }
    }
}
