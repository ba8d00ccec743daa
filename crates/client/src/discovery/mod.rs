//! From configured names to server addresses, and keeping that current.
//!
//! - `lookup` — one DNS lookup through hickory (system resolver or `--dns`).
//! - `refresh` — the background task that asks again when the TTLs (clamped to
//!   `--dns-min-ttl`…`--dns-max-ttl`) run out, or sooner after a server failed.
//!
//! The rules live in [`Discovery::apply`], a pure function of the answers: a name that resolves
//! contributes weight 1, split over its addresses; a name DNS says does not exist is skipped with
//! one warning; a name whose lookup fails keeps its last good answer; if nothing at all is left,
//! the previous table stays (and at start that is a configuration error).

mod lookup;
mod refresh;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub(crate) use lookup::{Answer, Lookup};
pub(crate) use refresh::{literal, resolve_all, spawn_refresh};

use crate::config::HostPort;

/// One row of the server table: an address, the names on it, and its weight.
pub(crate) type Row = (SocketAddr, Vec<String>, f64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Condition {
    Resolves,
    Missing,
    Failing,
}

#[derive(Debug)]
struct Name {
    host: HostPort,
    /// How many times the configuration lists it: its weight.
    count: usize,
    last_good: Option<Vec<IpAddr>>,
    condition: Condition,
}

/// A new table of servers, and when to ask DNS again.
#[derive(Debug, PartialEq)]
pub(crate) struct Resolved {
    /// The servers, sorted by address.
    pub table: Vec<Row>,
    /// When to resolve again.
    pub refresh_in: Duration,
}

/// Each distinct configured name with its last good answer.
#[derive(Debug)]
pub(crate) struct Discovery {
    names: Vec<Name>,
    min_ttl: Duration,
    max_ttl: Duration,
}

impl Discovery {
    /// For the configured names (duplicates are weights), resolving within the TTL bounds.
    pub fn new(configured: Vec<HostPort>, min_ttl: Duration, max_ttl: Duration) -> Discovery {
        let mut names: Vec<Name> = Vec::new();
        for host in configured {
            match names.iter_mut().find(|n| n.host == host) {
                Some(n) => n.count += 1,
                None => names.push(Name { host, count: 1, last_good: None, condition: Condition::Resolves }),
            }
        }
        Discovery { names, min_ttl, max_ttl }
    }

    /// The distinct host names to look up, in order; [`Discovery::apply`] takes one answer each.
    pub fn hosts(&self) -> Vec<String> {
        self.names.iter().map(|n| n.host.host.clone()).collect()
    }

    /// True when every name is an IP literal: nothing to ask DNS, nothing to refresh.
    pub fn is_static(&self) -> bool {
        self.names.iter().all(|n| n.host.is_ip())
    }

    /// Takes one answer per name (in [`Discovery::hosts`] order) and returns the new table, or
    /// every name with its cause when no name has an address.
    pub fn apply(&mut self, answers: Vec<Answer>) -> Result<Resolved, Vec<(String, String)>> {
        let mut refresh_in = self.max_ttl;
        let mut causes = Vec::new();
        for (name, answer) in self.names.iter_mut().zip(answers) {
            let label = name.host.to_string();
            let condition = match answer {
                Answer::Found { ips, ttl } => {
                    refresh_in = refresh_in.min(ttl);
                    if name.condition != Condition::Resolves {
                        tracing::info!(name = %label, addresses = ?ips, "server name resolves again");
                    }
                    name.last_good = Some(ips);
                    Condition::Resolves
                }
                Answer::Missing(cause) => {
                    if name.condition != Condition::Missing {
                        tracing::warn!(name = %label, %cause, "server name does not resolve; skipped");
                    }
                    name.last_good = None;
                    causes.push((label, cause));
                    Condition::Missing
                }
                Answer::Failed(cause) => {
                    refresh_in = Duration::ZERO;
                    if name.condition != Condition::Failing {
                        match &name.last_good {
                            Some(ips) => tracing::warn!(
                                name = %label, error = %cause, addresses = ?ips,
                                "dns lookup failed; keeping the last good answer"
                            ),
                            None => {
                                tracing::warn!(name = %label, error = %cause, "server name does not resolve; skipped")
                            }
                        }
                    }
                    causes.push((label, cause));
                    Condition::Failing
                }
            };
            name.condition = condition;
        }
        let table = self.table();
        if table.is_empty() {
            return Err(causes);
        }
        Ok(Resolved { table, refresh_in: refresh_in.clamp(self.min_ttl, self.max_ttl) })
    }

    fn table(&self) -> Vec<Row> {
        let mut rows: BTreeMap<SocketAddr, (Vec<String>, f64)> = BTreeMap::new();
        for name in &self.names {
            let Some(ips) = name.last_good.as_ref().filter(|ips| !ips.is_empty()) else { continue };
            let share = name.count as f64 / ips.len() as f64;
            for ip in ips {
                let row = rows.entry(SocketAddr::new(*ip, name.host.port)).or_default();
                row.0.extend(std::iter::repeat_n(name.host.host.clone(), name.count));
                row.1 += share;
            }
        }
        rows.into_iter().map(|(addr, (names, weight))| (addr, names, weight)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;

    const MIN: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(300);

    fn found(ips: &[&str], ttl: u64) -> Answer {
        Answer::Found { ips: ips.iter().map(|s| s.parse().unwrap()).collect(), ttl: Duration::from_secs(ttl) }
    }

    fn discovery(n: usize) -> Discovery {
        Discovery::new(Target::url("grpc://ha.test:8001", Some(n)).unwrap().names(), MIN, MAX)
    }

    fn addr(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 8001)
    }

    #[test]
    fn names_on_one_address_add_up_to_its_weight() {
        let mut d = discovery(3);
        let r = d.apply(vec![found(&["10.0.0.1"], 60), found(&["10.0.0.1"], 30), found(&["10.0.0.2"], 60)]).unwrap();
        assert_eq!(
            r.table,
            vec![
                (addr("10.0.0.1"), vec!["0.ha.test".into(), "1.ha.test".into()], 2.0),
                (addr("10.0.0.2"), vec!["2.ha.test".into()], 1.0)
            ]
        );
        assert_eq!(r.refresh_in, Duration::from_secs(30));
    }

    #[test]
    fn a_missing_name_is_skipped_and_ttls_are_clamped() {
        let mut d = discovery(2);
        let r = d.apply(vec![found(&["10.0.0.1"], 0), Answer::Missing("no such name".into())]).unwrap();
        assert_eq!(r.table.len(), 1);
        assert_eq!(r.refresh_in, MIN);
        let r = d.apply(vec![found(&["10.0.0.1"], 86_400), found(&["10.0.0.3"], 86_400)]).unwrap();
        assert_eq!(r.table.len(), 2);
        assert_eq!(r.refresh_in, MAX);
    }

    #[test]
    fn a_failed_lookup_keeps_the_last_good_answer_and_retries_soon() {
        let mut d = discovery(2);
        d.apply(vec![found(&["10.0.0.1"], 60), found(&["10.0.0.2"], 60)]).unwrap();
        let r = d.apply(vec![Answer::Failed("timed out".into()), Answer::Failed("timed out".into())]).unwrap();
        assert_eq!(r.table.iter().map(|r| r.0).collect::<Vec<_>>(), vec![addr("10.0.0.1"), addr("10.0.0.2")]);
        assert_eq!(r.refresh_in, MIN);
    }

    #[test]
    fn nothing_resolving_lists_every_name_with_its_cause() {
        let mut d = discovery(2);
        let e = d.apply(vec![Answer::Missing("no such name".into()), Answer::Failed("timed out".into())]).unwrap_err();
        assert_eq!(
            e,
            vec![("0.ha.test:8001".into(), "no such name".into()), ("1.ha.test:8001".into(), "timed out".into())]
        );
    }

    #[test]
    fn a_name_with_two_addresses_splits_its_weight_and_duplicates_in_a_list_add() {
        let list = Target::list(["a.test:1", "a.test:1", "b.test:1"]).unwrap().names();
        let mut d = Discovery::new(list, MIN, MAX);
        assert_eq!(d.hosts(), vec!["a.test", "b.test"]);
        let r = d.apply(vec![found(&["10.0.0.1"], 60), found(&["10.0.0.2", "10.0.0.3"], 60)]).unwrap();
        let weights: Vec<f64> = r.table.iter().map(|r| r.2).collect();
        assert_eq!(weights, vec![2.0, 0.5, 0.5]);
    }
}
