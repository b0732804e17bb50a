//! The peer: a gRPC echo service with tonic (HTTP/2 over TLS 1.3, rustls with
//! ring, as sRPC), in a process of its own, with tonic's defaults. The client
//! side is one `Channel` (one HTTP/2 connection) per connection, shared by the
//! tasks calling on it, as sRPC's tasks share a fid.

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::measure::{echoed, Echo};

// tonic's generated code, not ours to lint.
#[allow(clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("echo");
}

use pb::echo_client::EchoClient;
use pb::echo_server::EchoServer;

struct EchoService;

#[tonic::async_trait]
impl pb::echo_server::Echo for EchoService {
    async fn echo(&self, req: Request<pb::EchoRequest>) -> Result<Response<pb::EchoReply>, Status> {
        Ok(Response::new(pb::EchoReply {
            payload: req.into_inner().payload,
        }))
    }
}

/// `srpc-bench grpc-server PORT`: the certificate and key (PEM, the
/// certificate first, then the key) come on stdin, so the server can run as
/// an unprivileged user without reading root's key file.
pub fn serve_main(port: &str) -> Result<(), String> {
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    let mut pem = String::new();
    std::io::stdin()
        .read_to_string(&mut pem)
        .map_err(|e| format!("reading the certificate: {e}"))?;
    let split = pem
        .find("-----BEGIN PRIVATE KEY-----")
        .ok_or("no private key on stdin")?;
    let (cert, key) = pem.split_at(split);
    let identity = Identity::from_pem(cert, key);
    // tokio's defaults: one worker thread per core, as srpc-front has.
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        Server::builder()
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|e| e.to_string())?
            .add_service(EchoServer::new(EchoService))
            .serve(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .map_err(|e| e.to_string())
    })
}

/// The gRPC server process; killed when dropped.
pub struct GrpcServer {
    child: Child,
    pub port: u16,
}

impl GrpcServer {
    pub fn start(dir: &Path, uid: u32, gid: u32, cert: &str, key: &str) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("grpc-server.log")).map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("grpc-server")
            .arg(port.to_string())
            .uid(uid)
            .gid(gid)
            .current_dir("/")
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting the gRPC server: {e}"))?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().ok_or("no stdin")?;
            stdin
                .write_all(format!("{cert}{key}").as_bytes())
                .map_err(|e| format!("gRPC server stdin: {e}"))?;
        }
        let server = GrpcServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("the gRPC server did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/2 connection to the gRPC server.
pub struct GrpcConn {
    client: EchoClient<Channel>,
}

impl GrpcConn {
    pub async fn open(port: u16, cert_pem: &str) -> Result<Self, String> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(cert_pem))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
            .map_err(|e| e.to_string())?
            .tls_config(tls)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("gRPC connect: {e:?}"))?;
        let client = EchoClient::new(channel)
            .max_decoding_message_size(4 * 1024 * 1024)
            .max_encoding_message_size(4 * 1024 * 1024);
        Ok(GrpcConn { client })
    }
}

impl Echo for GrpcConn {
    async fn call(&self, payload: &Bytes) -> Result<(), String> {
        // A clone shares the connection (tonic's documented way to call
        // concurrently on one channel).
        let mut client = self.client.clone();
        let reply = client
            .echo(pb::EchoRequest {
                payload: payload.clone(),
            })
            .await
            .map_err(|e| format!("gRPC echo: {e}"))?;
        echoed(&reply.into_inner().payload, payload)
    }
}
