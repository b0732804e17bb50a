//! The `srpc` command-line client, run as a program against the test server: the
//! pin and the user on the command line, the password from a file descriptor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/test_server.rs"]
mod test_server;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use test_server::{password_of, Knobs, TestCa, TestServer, LEAF_LABEL};

const SRPC: &str = env!("CARGO_BIN_EXE_srpc");
/// Only guards against a hang.
const HANG: Duration = Duration::from_secs(20);

/// A scratch directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("client_cli-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How the password reaches srpc.
enum Password<'a> {
    /// On fd 3, opened by the shell from a file holding this line (`3<file`).
    Fd3(&'a str),
    /// Not given at all, and no controlling terminal (run under `setsid`).
    NoneWithoutTerminal,
    /// The caller passes `--password-fd` itself (or nothing) in the arguments.
    InArgs,
}

/// Runs srpc with `args`, `stdin` as its standard input.
async fn srpc(dir: &Path, password: Password<'_>, args: &[String], stdin: &[u8]) -> Output {
    let stdin_file = dir.join("stdin");
    std::fs::write(&stdin_file, stdin).unwrap();
    let mut command = match password {
        Password::Fd3(line) => {
            let file = dir.join("password");
            std::fs::write(&file, format!("{line}\n")).unwrap();
            // What a script does: `srpc --password-fd 3 … 3<file`.
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(r#"exec "$0" --password-fd 3 "$@" 3<"$PASSWORD_FILE""#)
                .arg(SRPC)
                .env("PASSWORD_FILE", file);
            c
        }
        Password::NoneWithoutTerminal => {
            let mut c = Command::new("setsid");
            c.arg("--wait").arg(SRPC);
            c
        }
        Password::InArgs => Command::new(SRPC),
    };
    command
        .args(args)
        .stdin(std::fs::File::open(&stdin_file).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = tokio::task::spawn_blocking(move || command.output().unwrap());
    tokio::time::timeout(HANG, run)
        .await
        .expect("srpc hung")
        .unwrap()
}

fn args(server: &TestServer, user: &str, rest: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--pin".to_owned(),
        server.fingerprint.to_string(),
        "--user".to_owned(),
        user.to_owned(),
    ];
    for arg in rest {
        args.push(arg.replace("ADDR", &server.addr.to_string()));
    }
    args
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Bytes that are not text: NUL, invalid UTF-8, newlines and a CR.
const BINARY: &[u8] = b"\x00\xff\xfe request\nwith\x00NULs\r\n\x80tail";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_sends_stdin_and_writes_the_reply_to_stdout_byte_for_byte() {
    let server = TestServer::start(Knobs::default()).await;
    let dir = scratch("call");
    let out = srpc(
        &dir,
        Password::Fd3(password_of("alice")),
        &args(&server, "alice", &["call", "ADDR", "/echo"]),
        BINARY,
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(out.stdout, BINARY);
    // PAM's other messages are shown on stderr.
    assert!(
        text(&out.stderr).contains("Welcome, alice"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stderr).contains(password_of("alice")));

    // The password may also be the first line of stdin, the request the rest.
    let mut stdin = format!("{}\n", password_of("bob")).into_bytes();
    stdin.extend_from_slice(BINARY);
    let out = srpc(
        &dir,
        Password::InArgs,
        &args(
            &server,
            "bob",
            &["--password-fd", "0", "call", "ADDR", "/sub/leaf"],
        ),
        &stdin,
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(out.stdout, BINARY);

    // An empty request is a call too.
    let out = srpc(
        &dir,
        Password::Fd3(password_of("alice")),
        &args(&server, "alice", &["call", "ADDR", "/echo"]),
        b"",
    )
    .await;
    assert_exit(&out, 0);
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_prints_one_line_per_entry() {
    let server = TestServer::start(Knobs::default()).await;
    let dir = scratch("ls");
    let pw = password_of("alice");

    let out = srpc(
        &dir,
        Password::Fd3(pw),
        &args(&server, "alice", &["ls", "ADDR"]),
        b"",
    )
    .await;
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "close",
            "collect",
            "echo",
            "fail",
            "garbage",
            "gate",
            "hold",
            "huge",
            "locked",
            "sub",
            "wrongtype"
        ]
    );
    assert!(
        lines.contains(&"erwxr-x--- alice alice 2023-11-14T22:13:20Z echo"),
        "{stdout}"
    );
    assert!(
        lines.contains(&"drwxr-xr-x alice alice 2023-11-14T22:13:20Z sub"),
        "{stdout}"
    );

    // A labelled entry shows its label.
    let out = srpc(
        &dir,
        Password::Fd3(pw),
        &args(&server, "alice", &["ls", "ADDR", "/sub"]),
        b"",
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(
        text(&out.stdout),
        format!("erwxr-x--- alice alice {LEAF_LABEL} 2023-11-14T22:13:20Z leaf\n")
    );

    // An endpoint is listed as itself, as `ls -l FILE` does.
    let out = srpc(
        &dir,
        Password::Fd3(pw),
        &args(&server, "alice", &["ls", "ADDR", "/echo"]),
        b"",
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(
        text(&out.stdout),
        "erwxr-x--- alice alice 2023-11-14T22:13:20Z echo\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_prints_key_value_lines() {
    let server = TestServer::start(Knobs::default()).await;
    let dir = scratch("stat");
    let out = srpc(
        &dir,
        Password::Fd3(password_of("bob")),
        &args(&server, "bob", &["stat", "ADDR", "/sub/leaf"]),
        b"",
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(
        text(&out.stdout),
        format!(
            "name: leaf\ntype: endpoint\nmode: 0750 (rwxr-x---)\nuid: 1000\ngid: 1000\n\
             owner: bob\ngroup: bob\nmtime: 2023-11-14T22:13:20Z\nqid.path: 12\n\
             qid.version: 7\nlabel: {LEAF_LABEL}\n"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_exit_1_naming_the_error_code() {
    let server = TestServer::start(Knobs::default()).await;
    let dir = scratch("errors");
    let pw = password_of("alice");
    for (rest, expected) in [
        (
            &["call", "ADDR", "/fail"][..],
            "calling /fail: server error permission_denied (errno 13): permission denied for alice",
        ),
        (
            &["ls", "ADDR", "/locked"][..],
            "listing /locked: server error permission_denied (errno 13)",
        ),
        (
            &["stat", "ADDR", "/nothing"][..],
            "walking to /nothing: server error no_such_node",
        ),
    ] {
        let out = srpc(&dir, Password::Fd3(pw), &args(&server, "alice", rest), b"x").await;
        assert_exit(&out, 1);
        assert!(out.stdout.is_empty());
        // After PAM's welcome, the error on a line of its own.
        let stderr = text(&out.stderr);
        let last = stderr.lines().last().unwrap();
        assert!(
            last.starts_with("srpc: ") && last.contains(expected),
            "{rest:?}: {stderr}"
        );
    }

    let out = srpc(
        &dir,
        Password::Fd3("not the password"),
        &args(&server, "alice", &["stat", "ADDR"]),
        b"",
    )
    .await;
    assert_exit(&out, 1);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("logging in as alice: server error auth_failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("not the password"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_exits_1_with_both_fingerprints() {
    let server = TestServer::start(Knobs::default()).await;
    let dir = scratch("pin");
    let pinned = format!("sha256:{}", "ab".repeat(32));
    let mut argv = args(&server, "alice", &["stat", "ADDR"]);
    argv[1].clone_from(&pinned);
    let out = srpc(&dir, Password::Fd3(password_of("alice")), &argv, b"").await;
    assert_exit(&out, 1);
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&pinned), "{stderr}");
    assert!(stderr.contains(&server.fingerprint.to_string()), "{stderr}");
    // Nothing reached the server beyond the handshake.
    assert!(server.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_checks_the_server_name() {
    let ca = TestCa::new("cli test CA");
    let server = TestServer::start_with(ca.issue(), Knobs::default()).await;
    let dir = scratch("ca");
    let ca_file = dir.join("ca.pem");
    ca.write_pem(&ca_file);
    let ca_file = ca_file.to_str().unwrap();
    let pw = password_of("alice");

    // The certificate is for localhost, and the address is an IP: the name must be given.
    let run = |rest: &'static [&'static str]| {
        let mut argv = vec![
            "--ca".to_owned(),
            ca_file.to_owned(),
            "--user".into(),
            "alice".into(),
        ];
        argv.extend(
            rest.iter()
                .map(|a| a.replace("ADDR", &server.addr.to_string())),
        );
        argv
    };
    let out = srpc(
        &dir,
        Password::Fd3(pw),
        &run(&["--server-name", "localhost", "stat", "ADDR"]),
        b"",
    )
    .await;
    assert_exit(&out, 0);
    assert!(text(&out.stdout).starts_with("name: /\ntype: dir\n"));

    let out = srpc(&dir, Password::Fd3(pw), &run(&["stat", "ADDR"]), b"").await;
    assert_exit(&out, 1);
    assert!(
        text(&out.stderr).contains("TLS handshake failed"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_help_exits_0() {
    let server = TestServer::start(Knobs::default()).await;
    let dir = scratch("usage");
    for (argv, expected) in [
        (vec![], "--pin sha256:HEX or --ca FILE"),
        (
            args(&server, "alice", &["list", "ADDR"]),
            "unknown verb \"list\"",
        ),
        (
            args(&server, "alice", &["call", "ADDR"]),
            "call needs the PATH",
        ),
        (
            args(&server, "alice", &["ls", "ADDR", "relative"]),
            "must be absolute",
        ),
        (
            vec![
                "--pin".into(),
                "sha256:xyz".into(),
                "--user".into(),
                "a".into(),
                "ls".into(),
                "h:1".into(),
            ],
            "--pin: fingerprint has 'x'",
        ),
        (
            args(&server, "alice", &["--password-fd", "9", "ls", "ADDR"]),
            "--password-fd 9: fcntl(F_DUPFD_CLOEXEC): fd 9 is not open",
        ),
    ] {
        let out = srpc(&dir, Password::InArgs, &argv, b"").await;
        assert_exit(&out, 2);
        let stderr = text(&out.stderr);
        assert!(stderr.contains(expected), "{argv:?}: {stderr}");
        assert!(stderr.contains("srpc --help"), "{stderr}");
    }
    // Nothing was dialled for any of them.
    assert!(server.received().is_empty());

    let out = srpc(&dir, Password::InArgs, &["--help".to_owned()], b"").await;
    assert_exit(&out, 0);
    let usage = text(&out.stdout);
    for word in [
        "Usage: srpc",
        "call HOST:PORT PATH",
        "ls HOST:PORT",
        "stat HOST:PORT",
        "--password-fd",
        "Exit status",
    ] {
        assert!(usage.contains(word), "{word}: {usage}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_terminal_the_password_must_come_from_an_fd() {
    let server = TestServer::start(Knobs::default()).await;
    let dir = scratch("notty");
    let out = srpc(
        &dir,
        Password::NoneWithoutTerminal,
        &args(&server, "alice", &["ls", "ADDR"]),
        b"",
    )
    .await;
    assert_exit(&out, 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no terminal to ask for the password on")
            && stderr.contains("--password-fd"),
        "{stderr}"
    );
    assert!(server.received().is_empty());
}

/// Reads `from` into `transcript` until `wanted` shows after offset `at`; returns
/// the offset just after it.
fn read_until(from: &mut impl Read, transcript: &mut Vec<u8>, at: usize, wanted: &str) -> usize {
    loop {
        if let Some(found) = transcript[at..]
            .windows(wanted.len())
            .position(|w| w == wanted.as_bytes())
        {
            return at + found + wanted.len();
        }
        let mut chunk = [0u8; 512];
        let n = from.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "the terminal closed before {wanted:?}: {}",
            text(transcript)
        );
        transcript.extend_from_slice(&chunk[..n]);
    }
}

fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Runs `shell_command` on a pseudo-terminal of its own made by script(1): what it
/// shows comes back on script's stdout, and script's stdin is the keyboard. Each
/// `(prompt, keys)` types `keys` once `prompt` has shown, as a person would.
/// Returns the exit status and everything shown.
async fn at_a_terminal(
    shell_command: String,
    typing: &'static [(&'static str, &'static [u8])],
) -> (std::process::ExitStatus, String) {
    let run = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("script")
            .args([
                "--quiet",
                "--return",
                "--command",
                &shell_command,
                "/dev/null",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut keyboard = child.stdin.take().unwrap();
        let mut screen = child.stdout.take().unwrap();
        let mut transcript = Vec::new();
        let mut at = 0;
        for (prompt, keys) in typing {
            at = read_until(&mut screen, &mut transcript, at, prompt);
            keyboard.write_all(keys).unwrap();
            keyboard.flush().unwrap();
        }
        screen.read_to_end(&mut transcript).unwrap();
        drop(keyboard);
        (child.wait().unwrap(), text(&transcript))
    });
    tokio::time::timeout(HANG, run)
        .await
        .expect("hung at the terminal")
        .unwrap()
}

fn srpc_command_line(server: &TestServer, rest: &[&str]) -> String {
    std::iter::once(SRPC.to_owned())
        .chain(args(server, "alice", rest))
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_is_asked_on_the_terminal_with_echo_off() {
    let server = TestServer::start(Knobs::default()).await;
    let (status, transcript) = at_a_terminal(
        srpc_command_line(&server, &["ls", "ADDR", "/sub"]),
        &[
            ("Password: ", b"wonderland\n"),
            ("Password again: ", b"wonderland\n"),
        ],
    )
    .await;
    assert!(status.success(), "{status}: {transcript}");
    assert!(transcript.contains("Welcome, alice"), "{transcript}");
    assert!(
        transcript.contains(&format!("{LEAF_LABEL} 2023-11-14T22:13:20Z leaf")),
        "{transcript}"
    );
    // Typed twice, shown never.
    assert!(!transcript.contains("wonderland"), "{transcript}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_at_the_password_prompt_exits_130_with_echo_back_on() {
    let server = TestServer::start(Knobs::default()).await;
    // The shell survives the interrupt (a trap runs after srpc ends) to report
    // srpc's status and the terminal's settings.
    let script = format!(
        "trap true INT; {}; echo \"status=$?\"; stty -a",
        srpc_command_line(&server, &["ls", "ADDR"])
    );
    let (status, transcript) = at_a_terminal(script, &[("Password: ", b"\x03")]).await;
    assert!(status.success(), "{status}: {transcript}");
    assert!(transcript.contains("status=130"), "{transcript}");
    let settings: Vec<&str> = transcript.split_whitespace().collect();
    assert!(settings.contains(&"echo"), "{transcript}");
    assert!(settings.contains(&"-echonl"), "{transcript}");
}
