//! A walsender connection (`replication=database`), spoken over a socket of
//! our own: tokio-postgres has no replication protocol. TCP or a Unix
//! socket, TLS as `tls.rs` decides it for the replicator's other
//! connections, and trust, cleartext, md5 or SCRAM-SHA-256 logins.

use std::io;
use std::path::Path;

use bytes::{Buf, BytesMut};
use dugong_config::{PgTarget, SslMode};
use dugong_core::DbId;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::{ErrorResponseBody, Message};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::Host;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

use super::BellError;
use crate::engine::postgres::connect::{
    with_options, CONNECT_TIMEOUT, KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_RETRIES, SERVER_PROBES, USER_TIMEOUT,
};
use crate::engine::postgres::tls;

/// Startup option of the walsender session: the server asks for a reply at
/// least every 5 s (half of `wal_sender_timeout`) and so keeps the link
/// talking, which is how a silently dead one is noticed. The server also
/// probes its end of the socket as for the replicator's other connections
/// ([`SERVER_PROBES`]).
const WAL_SENDER_TIMEOUT: &str = "-c wal_sender_timeout=10s";

/// The port when the configuration names none.
const DEFAULT_PORT: u16 = 5432;

/// Anything a session can run over: TCP, a Unix socket, TLS on TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What the server sent, one message at a time.
pub(super) enum Frame {
    /// A message `postgres-protocol` parses.
    Message(Message),
    /// `CopyBothResponse` ('W'), which it does not: streaming has begun.
    CopyBoth,
}

/// A logged-in walsender session.
pub(super) struct Wire {
    stream: Box<dyn Stream>,
    input: BytesMut,
    output: BytesMut,
    /// The walsender's process id, as the server reported it.
    pub(super) pid: i32,
}

impl Wire {
    /// Connects to `target` (each host in turn until one answers) and logs
    /// in as a logical walsender on its database.
    pub(super) async fn open(db: DbId, target: &PgTarget, application_name: &str) -> Result<Wire, BellError> {
        let config = &target.config;
        let timeout = config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT);
        let places = places(config);
        if places.is_empty() {
            return Err(BellError::Config("no host to connect to".into()));
        }
        let mut last = None;
        for place in &places {
            let attempt = async {
                let stream = place.dial(db, target).await?;
                Wire::login(stream, config, application_name).await
            };
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(wire)) => return Ok(wire),
                // The server answered and said no: another host of the list
                // would not be asked by libpq either.
                Ok(Err(err @ BellError::Server { .. })) => return Err(err),
                Ok(Err(err)) => last = Some(err),
                Err(_) => last = Some(BellError::Io(io::Error::new(io::ErrorKind::TimedOut, "timed out connecting"))),
            }
        }
        Err(last.unwrap_or_else(|| BellError::Config("no host to connect to".into())))
    }

    /// The startup message and the authentication exchange.
    async fn login(
        stream: Box<dyn Stream>,
        config: &tokio_postgres::Config,
        application_name: &str,
    ) -> Result<Wire, BellError> {
        let mut wire = Wire { stream, input: BytesMut::with_capacity(8192), output: BytesMut::new(), pid: 0 };
        let user = config.get_user().ok_or_else(|| BellError::Config("no user configured".into()))?;
        let dbname = config.get_dbname().unwrap_or(user);
        let options = with_options(config, &format!("{WAL_SENDER_TIMEOUT} {SERVER_PROBES}"));
        let params = [
            ("user", user),
            ("database", dbname),
            ("replication", "database"),
            ("application_name", application_name),
            ("options", options.as_str()),
        ];
        frontend::startup_message(params, &mut wire.output)?;
        wire.send().await?;
        let password = config.get_password();
        let mut scram: Option<ScramSha256> = None;
        loop {
            match wire.read().await? {
                Frame::Message(Message::AuthenticationOk) => {}
                Frame::Message(Message::AuthenticationCleartextPassword) => {
                    let password = password.ok_or(BellError::NoPassword)?;
                    frontend::password_message(password, &mut wire.output)?;
                    wire.send().await?;
                }
                Frame::Message(Message::AuthenticationMd5Password(body)) => {
                    let password = password.ok_or(BellError::NoPassword)?;
                    let hash = md5_hash(user.as_bytes(), password, body.salt());
                    frontend::password_message(hash.as_bytes(), &mut wire.output)?;
                    wire.send().await?;
                }
                Frame::Message(Message::AuthenticationSasl(body)) => {
                    let password = password.ok_or(BellError::NoPassword)?;
                    let mut offered = body.mechanisms();
                    let mut plain = false;
                    while let Some(mechanism) = offered.next()? {
                        plain |= mechanism == SCRAM_SHA_256;
                    }
                    if !plain {
                        return Err(BellError::Unsupported("a SASL mechanism other than SCRAM-SHA-256".into()));
                    }
                    // Without channel binding: the server may offer
                    // SCRAM-SHA-256-PLUS too, and "n" tells it we do not
                    // support binding (rather than suspecting a downgrade).
                    let exchange = ScramSha256::new(password, ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, exchange.message(), &mut wire.output)?;
                    wire.send().await?;
                    scram = Some(exchange);
                }
                Frame::Message(Message::AuthenticationSaslContinue(body)) => {
                    let exchange =
                        scram.as_mut().ok_or_else(|| BellError::Protocol("SASL continue before start".into()))?;
                    exchange.update(body.data())?;
                    frontend::sasl_response(exchange.message(), &mut wire.output)?;
                    wire.send().await?;
                }
                Frame::Message(Message::AuthenticationSaslFinal(body)) => {
                    let exchange =
                        scram.as_mut().ok_or_else(|| BellError::Protocol("SASL final before start".into()))?;
                    exchange.finish(body.data())?;
                }
                Frame::Message(
                    Message::AuthenticationKerberosV5
                    | Message::AuthenticationScmCredential
                    | Message::AuthenticationGss
                    | Message::AuthenticationSspi
                    | Message::AuthenticationGssContinue(_),
                ) => return Err(BellError::Unsupported("GSSAPI, SSPI or Kerberos authentication".into())),
                Frame::Message(Message::BackendKeyData(body)) => wire.pid = body.process_id(),
                Frame::Message(Message::ParameterStatus(_) | Message::NoticeResponse(_)) => {}
                Frame::Message(Message::ReadyForQuery(_)) => return Ok(wire),
                Frame::Message(Message::ErrorResponse(body)) => return Err(server_error(&body)?),
                _ => return Err(BellError::Protocol("unexpected message while logging in".into())),
            }
        }
    }

    /// Runs one replication command and returns the rows it answered, each
    /// as text columns.
    pub(super) async fn command(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, BellError> {
        frontend::query(sql, &mut self.output)?;
        self.send().await?;
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            match self.read().await? {
                Frame::Message(Message::DataRow(row)) => {
                    let buffer = row.buffer();
                    let columns = row
                        .ranges()
                        .map(|range| Ok(range.map(|r| String::from_utf8_lossy(&buffer[r]).into_owned())))
                        .collect()?;
                    rows.push(columns);
                }
                Frame::Message(Message::ErrorResponse(body)) => failed = Some(server_error(&body)?),
                Frame::Message(Message::ReadyForQuery(_)) => {
                    return match failed {
                        Some(err) => Err(err),
                        None => Ok(rows),
                    }
                }
                _ => {}
            }
        }
    }

    /// Sends `START_REPLICATION` (or any command that answers with a
    /// CopyBoth stream) and waits until streaming begins.
    pub(super) async fn stream(&mut self, sql: &str) -> Result<(), BellError> {
        frontend::query(sql, &mut self.output)?;
        self.send().await?;
        loop {
            match self.read().await? {
                Frame::CopyBoth => return Ok(()),
                Frame::Message(Message::ErrorResponse(body)) => return Err(server_error(&body)?),
                Frame::Message(Message::NoticeResponse(_) | Message::ParameterStatus(_)) => {}
                _ => return Err(BellError::Protocol("unexpected answer to START_REPLICATION".into())),
            }
        }
    }

    /// Sends `payload` as one CopyData message.
    pub(super) async fn copy_data(&mut self, payload: &[u8]) -> Result<(), BellError> {
        frontend::CopyData::new(payload)?.write(&mut self.output);
        self.send().await
    }

    /// Ends the session politely; the server drops the temporary slot.
    pub(super) async fn terminate(mut self) {
        frontend::terminate(&mut self.output);
        let _ = self.send().await;
        let _ = self.stream.shutdown().await;
    }

    /// The next message from the server.
    pub(super) async fn read(&mut self) -> Result<Frame, BellError> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(frame);
            }
            if self.stream.read_buf(&mut self.input).await? == 0 {
                return Err(BellError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )));
            }
        }
    }

    /// A whole message from the input, if one is there.
    fn parse(&mut self) -> Result<Option<Frame>, BellError> {
        if self.input.len() < 5 {
            return Ok(None);
        }
        let tag = self.input[0];
        let len = u32::from_be_bytes([self.input[1], self.input[2], self.input[3], self.input[4]]) as usize;
        if len < 4 {
            return Err(BellError::Protocol("a message with an impossible length".into()));
        }
        if self.input.len() < len + 1 {
            self.input.reserve(len + 1 - self.input.len());
            return Ok(None);
        }
        if tag == b'W' {
            self.input.advance(len + 1);
            return Ok(Some(Frame::CopyBoth));
        }
        let mut whole = self.input.split_to(len + 1);
        match Message::parse(&mut whole)? {
            Some(message) => Ok(Some(Frame::Message(message))),
            None => Err(BellError::Protocol("a message cut short".into())),
        }
    }

    async fn send(&mut self) -> Result<(), BellError> {
        self.stream.write_all(&self.output).await?;
        self.stream.flush().await?;
        self.output.clear();
        Ok(())
    }
}

/// A server's error as ours: its SQLSTATE and message (never a row value:
/// the walsender's errors are about the session, the slot and settings).
pub(super) fn server_error(body: &ErrorResponseBody) -> Result<BellError, BellError> {
    let mut code = String::new();
    let mut message = String::new();
    let mut fields = body.fields();
    while let Some(field) = fields.next()? {
        match field.type_() {
            b'C' => code = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            _ => {}
        }
    }
    Ok(BellError::Server { code, message })
}

/// Where a configuration says the server is, in the order to try.
enum Place {
    Tcp { host: String, port: u16 },
    Unix { dir: String, port: u16 },
}

fn places(config: &tokio_postgres::Config) -> Vec<Place> {
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(DEFAULT_PORT);
    let addrs = config.get_hostaddrs();
    let hosts = config.get_hosts();
    if hosts.is_empty() {
        return addrs.iter().enumerate().map(|(i, a)| Place::Tcp { host: a.to_string(), port: port(i) }).collect();
    }
    hosts
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            // `hostaddr` wins over the name for dialling, as in libpq; the
            // name still serves TLS.
            Host::Tcp(name) => match addrs.get(i) {
                Some(addr) => Place::Tcp { host: addr.to_string(), port: port(i) },
                None => Place::Tcp { host: name.clone(), port: port(i) },
            },
            Host::Unix(dir) => Place::Unix { dir: dir.display().to_string(), port: port(i) },
        })
        .collect()
}

impl Place {
    /// Opens the socket, with TLS when `target` asks for it.
    async fn dial(&self, db: DbId, target: &PgTarget) -> Result<Box<dyn Stream>, BellError> {
        match self {
            Place::Unix { dir, port } => {
                let path = Path::new(dir).join(format!(".s.PGSQL.{port}"));
                Ok(Box::new(UnixStream::connect(path).await?))
            }
            Place::Tcp { host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                watch_socket(&stream)?;
                let tls_name = tls_name(target).unwrap_or(host.as_str()).to_owned();
                start_tls(db, target, stream, &tls_name).await
            }
        }
    }
}

/// The host name TLS checks the certificate against: the first TCP host
/// name of the configuration (with `hostaddr`, the address is dialled).
fn tls_name(target: &PgTarget) -> Option<&str> {
    target.config.get_hosts().iter().find_map(|h| match h {
        Host::Tcp(name) => Some(name.as_str()),
        Host::Unix(_) => None,
    })
}

/// Probes the socket and gives up on unacknowledged data as `connect.rs`
/// has tokio-postgres do for the replicator's other connections.
fn watch_socket(stream: &TcpStream) -> io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    socket.set_tcp_keepalive(&keepalive)?;
    socket.set_tcp_user_timeout(Some(USER_TIMEOUT))
}

/// TLS as the database's `sslmode` asks: an SSLRequest, then the handshake
/// of `tls.rs`'s connector, or the plain socket when none is wanted or a
/// `prefer` server offers none.
async fn start_tls(
    db: DbId,
    target: &PgTarget,
    mut stream: TcpStream,
    host: &str,
) -> Result<Box<dyn Stream>, BellError> {
    let connector = tls::connector(db, target).map_err(|err| BellError::Config(err.to_string()))?;
    let Some(mut connector) = connector else { return Ok(Box::new(stream)) };
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    stream.write_all(&request).await?;
    let mut answer = [0u8];
    stream.read_exact(&mut answer).await?;
    if answer[0] != b'S' {
        return match target.sslmode {
            SslMode::Prefer => Ok(Box::new(stream)),
            mode => Err(BellError::Tls(format!("the server does not offer TLS (sslmode={})", mode.as_str()))),
        };
    }
    let handshake = MakeTlsConnect::<TcpStream>::make_tls_connect(&mut connector, host)
        .map_err(|err| BellError::Tls(err.to_string()))?;
    let stream = handshake.connect(stream).await.map_err(|err| {
        let err: Box<dyn std::error::Error + Send + Sync> = err.into();
        BellError::Tls(err.to_string())
    })?;
    Ok(Box::new(stream))
}
