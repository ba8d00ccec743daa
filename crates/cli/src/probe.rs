//! `dugong probe URL`: one HTTP GET, exit 0 on a 2xx answer and 1 on
//! anything else — the health check of images that have no shell or curl
//! (compose's `healthcheck`, Kubernetes' exec probes) and systemd's wait for
//! readiness (`ExecStartPost=dugong probe --wait 60s …/readyz`).
//!
//! Speaks HTTP/1.1 over plain TCP or TLS (checked against `--ca` or the
//! system's CAs, with a client certificate when the server demands one), and
//! nothing else: it is a probe, not a client.

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(clap::Args)]
#[command(after_help = "Exit codes:\n  0    the answer was 2xx\n  1    anything else (no connection, TLS refused, \
    another status, no answer in time)")]
pub struct Args {
    /// What to GET: `http://127.0.0.1:8000/readyz`, `https://0.ha.test:8000/readyz`.
    url: String,
    /// Try again every half second until a 2xx answer or until this much time
    /// has passed (waiting for readiness at start).
    #[arg(long, value_parser = humantime::parse_duration)]
    wait: Option<Duration>,
    /// How long one attempt may take: connect, handshake, answer.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// https: the CA certificates (PEM) to check the server's certificate
    /// against; default: the system's.
    #[arg(long, env = "DUGONG_PROBE_CA")]
    ca: Option<PathBuf>,
    /// https: the name the server's certificate must carry, when the URL names
    /// it by address (`https://127.0.0.1:8000/readyz --tls-name 0.ha.test`).
    #[arg(long)]
    tls_name: Option<String>,
    /// https: a client certificate (PEM), for a server started with --tls-client-ca.
    #[arg(long, env = "DUGONG_PROBE_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The private key of --client-cert (PEM).
    #[arg(long, env = "DUGONG_PROBE_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<PathBuf>,
}

/// What one probe found.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// The first line of the body, to say why a server is not ready.
    reason: String,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let target = Target::parse(&args.url)?;
    let tls = match target.tls {
        true => Some(connector(&args)?),
        false => None,
    };
    let deadline = args.wait.map(|w| Instant::now() + w);
    loop {
        let outcome =
            match tokio::time::timeout(args.timeout, get(&target, tls.as_ref(), args.tls_name.as_deref())).await {
                Ok(Ok(answer)) if (200..300).contains(&answer.status) => {
                    crate::stdout::write(&format!("{}: {}\n", args.url, answer.status))?;
                    return Ok(ExitCode::SUCCESS);
                }
                Ok(Ok(answer)) => format!("{}: {} {}", args.url, answer.status, answer.reason),
                Ok(Err(e)) => format!("{}: {e:#}", args.url),
                Err(_) => format!("{}: no answer within {}", args.url, humantime::format_duration(args.timeout)),
            };
        match deadline {
            Some(d) if Instant::now() + RETRY < d => tokio::time::sleep(RETRY).await,
            _ => {
                eprintln!("{outcome}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
}

/// Between attempts of `--wait`.
const RETRY: Duration = Duration::from_millis(500);

/// The parts of the URL a probe needs.
#[derive(Debug, PartialEq)]
pub(crate) struct Target {
    tls: bool,
    host: String,
    port: u16,
    /// Path and query, as sent.
    path: String,
}

impl Target {
    pub(crate) fn parse(url: &str) -> anyhow::Result<Target> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("{url:?} is not a URL"))?;
        let tls = match parsed.scheme() {
            "http" => false,
            "https" => true,
            other => bail!("{url}: the scheme must be http or https, not {other}"),
        };
        let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
            bail!("{url}: no host");
        };
        // An IPv6 address comes in brackets; connecting wants it bare.
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = parsed.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        let mut path = parsed.path().to_string();
        if let Some(q) = parsed.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Target { tls, host, port, path })
    }
}

/// One GET.
async fn get(
    target: &Target,
    tls: Option<&tokio_rustls::TlsConnector>,
    tls_name: Option<&str>,
) -> anyhow::Result<Answer> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .with_context(|| format!("cannot connect to {}:{}", target.host, target.port))?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => exchange(tcp, target).await,
        Some(connector) => {
            let name = tls_name.unwrap_or(&target.host).to_string();
            let server_name =
                ServerName::try_from(name.clone()).with_context(|| format!("{name} is not a valid TLS name"))?;
            let stream = connector
                .connect(server_name, tcp)
                .await
                .with_context(|| format!("TLS handshake with {name} failed"))?;
            exchange(stream, target).await
        }
    }
}

/// Sends the request and reads the status line and the start of the body.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, target: &Target) -> anyhow::Result<Answer> {
    let host = if target.host.contains(':') { format!("[{}]", target.host) } else { target.host.clone() };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: dugong-probe/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path,
        target.port,
        crate::version::VERSION
    );
    stream.write_all(request.as_bytes()).await.context("sending the request")?;
    // The status line and a little of the body are all a probe needs.
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    while buf.len() < 16 * 1024 {
        let n = stream.read(&mut chunk).await.context("reading the answer")?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if answer(&buf).is_some_and(|a| !a.reason.is_empty() || buf.len() > 4096) {
            break;
        }
    }
    answer(&buf)
        .with_context(|| format!("not an HTTP answer: {:?}", String::from_utf8_lossy(&buf[..buf.len().min(80)])))
}

/// The status and the body's first line, once the headers are complete.
fn answer(buf: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let reason = body.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().chars().take(200).collect();
    Some(Answer { status, reason })
}

/// The TLS connector of `--ca` and the client certificate.
fn connector(args: &Args) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    match &args.ca {
        Some(path) => {
            for cert in pem_certificates(path, "--ca")? {
                roots.add(cert).with_context(|| format!("--ca {}: not a usable CA certificate", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                bail!("no system CA certificates found: pass --ca FILE");
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_root_certificates(roots);
    let mut config = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => {
            let chain = pem_certificates(cert, "--client-cert")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| anyhow::anyhow!("--client-key {}: no usable private key: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key).context("--client-cert and --client-key do not make a pair")?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn pem_certificates(path: &Path, flag: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{flag} {}: holds no certificate", path.display());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("http://127.0.0.1:8000/readyz").unwrap();
        assert_eq!(t, Target { tls: false, host: "127.0.0.1".into(), port: 8000, path: "/readyz".into() });
        let t = Target::parse("https://0.ha.test/metrics?x=1").unwrap();
        assert_eq!(t, Target { tls: true, host: "0.ha.test".into(), port: 443, path: "/metrics?x=1".into() });
        let t = Target::parse("http://[::1]:6060/metrics").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 6060));
        let e = Target::parse("grpc://0.ha.test:8001").unwrap_err().to_string();
        assert!(e.contains("http or https"), "{e}");
        assert!(Target::parse("127.0.0.1:8000/readyz").is_err());
    }

    #[test]
    fn answers() {
        let a = answer(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\r\ndatabase unreachable\n")
            .unwrap();
        assert_eq!((a.status, a.reason.as_str()), (503, "database unreachable"));
        let a = answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").unwrap();
        assert_eq!((a.status, a.reason.as_str()), (200, ""));
        assert!(answer(b"HTTP/1.1 200 OK\r\ncontent-le").is_none(), "headers not complete");
        assert!(answer(b"SSH-2.0-OpenSSH\r\n\r\n").is_none());
    }
}
