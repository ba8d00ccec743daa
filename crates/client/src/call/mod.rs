//! The client and its calls: pick a server, connect, send, and on failure decide whether the
//! call may go to another server.
//!
//! - `connect` — a tonic channel per address with timeouts, keepalive and a health round trip.
//! - `outcome` — what a failed attempt means (answer, never sent, unknown).
//! - `error` — [`CallError`] and the per-server report.
//!
//! A [`Client`] is one session: its first call draws a server at random by weight and it stays
//! there while the server works. [`Client::new_session`] makes another session over the same
//! resolved servers, health and connections.

mod connect;
mod error;
mod outcome;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::Status;

pub use error::{CallError, ServerReport, ServersReport};
pub(crate) use outcome::{classify, human, Verdict};

use crate::config::{ClientConfig, ConfigError};
use crate::discovery::{self, Discovery, Lookup, Row};
use crate::select::{Draw, Health, Pool, RetryBudget, ServerStatus};

/// Whether a call may run twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Running it twice is harmless (reads, puts of a whole value): retried on another server
    /// whenever its server fails.
    Idempotent,
    /// Running it twice is not harmless (appends, counters): retried only when it surely never
    /// reached a server; otherwise the caller gets [`CallError::OutcomeUnknown`].
    NotIdempotent,
}

/// Aborts the background task it holds when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A connection slot per address; its async lock makes concurrent calls wait for one connect
/// instead of each opening its own.
type Slot = Arc<tokio::sync::Mutex<Option<Channel>>>;

struct State {
    pool: Pool,
    rng: StdRng,
    budget: RetryBudget,
    channels: HashMap<SocketAddr, Slot>,
}

/// What every session of one client shares.
pub(crate) struct Shared {
    config: ClientConfig,
    state: Mutex<State>,
    /// Wakes the DNS refresh after a server failed.
    kick: Arc<Notify>,
    _refresh: Option<AbortOnDrop>,
}

impl Shared {
    /// A new server table from DNS: health is kept for addresses that stay, connections to
    /// addresses that went are dropped.
    fn install(&self, table: Vec<Row>) {
        let mut state = lock(&self.state);
        let before: Vec<SocketAddr> = state.pool.statuses().iter().map(|s| s.addr).collect();
        state.pool.update(table);
        let after: Vec<SocketAddr> = state.pool.statuses().iter().map(|s| s.addr).collect();
        state.channels.retain(|addr, _| after.contains(addr));
        if before != after {
            tracing::info!(servers = ?after, "server addresses changed in DNS");
        }
    }
}

/// An HA client session. Cheap to clone (clones share the session); see the module docs.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    current: Arc<Mutex<Option<SocketAddr>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going with it.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Client {
    /// Validates `config` and resolves every server name. Fails when the configuration is bad or
    /// no name resolves; names that do not resolve are skipped with a warning. No connection is
    /// opened before the first call.
    pub async fn new(config: ClientConfig) -> Result<Client, ConfigError> {
        config.validate()?;
        let mut discovery = Discovery::new(config.target.names(), config.dns_min_ttl, config.dns_max_ttl);
        let lookup = if discovery.is_static() { None } else { Some(Lookup::new(config.dns, config.connect_timeout)?) };
        let answers = match &lookup {
            Some(lookup) => discovery::resolve_all(lookup, &discovery.hosts()).await,
            None => discovery.hosts().iter().map(|h| discovery::literal(h)).collect(),
        };
        let resolved = discovery.apply(answers).map_err(ConfigError::NothingResolves)?;
        let now = Instant::now();
        let mut pool = Pool::default();
        pool.update(resolved.table);
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let budget = RetryBudget::new(config.retry_ratio, config.min_retries_per_sec, now);
        let state = Mutex::new(State { pool, rng, budget, channels: HashMap::new() });
        let kick = Arc::new(Notify::new());
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            let refresh = lookup.map(|lookup| {
                let weak = weak.clone();
                let publish = move |table: Vec<Row>| match weak.upgrade() {
                    Some(shared) => {
                        shared.install(table);
                        true
                    }
                    None => false,
                };
                AbortOnDrop(discovery::spawn_refresh(
                    discovery,
                    lookup,
                    resolved.refresh_in,
                    config.dns_min_ttl,
                    kick.clone(),
                    publish,
                ))
            });
            Shared { config, state, kick, _refresh: refresh }
        });
        Ok(Client { shared, current: Arc::new(Mutex::new(None)) })
    }

    /// A new session over the same servers, health and connections: its first call draws its
    /// own first choice.
    pub fn new_session(&self) -> Client {
        Client { shared: self.shared.clone(), current: Arc::new(Mutex::new(None)) }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.shared.config
    }

    /// The server this session is on (the last that answered it), if any.
    pub fn current_server(&self) -> Option<SocketAddr> {
        *lock(&self.current)
    }

    /// Every known server with its names, weight and health.
    pub fn servers(&self) -> Vec<ServerStatus> {
        lock(&self.shared.state).pool.statuses()
    }

    /// Runs `f` with a channel to this session's server, failing over as [`Idempotency`] allows,
    /// within the configured deadline. `f` may be called several times (once per attempt).
    ///
    /// ```no_run
    /// # async fn demo(client: dugong_client::Client) -> Result<(), dugong_client::CallError> {
    /// use dugong_client::Idempotency;
    /// use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    /// let reply = client
    ///     .call(Idempotency::Idempotent, |channel| async move {
    ///         HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn call<T, F, Fut>(&self, idempotency: Idempotency, mut f: F) -> Result<T, CallError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let config = &self.shared.config;
        let started = Instant::now();
        let deadline = started + config.deadline;
        let mut tried = HashSet::new();
        let mut failures: Vec<(SocketAddr, String)> = Vec::new();
        loop {
            if Instant::now() >= deadline {
                return Err(CallError::DeadlineExceeded { deadline: config.deadline, report: self.report(&failures) });
            }
            let draw = match self.pick(&tried, !failures.is_empty()) {
                Pick::Server(draw) => draw,
                Pick::NoneLeft => {
                    return Err(CallError::AllServersDown {
                        report: self.report(&failures),
                        elapsed: started.elapsed(),
                    })
                }
                Pick::NoBudget => return Err(CallError::RetryBudgetExhausted { report: self.report(&failures) }),
            };
            let addr = draw.addr;
            tried.insert(addr);
            let mut claim = Claim { shared: &self.shared, addr, armed: draw.readmission };
            let channel = match self.channel(draw, deadline).await {
                Ok(channel) => channel,
                Err(cause) => {
                    claim.disarm();
                    self.fail(addr, &cause);
                    failures.push((addr, cause));
                    continue;
                }
            };
            claim.disarm();
            let attempt_end = deadline.min(Instant::now() + config.request_timeout);
            let verdict = match tokio::time::timeout_at(attempt_end, f(channel)).await {
                Ok(Ok(value)) => {
                    self.succeed(addr);
                    return Ok(value);
                }
                Ok(Err(status)) => classify(status),
                Err(_) if attempt_end < deadline => Verdict::Unknown(format!(
                    "no answer within the request timeout of {}",
                    human(config.request_timeout)
                )),
                Err(_) => {
                    // The call's own deadline cut the attempt: the server is not to blame.
                    if idempotency == Idempotency::NotIdempotent {
                        let cause = "the call deadline passed while waiting for the answer".to_string();
                        return Err(CallError::OutcomeUnknown { server: addr, cause });
                    }
                    failures.push((addr, "no answer before the call deadline".into()));
                    return Err(CallError::DeadlineExceeded {
                        deadline: config.deadline,
                        report: self.report(&failures),
                    });
                }
            };
            match verdict {
                Verdict::Answer(status) => {
                    self.succeed(addr);
                    return Err(CallError::Status { server: addr, status });
                }
                Verdict::NotSent(cause) => {
                    self.fail(addr, &cause);
                    failures.push((addr, cause));
                }
                Verdict::Unknown(cause) => {
                    self.fail(addr, &cause);
                    if idempotency == Idempotency::NotIdempotent {
                        return Err(CallError::OutcomeUnknown { server: addr, cause });
                    }
                    failures.push((addr, cause));
                }
            }
        }
    }

    /// The session's server while it is live, else a draw by weight among the servers this call
    /// has not tried. A retry (not the first attempt) needs a token from the budget.
    fn pick(&self, tried: &HashSet<SocketAddr>, retry: bool) -> Pick {
        let now = Instant::now();
        let mut state = lock(&self.shared.state);
        let state = &mut *state;
        if retry && !state.budget.withdraw(now) {
            return Pick::NoBudget;
        }
        if let Some(current) = *lock(&self.current) {
            if !tried.contains(&current) && state.pool.is_live(current) {
                return Pick::Server(Draw { addr: current, readmission: false });
            }
        }
        match state.pool.draw(&mut state.rng, now, tried) {
            Some(draw) => Pick::Server(draw),
            None => Pick::NoneLeft,
        }
    }

    /// The channel to `draw.addr`, connecting when there is none. Concurrent calls wait for one
    /// connect; if it failed, they do not try again.
    async fn channel(&self, draw: Draw, deadline: Instant) -> Result<Channel, String> {
        let (slot, name) = {
            let mut state = lock(&self.shared.state);
            let slot = state.channels.entry(draw.addr).or_default().clone();
            (slot, state.pool.names(draw.addr).into_iter().next())
        };
        let Ok(mut channel) = tokio::time::timeout_at(deadline, slot.lock()).await else {
            return Err("still connecting when the call deadline passed".into());
        };
        if let Some(cached) = channel.as_ref() {
            let cached = cached.clone();
            if draw.readmission {
                self.readmitted(draw.addr);
            }
            return Ok(cached);
        }
        if let Some(cause) = self.unusable(draw) {
            return Err(cause);
        }
        let config = &self.shared.config;
        let connect_end = deadline.min(Instant::now() + config.connect_timeout);
        let fresh = connect::connect(draw.addr, name.as_deref(), config, connect_end).await?;
        *channel = Some(fresh.clone());
        self.readmitted(draw.addr);
        Ok(fresh)
    }

    /// A working connection to `addr`: it is live (again).
    fn readmitted(&self, addr: SocketAddr) {
        if lock(&self.shared.state).pool.succeed(addr) {
            tracing::info!(server = %addr, "server re-admitted after its reconnect delay");
        }
    }

    /// Why `draw.addr` may not be used any more (it failed while this call waited), if so.
    fn unusable(&self, draw: Draw) -> Option<String> {
        let state = lock(&self.shared.state);
        if state.pool.is_usable(draw.addr, draw.readmission) {
            return None;
        }
        let health = state.pool.statuses().into_iter().find(|s| s.addr == draw.addr).map(|s| s.health);
        Some(match health {
            Some(Health::Quarantined { cause, .. }) | Some(Health::Readmitting { cause }) => cause,
            _ => "no longer in DNS".to_string(),
        })
    }

    fn succeed(&self, addr: SocketAddr) {
        lock(&self.shared.state).budget.deposit(Instant::now());
        self.readmitted(addr);
        *lock(&self.current) = Some(addr);
    }

    /// Quarantines `addr`, drops its connection and asks DNS again (a moved server is found).
    fn fail(&self, addr: SocketAddr, cause: &str) {
        let mut state = lock(&self.shared.state);
        let state = &mut *state;
        state.channels.remove(&addr);
        let delay = self.shared.config.reconnect_delay;
        if let Some(hold) = state.pool.fail(addr, cause, delay, Instant::now(), &mut state.rng) {
            tracing::warn!(server = %addr, error = %cause, "server failed; left out for {}", human(hold));
        }
        let mut current = lock(&self.current);
        if *current == Some(addr) {
            *current = None;
        }
        self.shared.kick.notify_one();
    }

    /// Every server with the cause this call saw, or its state.
    fn report(&self, failures: &[(SocketAddr, String)]) -> ServersReport {
        let now = Instant::now();
        let servers = lock(&self.shared.state).pool.statuses();
        ServersReport(
            servers
                .into_iter()
                .map(|s| {
                    let seen = failures.iter().rev().find(|(addr, _)| *addr == s.addr).map(|(_, c)| c.clone());
                    let cause = seen.unwrap_or_else(|| match s.health {
                        Health::Quarantined { until, cause } => {
                            let left = until.saturating_duration_since(now);
                            format!("failed earlier ({cause}); left out for another {}", human(left))
                        }
                        Health::Readmitting { cause } => format!("failed earlier ({cause}); being retried"),
                        Health::Live => "not tried".to_string(),
                    });
                    ServerReport { addr: s.addr, names: s.names, cause }
                })
                .collect(),
        )
    }

    /// Marks `addr` failed from outside a call (a broken watch stream).
    pub(crate) fn report_failure(&self, addr: SocketAddr, cause: &str) {
        self.fail(addr, cause);
    }
}

enum Pick {
    Server(Draw),
    NoneLeft,
    NoBudget,
}

/// A claimed re-admission attempt; if the call is dropped before connecting, the claim is given
/// back so the server is not left out forever.
struct Claim<'a> {
    shared: &'a Shared,
    addr: SocketAddr,
    armed: bool,
}

impl Claim<'_> {
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.shared.state).pool.release(self.addr, Instant::now());
        }
    }
}
