//! Databases: where each one is and how to log in, from Bucardo's fields
//! (`dbname`, `host` with libpq keywords, `port`, `user`, `pass`) or from a
//! Dugong `url`.

use std::env::VarError;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use dugong_core::DbId;
use tokio_postgres::config::Host;

use crate::error::Invalid;
use crate::host::HostWords;
use crate::raw::RawDatabase;
use crate::secret::Secret;
use crate::span::{Spanned, Spans};
use crate::sslmode::{self, SslMode};

/// Looks up an environment variable (the process environment, or a fake in tests).
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Result<String, VarError>;

/// PostgreSQL's port when none is given.
const DEFAULT_PORT: u16 = 5432;

/// One entry of `databases`.
#[derive(Debug, Clone)]
pub struct Database {
    /// Its `id`; status calls it `db<id>`.
    pub id: DbId,
    /// Where it is and how to log in.
    pub location: Location,
}

/// Where a database is.
#[derive(Debug, Clone)]
// A config holds a handful of these; unboxed keeps matching on them simple.
#[allow(clippy::large_enum_variant)]
pub enum Location {
    /// A PostgreSQL server.
    Postgres(PgTarget),
    /// A SQLite file (`"url": "sqlite:PATH"`), the path as written.
    Sqlite(PathBuf),
}

impl fmt::Display for Location {
    /// For messages: never shows a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Postgres(target) => f.write_str(&target.display),
            Location::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
        }
    }
}

/// How to connect to a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgTarget {
    /// Ready for `connect`: host(s), port, dbname, user, password, sslmode and
    /// the libpq keywords given. Its `Debug` hides the password.
    pub config: tokio_postgres::Config,
    /// The TLS mode; `config` holds what tokio-postgres knows of it (the
    /// verify modes are `require` there).
    pub sslmode: SslMode,
    /// The PEM file of CA certificates to trust (`sslrootcert`), checked
    /// readable at load. Without it, `verify-ca` and `verify-full` trust the
    /// system's CAs.
    pub sslrootcert: Option<PathBuf>,
    /// `host:port/dbname user=NAME`, without the password: for messages.
    pub display: String,
    /// The password also held by `config`, for tools that take it separately
    /// (`PGPASSWORD` of `pg_dump`).
    pub password: Option<Secret>,
}

impl PgTarget {
    pub(crate) fn new(
        config: tokio_postgres::Config,
        sslmode: SslMode,
        sslrootcert: Option<PathBuf>,
        password: Option<Secret>,
    ) -> PgTarget {
        PgTarget { display: describe(&config), config, sslmode, sslrootcert, password }
    }

    /// The login is PostgreSQL's well-known `postgres`/`postgres`, which
    /// deployments of this kind often keep: worth a loud warning.
    pub fn has_default_login(&self) -> bool {
        self.config.get_user() == Some("postgres") && self.password.as_ref().is_some_and(|p| p.expose() == "postgres")
    }
}

/// `host:port[,host:port]/dbname user=NAME`.
fn describe(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(DEFAULT_PORT);
    let mut hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    if hosts.is_empty() {
        hosts = config.get_hostaddrs().iter().map(ToString::to_string).collect();
    }
    let hosts: Vec<String> = hosts.iter().enumerate().map(|(i, host)| format!("{host}:{}", port(i))).collect();
    let user = config.get_user().unwrap_or("?");
    // Without a dbname, PostgreSQL connects to the database named like the user.
    let dbname = config.get_dbname().unwrap_or(user);
    format!("{}/{dbname} user={user}", hosts.join(","))
}

/// Builds database `prefix` (`databases[<i>]`) from its raw shape.
pub(crate) fn from_raw(
    prefix: &str,
    raw: Spanned<RawDatabase>,
    env: Env<'_>,
    spans: &mut Spans,
) -> Result<Database, Invalid> {
    spans.note(prefix, &raw);
    let raw = raw.value;
    let field = |name: &str| format!("{prefix}.{name}");
    spans.note(&field("id"), &raw.id);
    spans.note_opt(&field("dbname"), &raw.dbname);
    spans.note_opt(&field("host"), &raw.host);
    spans.note_opt(&field("port"), &raw.port);
    spans.note_opt(&field("user"), &raw.user);
    spans.note_opt(&field("pass"), &raw.pass);
    spans.note_opt(&field("url"), &raw.url);
    spans.note_opt(&field("sslmode"), &raw.sslmode);
    spans.note_opt(&field("sslrootcert"), &raw.sslrootcert);

    let id = raw.id.value;
    let password = password(&field("pass"), id, raw.pass.as_ref(), env)?;
    let location = match &raw.url {
        Some(url) => from_url(&field, url.value.expose(), &raw, password)?,
        None => Location::Postgres(from_fields(&field, raw, password)?),
    };
    Ok(Database { id, location })
}

/// `pass`: the password itself, or `"env"` for `$BUCARDO_DB<id>`.
fn password(field: &str, id: DbId, pass: Option<&Spanned<Secret>>, env: Env<'_>) -> Result<Option<Secret>, Invalid> {
    let Some(pass) = pass else { return Ok(None) };
    if pass.value.expose() != "env" {
        return Ok(Some(pass.value.clone()));
    }
    let var = format!("BUCARDO_DB{}", id.0);
    match env(&var) {
        Ok(value) => Ok(Some(Secret::new(value))),
        Err(VarError::NotPresent) => Err(Invalid::new(
            field,
            format!("\"env\" reads the password from the environment variable {var}, which is not set"),
        )),
        Err(VarError::NotUnicode(_)) => {
            Err(Invalid::new(field, format!("the environment variable {var} is not valid UTF-8")))
        }
    }
}

/// Bucardo's way: `host` (with keywords), `port`, `dbname`, `user`, `pass`.
fn from_fields(
    field: &dyn Fn(&str) -> String,
    raw: RawDatabase,
    password: Option<Secret>,
) -> Result<PgTarget, Invalid> {
    let required = |value: Option<Spanned<String>>, name: &str, example: &str| match value {
        Some(value) if !value.value.trim().is_empty() => Ok(value.value.trim().to_owned()),
        Some(_) => Err(Invalid::new(field(name), format!("empty; {example}"))),
        None => Err(Invalid::new(field(name), format!("missing; {example}, or give a \"url\""))),
    };
    let host = required(raw.host, "host", "write the server's name, e.g. \"db.example port=5432\"")?;
    let mut words = HostWords::parse(&host).map_err(|reason| Invalid::new(field("host"), reason))?;
    let dbname = required(raw.dbname, "dbname", "write the database's name")?;
    let user = required(raw.user, "user", "write the user to log in as")?;

    let port = match (words.port, raw.port) {
        (Some(_), Some(_)) => {
            return Err(Invalid::new(field("port"), "given twice: as port= in \"host\" and as \"port\"; keep one"));
        }
        (from_host, field) => from_host.or(field.map(|p| p.value.0)).unwrap_or(DEFAULT_PORT),
    };
    let sslmode = match (words.sslmode, raw.sslmode) {
        (Some(_), Some(_)) => {
            return Err(Invalid::new(
                field("sslmode"),
                "given twice: as sslmode= in \"host\" and as \"sslmode\"; keep one",
            ));
        }
        (from_host, field) => from_host.or(field.map(|m| m.value)).unwrap_or_default(),
    };
    let sslrootcert = match (words.sslrootcert.take(), raw.sslrootcert) {
        (Some(_), Some(_)) => {
            return Err(Invalid::new(
                field("sslrootcert"),
                "given twice: as sslrootcert= in \"host\" and as \"sslrootcert\"; keep one",
            ));
        }
        (Some(path), None) => Some((field("host"), path)),
        (None, from_field) => from_field.map(|path| (field("sslrootcert"), path.value)),
    };
    let sslrootcert = sslmode::root_cert(sslmode, sslrootcert)?;

    let mut config = tokio_postgres::Config::new();
    config.host(&words.host).port(port).dbname(&dbname).user(&user).ssl_mode(sslmode.to_postgres());
    if let Some(password) = &password {
        config.password(password.expose());
    }
    // libpq reads connect_timeout=0 as "wait forever", which is also the default here.
    if let Some(seconds) = words.connect_timeout.filter(|s| *s > 0) {
        config.connect_timeout(Duration::from_secs(seconds));
    }
    if let Some(name) = &words.application_name {
        config.application_name(name);
    }
    if let Some(options) = &words.options {
        config.options(options);
    }
    Ok(PgTarget::new(config, sslmode, sslrootcert, password))
}

/// Dugong's way: one `url`, `postgres://…`, `postgresql://…` or `sqlite:PATH`.
fn from_url(
    field: &dyn Fn(&str) -> String,
    url: &str,
    raw: &RawDatabase,
    password: Option<Secret>,
) -> Result<Location, Invalid> {
    let both = [
        ("host", raw.host.is_some()),
        ("dbname", raw.dbname.is_some()),
        ("user", raw.user.is_some()),
        ("port", raw.port.is_some()),
    ];
    if let Some((name, _)) = both.iter().find(|(_, given)| *given) {
        return Err(Invalid::new(
            field(name),
            format!("\"{name}\" and \"url\" cannot be combined; give either a url or host, dbname and user"),
        ));
    }
    let url = url.trim();
    if let Some(rest) = url.strip_prefix("sqlite:") {
        if raw.pass.is_some() {
            return Err(Invalid::new(field("pass"), "a SQLite database has no password"));
        }
        if raw.sslmode.is_some() {
            return Err(Invalid::new(field("sslmode"), "sslmode applies to PostgreSQL only, not to SQLite"));
        }
        if raw.sslrootcert.is_some() {
            return Err(Invalid::new(field("sslrootcert"), "sslrootcert applies to PostgreSQL only, not to SQLite"));
        }
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() || path.contains('?') {
            return Err(Invalid::new(
                field("url"),
                "write a SQLite file as sqlite:PATH, e.g. sqlite:/var/lib/dugong/site0.db",
            ));
        }
        return Ok(Location::Sqlite(PathBuf::from(path)));
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        // The URL itself is not repeated: it may hold a password.
        return Err(Invalid::new(field("url"), "must start with postgres://, postgresql:// or sqlite:"));
    }
    let (url, in_url) = sslmode::take_from_url(url).map_err(|reason| Invalid::new(field("url"), reason))?;
    let mut config: tokio_postgres::Config = url.parse().map_err(|err: tokio_postgres::Error| {
        // The cause names the option or character at fault, never a value.
        let cause = std::error::Error::source(&err).map(|cause| format!(": {cause}")).unwrap_or_default();
        Invalid::new(field("url"), format!("not a valid PostgreSQL URL: {err}{cause}"))
    })?;
    if config.get_user().is_none() {
        return Err(Invalid::new(field("url"), "names no user; write postgres://USER@HOST:PORT/DBNAME"));
    }
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        return Err(Invalid::new(field("url"), "names no host; write postgres://USER@HOST:PORT/DBNAME"));
    }
    let password = match (password, config.get_password()) {
        (Some(_), Some(_)) => {
            return Err(Invalid::new(field("pass"), "the url already carries a password; keep only one of them"));
        }
        (Some(password), None) => {
            config.password(password.expose());
            Some(password)
        }
        (None, Some(bytes)) => Some(Secret::new(String::from_utf8_lossy(bytes))),
        (None, None) => None,
    };
    // The "sslmode" and "sslrootcert" fields win over ?sslmode= and ?sslrootcert= in the url.
    let sslmode = raw.sslmode.as_ref().map(|mode| mode.value).or(in_url.sslmode).unwrap_or_default();
    let sslrootcert = match (&raw.sslrootcert, in_url.sslrootcert) {
        (Some(path), _) => Some((field("sslrootcert"), path.value.clone())),
        (None, from_url) => from_url.map(|path| (field("url"), path)),
    };
    let sslrootcert = sslmode::root_cert(sslmode, sslrootcert)?;
    config.ssl_mode(sslmode.to_postgres());
    Ok(Location::Postgres(PgTarget::new(config, sslmode, sslrootcert, password)))
}
