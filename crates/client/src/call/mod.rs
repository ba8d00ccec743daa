//! The client and its calls: pick a server, connect (racing the next server when the first is
//! slow), send, and on failure decide whether the call may go to another server.
//!
//! - `link` — one connection per address, made by attempts that every interested call shares.
//! - `connect` — one attempt: the transport's connection and a health round trip.
//! - `outcome` — what a failed attempt means (answer, never sent, unknown).
//! - `error` — [`CallError`] and the per-server report.
//!
//! A [`Client`] is one session: its first call draws a server at random by weight and it stays
//! there while the server works. [`Client::new_session`] makes another session over the same
//! resolved servers, health and connections.

mod connect;
mod error;
mod link;
mod outcome;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use futures_util::stream::{FuturesUnordered, StreamExt};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::Notify;
use tokio::time::Instant;
use tonic::Status;

pub use error::{CallError, ServerReport, ServersReport};
use link::{AbortOnDrop, Attempt, Link, Linked, Reach};
pub(crate) use outcome::{classify, human, Verdict};

use crate::config::{ClientConfig, ConfigError};
use crate::discovery::{self, Discovery, Lookup, Row};
use crate::select::{Draw, Health, Mode, Pool, RetryBudget, ServerStatus};
use crate::transport::{ServerChannel, Transport};

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

struct State {
    pool: Pool,
    rng: StdRng,
    budget: RetryBudget,
    links: HashMap<SocketAddr, Link>,
    next_id: u64,
}

/// What every session of one client shares.
pub(crate) struct Shared {
    config: ClientConfig,
    transport: Arc<Transport>,
    state: Mutex<State>,
    /// Wakes the DNS refresh after a server failed.
    kick: Arc<Notify>,
    /// Itself, for the connection attempts to report back to.
    me: Weak<Shared>,
    _refresh: Option<AbortOnDrop>,
}

impl Shared {
    /// A new server table from DNS: health is kept for addresses that stay, connections (and
    /// attempts) to addresses that went are dropped.
    fn install(&self, table: Vec<Row>) {
        let mut state = lock(&self.state);
        let before: Vec<SocketAddr> = state.pool.statuses().iter().map(|s| s.addr).collect();
        state.pool.update(table);
        let after: Vec<SocketAddr> = state.pool.statuses().iter().map(|s| s.addr).collect();
        state.links.retain(|addr, _| after.contains(addr));
        if before != after {
            tracing::info!(servers = ?after, "server addresses changed in DNS");
        }
    }

    /// The link to `addr`: the connection, the attempt in flight, or a new attempt.
    fn reach(&self, state: &mut State, addr: SocketAddr, mode: Mode) -> Reach {
        if let Some(link) = state.links.get(&addr) {
            return link.reach();
        }
        let id = state.next_id;
        state.next_id += 1;
        let name = state.pool.names(addr).into_iter().next();
        let (transport, me) = (self.transport.clone(), self.me.clone());
        let (timeout, health_check) = (self.config.connect_timeout, self.config.health_check);
        let (link, attempt) = link::spawn(id, async move {
            let result = connect::connect(&transport, addr, name.as_deref(), timeout, health_check).await;
            if let Some(shared) = me.upgrade() {
                shared.settle(addr, id, mode, &result);
            }
            result.map(|channel| Linked { channel, id })
        });
        state.links.insert(addr, link);
        Reach::Pending(attempt)
    }

    /// A connection attempt ended: keep the connection and re-admit the server, or quarantine it.
    fn settle(&self, addr: SocketAddr, id: u64, mode: Mode, result: &Result<ServerChannel, String>) {
        let mut state = lock(&self.state);
        let state = &mut *state;
        let current = state.links.get(&addr).is_some_and(|link| link.is(id));
        match result {
            Ok(channel) => {
                if current {
                    state.links.insert(addr, Link::Ready(Linked { channel: channel.clone(), id }));
                }
                if state.pool.succeed(addr) {
                    match mode {
                        Mode::FailOpen { .. } => {
                            tracing::warn!(server = %addr, "server answered while failing open; re-admitted at once")
                        }
                        _ => tracing::info!(server = %addr, "server re-admitted after its reconnect delay"),
                    }
                }
            }
            Err(cause) => {
                if current {
                    state.links.remove(&addr);
                }
                self.quarantine(state, addr, cause);
            }
        }
    }

    fn quarantine(&self, state: &mut State, addr: SocketAddr, cause: &str) {
        let delay = self.config.reconnect_delay;
        if let Some(hold) = state.pool.fail(addr, cause, delay, Instant::now(), &mut state.rng) {
            tracing::warn!(server = %addr, error = %cause, "server failed; left out for {}", human(hold));
        }
        self.kick.notify_one();
    }
}

/// An HA client session. Cheap to clone (clones share the session); see the module docs.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    /// The server this session is on, and which connection to it.
    current: Arc<Mutex<Option<(SocketAddr, u64)>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going with it.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where the connect phase of a call ended without a connection.
enum Stop {
    NoneLeft,
    NoBudget,
    Deadline,
}

enum Pick {
    Server(SocketAddr, Reach),
    NoneLeft,
    NoBudget,
}

impl Client {
    /// Validates `config` and resolves every server name. Fails when the configuration is bad,
    /// no name resolves, or the token would go in cleartext beyond loopback; names that do not
    /// resolve are skipped with a warning. No connection is opened before the first call.
    pub async fn new(config: ClientConfig) -> Result<Client, ConfigError> {
        config.validate()?;
        let transport = Arc::new(Transport::new(&config)?);
        let mut discovery = Discovery::new(config.target.names(), config.dns_min_ttl, config.dns_max_ttl);
        let lookup = if discovery.is_static() { None } else { Some(Lookup::new(config.dns, config.connect_timeout)?) };
        let answers = match &lookup {
            Some(lookup) => discovery::resolve_all(lookup, &discovery.hosts()).await,
            None => discovery.hosts().iter().map(|h| discovery::literal(h)).collect(),
        };
        let resolved = discovery.apply(answers).map_err(ConfigError::NothingResolves)?;
        for (addr, names, _) in &resolved.table {
            transport.guard(*addr, names.first().map(String::as_str).unwrap_or_default())?;
        }
        let now = Instant::now();
        let mut pool = Pool::default();
        pool.update(resolved.table);
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let budget = RetryBudget::new(config.retry_ratio, config.min_retries_per_sec, now);
        let state = Mutex::new(State { pool, rng, budget, links: HashMap::new(), next_id: 0 });
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
                let task = discovery::spawn_refresh(
                    discovery,
                    lookup,
                    resolved.refresh_in,
                    config.dns_min_ttl,
                    kick.clone(),
                    publish,
                );
                AbortOnDrop(task.abort_handle())
            });
            Shared { config, transport, state, kick, me: weak.clone(), _refresh: refresh }
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
        lock(&self.current).map(|(addr, _)| addr)
    }

    /// Every known server with its names, weight and health.
    pub fn servers(&self) -> Vec<ServerStatus> {
        lock(&self.shared.state).pool.statuses()
    }

    /// Runs `f` with a channel to this session's server, failing over as [`Idempotency`] allows,
    /// within the configured deadline. `f` may be called several times (once per attempt). A
    /// call that surely never reached a server's application goes to another server whatever its
    /// idempotency; one whose outcome is unknown only when it is idempotent.
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
        F: FnMut(ServerChannel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let config = &self.shared.config;
        let started = Instant::now();
        let deadline = started + config.deadline;
        let mut tried = HashSet::new();
        let mut failures: Vec<(SocketAddr, String)> = Vec::new();
        loop {
            let (addr, linked) = match self.connect(&mut tried, &mut failures, deadline).await {
                Ok(found) => found,
                Err(Stop::NoneLeft) => {
                    return Err(CallError::AllServersDown {
                        report: self.report(&failures),
                        elapsed: started.elapsed(),
                    })
                }
                Err(Stop::NoBudget) => return Err(CallError::RetryBudgetExhausted { report: self.report(&failures) }),
                Err(Stop::Deadline) => {
                    return Err(CallError::DeadlineExceeded {
                        deadline: config.deadline,
                        report: self.report(&failures),
                    })
                }
            };
            let attempt_end = deadline.min(Instant::now() + config.request_timeout);
            let verdict = match tokio::time::timeout_at(attempt_end, f(linked.channel.clone())).await {
                Ok(Ok(value)) => {
                    self.succeed(addr, linked.id);
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
                    self.succeed(addr, linked.id);
                    return Err(CallError::Status { server: addr, status });
                }
                Verdict::NotSent(cause) => {
                    tracing::info!(server = %addr, error = %cause, "call never reached the server; sending it elsewhere");
                    self.fail(addr, linked.id, &cause);
                    failures.push((addr, cause));
                }
                Verdict::Unknown(cause) => {
                    self.fail(addr, linked.id, &cause);
                    if idempotency == Idempotency::NotIdempotent {
                        return Err(CallError::OutcomeUnknown { server: addr, cause });
                    }
                    failures.push((addr, cause));
                }
            }
        }
    }

    /// A connection for the next attempt of a call. The session's server while it is live, else
    /// a draw by weight among the servers this call has not tried (failing open when every one
    /// is left out). When the server drawn has not connected within the connect stagger, the
    /// next is drawn and tried alongside it (Happy Eyeballs); the first to connect is used, and
    /// one that fails makes room for the next at once.
    async fn connect(
        &self,
        tried: &mut HashSet<SocketAddr>,
        failures: &mut Vec<(SocketAddr, String)>,
        deadline: Instant,
    ) -> Result<(SocketAddr, Linked), Stop> {
        let stagger = self.shared.config.connect_stagger;
        let mut racing = FuturesUnordered::new();
        let mut next_draw = Some(Instant::now());
        loop {
            if next_draw.is_some_and(|at| Instant::now() >= at) {
                match self.pick(tried, !failures.is_empty()) {
                    Pick::Server(addr, reach) => {
                        tried.insert(addr);
                        match reach {
                            Reach::Ready(linked) => return Ok((addr, linked)),
                            Reach::Pending(attempt) => racing.push(waiting(addr, attempt)),
                        }
                        next_draw = Some(Instant::now() + stagger);
                    }
                    Pick::NoneLeft | Pick::NoBudget if !racing.is_empty() => next_draw = None,
                    Pick::NoneLeft => return Err(Stop::NoneLeft),
                    Pick::NoBudget => return Err(Stop::NoBudget),
                }
            }
            let wake = next_draw.unwrap_or(deadline).min(deadline);
            tokio::select! {
                Some((addr, outcome)) = racing.next() => match outcome {
                    Ok(linked) => return Ok((addr, linked)),
                    Err(cause) => {
                        failures.push((addr, cause));
                        next_draw = Some(Instant::now());
                    }
                },
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= deadline {
                        return Err(Stop::Deadline);
                    }
                }
            }
        }
    }

    /// The session's server while it is live, else a draw; a retry (after a failure) needs a
    /// token from the budget.
    fn pick(&self, tried: &HashSet<SocketAddr>, retry: bool) -> Pick {
        let now = Instant::now();
        let config = &self.shared.config;
        let mut state = lock(&self.shared.state);
        let state = &mut *state;
        if retry && !state.budget.withdraw(now) {
            return Pick::NoBudget;
        }
        let current = lock(&self.current).map(|(addr, _)| addr);
        let draw = match current {
            Some(addr) if !tried.contains(&addr) && state.pool.is_live(addr) => Some(Draw { addr, mode: Mode::Live }),
            _ => state.pool.draw(&mut state.rng, now, tried),
        };
        let draw = match draw {
            Some(draw) => draw,
            None if config.fail_open => {
                match state.pool.draw_fail_open(&mut state.rng, now, tried, config.fail_open_interval) {
                    Some(draw) => {
                        if let Mode::FailOpen { since, claimed: true } = draw.mode {
                            tracing::warn!(
                                server = %link::label(draw.addr, &state.pool.names(draw.addr)),
                                failed_ago = %human(now.saturating_duration_since(since)),
                                "every server is left out after failing: failing open onto the one that failed longest ago"
                            );
                        }
                        draw
                    }
                    None => return Pick::NoneLeft,
                }
            }
            None => return Pick::NoneLeft,
        };
        let reach = self.shared.reach(state, draw.addr, draw.mode);
        Pick::Server(draw.addr, reach)
    }

    fn succeed(&self, addr: SocketAddr, id: u64) {
        let mut state = lock(&self.shared.state);
        state.budget.deposit(Instant::now());
        state.pool.succeed(addr);
        *lock(&self.current) = Some((addr, id));
    }

    /// The connection `id` to `addr` failed a call: drop it, quarantine the server and ask DNS
    /// again (a moved server is found). A failure of an older connection than the one the client
    /// has now says nothing about the new one.
    fn fail(&self, addr: SocketAddr, id: u64, cause: &str) {
        {
            let mut current = lock(&self.current);
            if current.is_some_and(|(a, _)| a == addr) {
                *current = None;
            }
        }
        let mut state = lock(&self.shared.state);
        let state = &mut *state;
        match state.links.get(&addr) {
            Some(link) if link.is(id) => {
                state.links.remove(&addr);
            }
            Some(_) => {
                tracing::debug!(server = %addr, error = %cause, "an older connection failed; the newer one stays");
                return;
            }
            None => {}
        }
        self.shared.quarantine(state, addr, cause);
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
                        Health::Quarantined { until, cause, .. } => {
                            let left = until.saturating_duration_since(now);
                            format!("failed earlier ({cause}); left out for another {}", human(left))
                        }
                        Health::Probing { cause, .. } => format!("failed earlier ({cause}); being retried"),
                        Health::Live => "not tried".to_string(),
                    });
                    ServerReport { addr: s.addr, names: s.names, cause }
                })
                .collect(),
        )
    }

    /// The server this session is on and which connection to it, for [`Client::report_failure`].
    pub(crate) fn current_link(&self) -> Option<(SocketAddr, u64)> {
        *lock(&self.current)
    }

    /// Marks connection `id` to `addr` failed from outside a call (a broken watch stream).
    pub(crate) fn report_failure(&self, (addr, id): (SocketAddr, u64), cause: &str) {
        self.fail(addr, id, cause);
    }
}

/// Waits for an attempt on behalf of one call.
async fn waiting(addr: SocketAddr, attempt: Attempt) -> (SocketAddr, Result<Linked, String>) {
    (addr, attempt.await)
}
