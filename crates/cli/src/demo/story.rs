//! The story the demo tells, chapter by chapter, each measured: replication both ways, one record
//! edited on both sites at once, an HA client riding through the loss of site 0, and the sites
//! identical afterwards.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use dugong_client::api::{new_id, request, Token};
use dugong_client::{Client, ClientConfig, Idempotency};
use dugong_proto::v1 as pb;
use pb::apps_client::AppsClient;

use super::say::{ms, p50_max, Say};
use super::sites::{Site, Sites, CONSOLE_USER};

/// Writes per direction for the lag measurement.
const LAG_WRITES: usize = 20;
/// How long one write may take to show on the other site before the demo gives up.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(30);
/// The HA client's pace: one call this often.
const CALL_EVERY: Duration = Duration::from_millis(20);

/// The numbers the story measured, for the closing summary.
#[derive(Default)]
pub struct Summary {
    pub lag: [(Duration, Duration); 2],
    pub conflict: String,
    pub calls: usize,
    pub failed_calls: usize,
    pub failover: Option<Duration>,
    pub outage_writes: usize,
    pub restart: Duration,
    pub identical: bool,
}

pub async fn tell(sites: &mut Sites, say: &Say) -> anyhow::Result<Summary> {
    let token = sites.token();
    let mut summary = Summary::default();

    say.step("Two sites on this machine, each a dugong serve process with its own SQLite file");
    say.info(&format!("working directory {}", sites.dir().display()));
    for id in 0..2 {
        let took = sites.start_site(id).await?;
        let site = &sites.sites[id];
        say.ok(&format!(
            "site {id} up in {}: gRPC {}, console {}, metrics {}, database {}",
            ms(took),
            site.grpc,
            site.console(),
            site.metrics,
            site.db.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    say.info("+ dugong replicate --config bucardo.json   (sources [0, 1]: master-master)");
    sites.start_replicator()?;
    let first = Instant::now();
    sites.wait_replicating().await?;
    say.info(&format!("the sync is Good after {}: capture triggers installed on both files", ms(first.elapsed())));
    sites.create_console_user().await?;
    say.info(&format!(
        "console user \"{CONSOLE_USER}\" created on site 0 (dugong serve --create-admin); it replicates like any row"
    ));
    let id = write_app(&sites.sites[0], &token, "hello from site 0").await?;
    arrival(sites, 1, &token, &id, "hello from site 0").await?;
    say.ok(&format!("replicator running: its first change crossed to site 1 {} after it started", ms(first.elapsed())));

    for (from, to) in [(0, 1), (1, 0)] {
        say.step(&format!("Writes through site {from}, read back on site {to}"));
        let mut lags = Vec::with_capacity(LAG_WRITES);
        for n in 0..LAG_WRITES {
            let name = format!("written on site {from}, #{n}");
            let id = write_app(&sites.sites[from], &token, &name).await?;
            lags.push(arrival(sites, to, &token, &id, &name).await?);
        }
        let (p50, max) = p50_max(&lags);
        summary.lag[from] = (p50, max);
        say.ok(&format!(
            "{LAG_WRITES} apps written on site {from}, each on site {to} within {}: replication lag p50 {}, max {}",
            ms(max),
            ms(p50),
            ms(max)
        ));
    }

    let page = sites.console_login(1).await?;
    say.ok(&format!(
        "console user \"{CONSOLE_USER}\", made on site 0, logs in on site 1's console {} (sent on to {page})",
        sites.sites[1].console()
    ));

    say.step("The same record edited on both sites at once");
    summary.conflict = conflict(sites, &token, say).await?;

    say.step("An HA client session with both servers; site 0's server is killed under it");
    ha_story(sites, &token, say, &mut summary).await?;

    say.step("Are the sites identical?");
    say.info("+ dugong compare --config bucardo.json");
    let (identical, out, err) = sites.on_config("compare", &[]).await?;
    say.quote((out + &err).trim_end());
    summary.identical = identical;
    if identical {
        say.ok("compare: the sites are identical");
    } else {
        say.fail("compare: the sites differ");
    }
    say.info("+ dugong status --config bucardo.json");
    let (_, out, err) = sites.on_config("status", &[]).await?;
    say.quote((out + &err).trim_end());
    Ok(summary)
}

/// Creates an app on one site's server; its id.
async fn write_app(site: &Site, token: &Token, name: &str) -> anyhow::Result<String> {
    let id = new_id();
    let put =
        pb::PutAppRequest { id: id.clone(), name: name.into(), description: String::new(), expected_version: Some(0) };
    site.apps()
        .put_app(request(put, Some(token)))
        .await
        .with_context(|| format!("writing an app through site {}", site.id))?;
    Ok(id)
}

/// Waits until site `to` shows app `id` named `name`; how long that took.
async fn arrival(sites: &mut Sites, to: usize, token: &Token, id: &str, name: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if let Some(app) = sites.sites[to].get_app(token, id).await? {
            if app.name == name {
                return Ok(started.elapsed());
            }
        }
        if started.elapsed() > ARRIVAL_TIMEOUT {
            sites.check_replicator()?;
            bail!("site {to} did not show a change within {ARRIVAL_TIMEOUT:?}");
        }
        sites.check_replicator()?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// How long apart the two sites commit their edits: enough that the later commit is clearly
/// later (never a tie of the same millisecond).
const EDIT_GAP: Duration = Duration::from_millis(5);

/// Edits one app on both sites before either edit can cross: site 0 commits first, site 1 a few
/// milliseconds later; the replicator then finds the conflict and the later commit wins. The
/// outcome in words.
async fn conflict(sites: &mut Sites, token: &Token, say: &Say) -> anyhow::Result<String> {
    let id = write_app(&sites.sites[0], token, "pricing").await?;
    arrival(sites, 1, token, &id, "pricing").await?;
    let base = sites.sites[1].get_app(token, &id).await?.context("the app vanished")?;
    say.info(&format!("app \"pricing\" (version {}) is on both sites", base.version));
    let edit = |site: &Site, name: &str| {
        let put = pb::PutAppRequest {
            id: id.clone(),
            name: name.to_string(),
            description: String::new(),
            expected_version: Some(base.version),
        };
        let mut apps = site.apps();
        async move { apps.put_app(request(put, Some(token))).await.map(|r| r.into_inner()) }
    };
    // Both edits commit before either crosses: the replicator is held still for that moment, as a
    // slow link would hold it, and let go whatever happened.
    sites.pause_replicator().await?;
    say.info("the replicator is paused for a moment, as a slow link between the sites would hold it up");
    let first = edit(&sites.sites[0], "pricing (edited on site 0)").await;
    tokio::time::sleep(EDIT_GAP).await;
    let second = edit(&sites.sites[1], "pricing (edited on site 1, later)").await;
    sites.resume_replicator()?;
    let (first, second) = match (first, second) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => bail!("editing the app on both sites: {}", e.message()),
    };
    for (site, app) in [(0, &first), (1, &second)] {
        say.info(&format!(
            "site {site} saved \"{}\" as version {} at {}",
            app.name,
            app.version,
            stamp(app.updated_at.as_ref())
        ));
    }
    let outcome = settle(sites, token, say, &id, &base.name).await?;
    let now = sites.sites[0].get_app(token, &id).await?.context("the app vanished")?;
    if now.name != second.name {
        bail!("the earlier edit (site 0) won over the later one (site 1): {outcome}");
    }
    Ok(outcome)
}

/// Waits until both sites show the same edit of app `id`; then what the replicator logged.
async fn settle(sites: &mut Sites, token: &Token, say: &Say, id: &str, before: &str) -> anyhow::Result<String> {
    let started = Instant::now();
    let settled = loop {
        let (x, y) = (sites.sites[0].get_app(token, id).await?, sites.sites[1].get_app(token, id).await?);
        if let (Some(x), Some(y)) = (x, y) {
            if x.name == y.name && x.version == y.version && x.name != before {
                break x;
            }
        }
        if started.elapsed() > ARRIVAL_TIMEOUT {
            sites.check_replicator()?;
            bail!("the two sites did not settle on one version of the app within {ARRIVAL_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let took = started.elapsed();
    say.ok(&format!("both sites settled on \"{}\" within {}: the later commit won", settled.name, ms(took)));
    let (logged, conflict_id) = match last_conflict(&sites.sites[0].db, id) {
        Ok(Some(c)) => c,
        Ok(None) => bail!("the conflict was resolved but not recorded in site 0's conflict log"),
        Err(e) => bail!("cannot read site 0's conflict log: {e}"),
    };
    say.info(&format!("conflict log on site 0: {logged}"));
    say.info(&format!(
        "both versions, and a button that restores the losing one: {}conflicts/{conflict_id} (either site's console)",
        sites.sites[0].console()
    ));
    Ok(format!("settled on \"{}\" in {}; {logged}", settled.name, ms(took)))
}

/// The replicator's record of the last conflict on app `id`, in words (who won, both change
/// times, and the rule that decided), and its id.
fn last_conflict(db: &std::path::Path, id: &str) -> rusqlite::Result<Option<(String, String)>> {
    use rusqlite::{OpenFlags, OptionalExtension};
    let conn = rusqlite::Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let key = serde_json::json!([id]).to_string();
    let row = conn
        .query_row(
            "SELECT winner, loser, winner_changed, loser_changed, reason, coalesce(conflict_id, '')
             FROM dugong_conflict_log WHERE table_name = 'apps' AND key = ?1 ORDER BY id DESC LIMIT 1",
            [&key],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            },
        )
        .optional()?;
    Ok(row.map(|(winner, loser, won_at, lost_at, reason, conflict_id)| {
        let site = |db: &str| db.strip_prefix("db").map(|n| format!("site {n}")).unwrap_or_else(|| db.to_string());
        let rule = match (won_at, lost_at) {
            (Some(w), Some(l)) if w > l => format!(
                "its change at {} came {} after the other's at {}",
                micros_time(w),
                ms(Duration::from_micros((w - l) as u64)),
                micros_time(l)
            ),
            (Some(w), Some(l)) if w == l => "same change time: the tie goes to the first database".into(),
            _ => "by the sync's conflict strategy".into(),
        };
        (format!("{} won over {} ({reason}; {rule})", site(&winner), site(&loser)), conflict_id)
    }))
}

/// A time for people: `2024-05-01 12:00:00.123 UTC`.
fn readable(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string().replace('T', " ").replace('Z', " UTC")
}

/// Microseconds since the epoch, for people.
fn micros_time(us: i64) -> String {
    readable(std::time::UNIX_EPOCH + Duration::from_micros(us.max(0) as u64))
}

fn stamp(t: Option<&prost_types::Timestamp>) -> String {
    match t {
        Some(t) if t.seconds >= 0 => {
            readable(std::time::UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos.clamp(0, 999_999_999) as u32))
        }
        _ => "?".into(),
    }
}

/// One call of the HA client's steady work, as it went.
struct Call {
    at: Instant,
    took: Duration,
    server: Option<SocketAddr>,
    /// The app it created, or why it failed.
    result: Result<String, String>,
}

/// The HA client making a call every [`CALL_EVERY`] while site 0's server is killed and
/// restarted; then the writes made meanwhile, read on site 0.
async fn ha_story(sites: &mut Sites, token: &Token, say: &Say, summary: &mut Summary) -> anyhow::Result<()> {
    let addrs = [sites.sites[0].grpc, sites.sites[1].grpc];
    let config = ClientConfig::servers(addrs.iter().map(|a| a.to_string()))?
        .with_connect_timeout(Duration::from_millis(500))
        .with_request_timeout(Duration::from_secs(2))
        .with_reconnect_delay(Duration::from_secs(2));
    let client = Client::new(config).await?;
    say.info(&format!("client configured with both servers: {} and {}", addrs[0], addrs[1]));
    // Each session draws its first server at random; take one that drew site 0, the one to lose.
    let mut session = client.new_session();
    for n in 0..64 {
        // App names are unique: one per try.
        create(&session, token, &format!("warm-up {n}")).await.map_err(|e| anyhow::anyhow!(e))?;
        if session.current_server() == Some(addrs[0]) {
            break;
        }
        session = client.new_session();
    }
    if session.current_server() != Some(addrs[0]) {
        bail!("no client session drew site 0 in 64 tries");
    }
    say.ok(&format!("the session is on site 0 ({})", addrs[0]));

    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(steady_calls(session, token.clone(), calls.clone(), stop.clone()));
    wait_calls(&calls, 25).await?;
    say.info(&format!("calls every {} through the session, all answered by site 0", ms(CALL_EVERY)));

    let killed_at = Instant::now();
    sites.kill_site(0).await?;
    say.info("site 0's server killed with SIGKILL");
    let seen = lock(&calls).len();
    wait_calls(&calls, seen + 50).await?;
    let (failover, failed) = {
        let calls = lock(&calls);
        let after: Vec<&Call> = calls.iter().filter(|c| c.at + c.took > killed_at).collect();
        let first_on_1 = after.iter().find(|c| c.result.is_ok() && c.server == Some(addrs[1]));
        (first_on_1.map(|c| c.at + c.took - killed_at), calls.iter().filter(|c| c.result.is_err()).count())
    };
    match failover {
        Some(t) => {
            say.ok(&format!("the client carried on at site 1: first answer from site 1 {} after the kill", ms(t)))
        }
        None => say.fail("no call was answered by site 1 after the kill"),
    }
    summary.failover = failover;

    let down_calls = lock(&calls).len();
    let restart = sites.start_site(0).await?;
    summary.restart = restart;
    let outage: Vec<String> = {
        let calls = lock(&calls);
        calls.iter().filter(|c| c.at >= killed_at).filter_map(|c| c.result.clone().ok()).collect()
    };
    say.info(&format!(
        "site 0's server restarted in {} ({} apps created through site 1 meanwhile)",
        ms(restart),
        outage.len()
    ));
    let seen = lock(&calls).len();
    wait_calls(&calls, seen.max(down_calls) + 10).await?;
    stop.cancel();
    worker.await.context("the client's call loop")?;

    let started = Instant::now();
    for id in &outage {
        loop {
            if sites.sites[0].get_app(token, id).await?.is_some() {
                break;
            }
            if started.elapsed() > ARRIVAL_TIMEOUT {
                bail!("a write made during the outage did not reach site 0 within {ARRIVAL_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    summary.outage_writes = outage.len();
    say.ok(&format!(
        "all {} writes made while site 0 was down are on site 0 (checked one by one {} after it came back)",
        outage.len(),
        ms(started.elapsed())
    ));

    let calls = lock(&calls);
    summary.calls = calls.len();
    summary.failed_calls = failed;
    let slowest = calls.iter().map(|c| c.took).max().unwrap_or_default();
    if failed == 0 {
        say.ok(&format!("{} calls, none failed; the slowest took {}", calls.len(), ms(slowest)));
    } else {
        for call in calls.iter().filter(|c| c.result.is_err()) {
            say.fail(&format!("a call failed: {}", call.result.as_ref().err().map(String::as_str).unwrap_or("")));
        }
        say.fail(&format!("{} calls, {failed} failed", calls.len()));
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits until at least `n` calls have been made (the loop runs until cancelled); fails if they
/// are not made within [`ARRIVAL_TIMEOUT`] (the call loop stalled).
async fn wait_calls(calls: &Mutex<Vec<Call>>, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    while lock(calls).len() < n {
        if started.elapsed() > ARRIVAL_TIMEOUT {
            bail!("the client made {} calls in {ARRIVAL_TIMEOUT:?}, not {n}", lock(calls).len());
        }
        tokio::time::sleep(CALL_EVERY / 2).await;
    }
    Ok(())
}

async fn steady_calls(
    session: Client,
    token: Token,
    calls: Arc<Mutex<Vec<Call>>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(CALL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0;
    while !stop.is_cancelled() {
        tick.tick().await;
        n += 1;
        let at = Instant::now();
        let result = create(&session, &token, &format!("order {n}")).await;
        lock(&calls).push(Call { at, took: at.elapsed(), server: session.current_server(), result });
    }
}

/// Creates an app through the HA client: a create with expected version 0, so a retry on the
/// other server after an unknown outcome cannot make it twice.
async fn create(session: &Client, token: &Token, name: &str) -> Result<String, String> {
    let put =
        pb::PutAppRequest { id: new_id(), name: name.into(), description: String::new(), expected_version: Some(0) };
    let reply = session
        .call(Idempotency::Idempotent, |channel| {
            let put = put.clone();
            async move { AppsClient::new(channel).put_app(request(put, Some(token))).await }
        })
        .await;
    match reply {
        Ok(_) => Ok(put.id),
        // A retry of a create that had already landed finds it there: the write is done.
        Err(dugong_client::CallError::Status { status, .. }) if status.code() == tonic::Code::Aborted => Ok(put.id),
        Err(e) => Err(e.to_string()),
    }
}
