//! `deploy/` and the operator conventions, checked with the tools that will
//! read them: systemd-analyze on the units, promtool on the alert rules and
//! the Prometheus configuration, the shells on the completion scripts, man
//! on the manual pages, and the dashboard's queries against the `/metrics`
//! of a live replicator and a live server. (The command lines themselves are
//! parsed by the binary's own parser in `src/deploy_files.rs`.)

mod promql;

use dugong_testkit::{free_port, wait_for, Cluster};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);
const TOKEN: &str = "deploy-test-token-0123456789";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn dugong() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dugong"));
    c.env("DUGONG_LOG", "info").env_remove("NO_COLOR").stdin(Stdio::null());
    c
}

/// Runs a tool, failing with how to get it when it is missing.
fn tool(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (scripts/test.sh installs it with apt)"))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A YAML file as JSON, read by Debian's python3 yaml module (installed
/// with docker-compose by scripts/test.sh).
fn yaml(path: &Path) -> Value {
    let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
    let script = "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)";
    let out = tool(python, &["-c", script, path.to_str().unwrap()]);
    assert!(out.status.success(), "{}: {}", path.display(), text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn units_pass_systemd_analyze_verify_with_their_manual_pages() {
    let dir = tempfile::tempdir().unwrap();
    // Documentation=man:dugong-serve(1) must resolve: the pages `dugong man` writes.
    let man1 = dir.path().join("man/man1");
    let out = dugong().args(["man", "--dir", man1.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mut units = Vec::new();
    for name in ["dugong-serve.service", "dugong-replicate.service"] {
        let unit = std::fs::read_to_string(repo().join("deploy/systemd").join(name)).unwrap();
        // The binary where the unit expects it is installed; here, the one just built.
        let unit = unit.replace("/usr/local/bin/dugong", env!("CARGO_BIN_EXE_dugong"));
        let path = dir.path().join(name);
        std::fs::write(&path, unit).unwrap();
        units.push(path.to_str().unwrap().to_string());
    }
    let mut args = vec!["verify"];
    args.extend(units.iter().map(String::as_str));
    let out = Command::new("systemd-analyze")
        .args(&args)
        .env("MANPATH", dir.path().join("man"))
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    // Unknown keys and similar mistakes are only warnings: none is allowed.
    assert!(out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(), "{}", text(&out));
}

#[test]
fn prometheus_rules_and_configuration_pass_promtool() {
    let dir = repo().join("deploy/prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("promtool (scripts/test.sh installs Debian's prometheus package)");
        assert!(out.status.success(), "promtool {args:?}: {}", text(&out));
    }
}

/// The anchors of a Markdown file's headings, as GitHub makes them.
fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|l| l.trim_start_matches('#').strip_prefix(' ').filter(|_| l.starts_with('#')))
        .map(|h| {
            h.trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn every_alert_explains_itself_links_its_runbook_and_is_tested_both_ways() {
    let root = repo();
    let rules = yaml(&root.join("deploy/prometheus/alerts.yml"));
    let tests = yaml(&root.join("deploy/prometheus/alerts.test.yml"));
    let runbook = std::fs::read_to_string(root.join("docs/operations.md")).unwrap();
    let runbook_anchors = anchors(&runbook);
    let documented = documented_metrics();
    let mut alerts = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().expect("alerting rules only").to_string();
            for key in ["summary", "description", "runbook_url"] {
                assert!(rule["annotations"][key].as_str().is_some_and(|s| !s.is_empty()), "{name}: no {key}");
            }
            assert!(
                ["warning", "critical"].contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
                "{name}: severity"
            );
            let url = rule["annotations"]["runbook_url"].as_str().unwrap();
            let anchor = url.strip_prefix("docs/operations.md#").unwrap_or_else(|| panic!("{name}: {url}"));
            assert!(runbook_anchors.contains(anchor), "{name}: docs/operations.md has no section #{anchor}");
            for metric in promql::metric_names(rule["expr"].as_str().unwrap()) {
                assert!(
                    metric == "up" || documented.contains(&metric),
                    "{name}: {metric} is not a metric docs/metrics.md lists"
                );
            }
            alerts.push(name);
        }
    }
    // Each alert firing in some test case, and explicitly not firing in another.
    let cases: Vec<&Value> =
        tests["tests"].as_array().unwrap().iter().flat_map(|t| t["alert_rule_test"].as_array().unwrap()).collect();
    for name in &alerts {
        let of = |firing: bool| {
            cases.iter().any(|c| {
                c["alertname"] == name.as_str() && c["exp_alerts"].as_array().is_some_and(|a| a.is_empty() != firing)
            })
        };
        assert!(of(true), "{name}: no test case where it fires");
        assert!(of(false), "{name}: no test case where it must not fire");
    }
}

/// Metric names in docs/metrics.md: the first column of its tables.
fn documented_metrics() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("dugong_") || n.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// Every `pub const NAME: &str = "metric";` of the metric modules.
fn metric_constants() -> BTreeSet<String> {
    let root = repo();
    let files =
        ["crates/replica/src/metrics.rs", "crates/server/src/metrics.rs", "crates/server/src/metrics/process.rs"];
    let mut names = BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(root.join(file)).unwrap();
        for line in source.lines() {
            let Some(rest) = line.trim().strip_prefix("pub const ") else { continue };
            if let Some(value) = rest.split_once(": &str = \"").map(|(_, v)| v.trim_end_matches("\";")) {
                names.insert(value.to_string());
            }
        }
    }
    assert!(names.len() > 30, "found the metric constants: {names:?}");
    names
}

#[test]
fn docs_metrics_md_lists_every_metric_and_only_those() {
    let constants = metric_constants();
    let documented = documented_metrics();
    let undocumented: Vec<_> = constants.difference(&documented).collect();
    assert!(undocumented.is_empty(), "docs/metrics.md does not list {undocumented:?}");
    let stale: Vec<_> = documented.difference(&constants).collect();
    assert!(stale.is_empty(), "docs/metrics.md lists metrics no code defines: {stale:?}");
}

#[test]
fn completions_are_accepted_by_the_shells() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, check) in
        [("bash", vec!["bash", "-n"]), ("zsh", vec!["zsh", "-n"]), ("fish", vec!["fish", "--no-execute"])]
    {
        let out = dugong().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        let config_flag = if shell == "fish" { "-l config" } else { "--config" };
        for word in ["replicate", "status", "serve", "probe", "completions", config_flag] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
        let path = dir.path().join(format!("dugong.{shell}"));
        std::fs::write(&path, &script).unwrap();
        let out = tool(check[0], &[check[1], path.to_str().unwrap()]);
        assert!(out.status.success() && out.stderr.is_empty(), "{shell} refuses the script: {}", text(&out));
    }
    let out = dugong().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("tcsh"), "{}", text(&out));
}

/// Text as man renders it for a pipe, without its overstrikes: bold is
/// `N\x08N`, so a backspace takes back the character before it.
fn plain(rendered: &[u8]) -> String {
    let mut out: Vec<char> = Vec::new();
    for c in String::from_utf8_lossy(rendered).chars() {
        if c == '\x08' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.into_iter().collect()
}

#[test]
fn man_pages_render_for_every_command() {
    let out = dugong().arg("man").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("dugong.1");
    std::fs::write(&page, &out.stdout).unwrap();
    let rendered = tool("man", &["--warnings", "-l", "-Tutf8", page.to_str().unwrap()]);
    let shown = plain(&rendered.stdout);
    assert!(rendered.status.success() && rendered.stderr.is_empty(), "{}", text(&rendered));
    for expected in ["NAME", "SYNOPSIS", "replicate", "status", "serve", "completions", "man"] {
        assert!(shown.contains(expected), "dugong(1) lacks {expected}:\n{shown}");
    }
    let pages = dir.path().join("man1");
    let out = dugong().args(["man", "--dir", pages.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for name in
        ["dugong", "dugong-replicate", "dugong-serve", "dugong-status", "dugong-conflicts-restore", "dugong-client"]
    {
        let path = pages.join(format!("{name}.1"));
        let rendered = tool("man", &["--warnings", "-l", "-Tutf8", path.to_str().unwrap()]);
        assert!(rendered.status.success() && rendered.stderr.is_empty(), "{name}: {}", text(&rendered));
        assert!(plain(&rendered.stdout).contains(name), "{name}.1 names itself");
    }
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = dugong().arg("--version").output().unwrap();
    let shown = String::from_utf8(out.stdout).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(shown.starts_with(&format!("dugong {version} (commit ")), "{shown}");
    let git = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(repo()).output();
    if let Some(git) = git.ok().filter(|g| g.status.success()) {
        let head = String::from_utf8(git.stdout).unwrap();
        assert_eq!(shown.trim(), format!("dugong {version} (commit {})", head.trim()), "built from HEAD");
    }
}

/// The bytes a command writes to a pseudo-terminal (util-linux `script`).
fn on_a_terminal(command: &str, no_color: bool) -> String {
    let mut c = Command::new("script");
    c.args(["-qec", command, "/dev/null"]).stdin(Stdio::null()).env_remove("NO_COLOR").env("TERM", "xterm");
    if no_color {
        c.env("NO_COLOR", "1");
    }
    let out = c.output().expect("script (util-linux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn no_color_turns_colors_off_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    // A replicator that logs at start, then fails on a database that is not there.
    let cfg = dir.path().join("bucardo.json");
    let port = free_port();
    let json = format!(
        r#"{{"databases": [{{"id": 0, "url": "postgres://x@127.0.0.1:{port}/x"}}, {{"id": 1, "url": "postgres://x@127.0.0.1:{port}/y"}}],
             "syncs": [{{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0}}]}}"#
    );
    std::fs::write(&cfg, json).unwrap();
    let command = format!(
        "{} --log info replicate --once --max-backoff 1s --config {}",
        env!("CARGO_BIN_EXE_dugong"),
        cfg.display()
    );
    let colored = on_a_terminal(&command, false);
    assert!(colored.contains("replicator starting") && colored.contains('\x1b'), "colors on a terminal: {colored:?}");
    let plain = on_a_terminal(&command, true);
    assert!(plain.contains("replicator starting") && !plain.contains('\x1b'), "NO_COLOR: {plain:?}");
    let help = on_a_terminal(&format!("{} --help", env!("CARGO_BIN_EXE_dugong")), true);
    assert!(help.contains("Usage") && !help.contains('\x1b'), "NO_COLOR help: {help:?}");
}

/// A page of metrics over plain HTTP.
async fn scrape(client: &reqwest::Client, port: u16) -> Option<String> {
    let r = client.get(format!("http://127.0.0.1:{port}/metrics")).send().await.ok()?;
    r.status().is_success().then_some(())?;
    r.text().await.ok()
}

/// Names of the series on a metrics page.
fn exported(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Every query of the dashboard.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("deploy/grafana/dugong.json")).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((title.clone(), target["expr"].as_str().expect("expr").to_string()));
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"]["query"].as_str() {
            let metric =
                q.strip_prefix("label_values(").and_then(|r| r.split(',').next()).expect("label_values(METRIC, label)");
            queries.push((format!("variable {}", var["name"]), metric.to_string()));
        }
    }
    assert!(queries.len() > 20, "{queries:?}");
    queries
}

#[tokio::test]
async fn every_dashboard_query_names_metrics_a_live_replicator_and_server_export() {
    let cluster = Cluster::shared();
    let dir = tempfile::tempdir().unwrap();
    // Two sites for the replicator, one database for the server.
    let mut sites = Vec::new();
    for i in 0..2 {
        let db = cluster.create_database(&format!("dash{i}")).await.unwrap();
        let client = cluster.connect(&db).await.unwrap();
        client.batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)").await.unwrap();
        sites.push((db, client));
    }
    let cfg = dir.path().join("bucardo.json");
    let db_json = |id: usize| {
        format!(
            r#"{{"id": {id}, "dbname": "{}", "host": "127.0.0.1 port={}", "user": "postgres", "pass": "env"}}"#,
            sites[id].0,
            cluster.port()
        )
    };
    let json = format!(
        r#"{{"databases": [{}, {}], "syncs": [{{"sources": [0, 1], "targets": [], "tables": "all", "onetimecopy": 0}}]}}"#,
        db_json(0),
        db_json(1)
    );
    std::fs::write(&cfg, json).unwrap();
    let replicate = |args: &[&str]| {
        let mut c = dugong();
        c.arg("replicate").arg("--config").arg(&cfg).args(args).env("BUCARDO_DB0", "").env("BUCARDO_DB1", "");
        c
    };
    // Capture installed, then a conflict (one key written on both sites), a
    // delete and plain inserts for the daemon's first run.
    let out = replicate(&["--once"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    sites[0].1.batch_execute("INSERT INTO items VALUES (1, 'a'), (2, 'a'), (3, 'a')").await.unwrap();
    let out = replicate(&["--once"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    sites[0]
        .1
        .batch_execute("UPDATE items SET v = 'site 0' WHERE id = 1; DELETE FROM items WHERE id = 2")
        .await
        .unwrap();
    sites[1]
        .1
        .batch_execute("UPDATE items SET v = 'site 1' WHERE id = 1; INSERT INTO items VALUES (4, 'b')")
        .await
        .unwrap();
    let replicator_port = free_port();
    let log = std::fs::File::create(dir.path().join("replicate.log")).unwrap();
    let _replicator =
        Running(replicate(&["--metrics", &format!("127.0.0.1:{replicator_port}")]).stderr(log).spawn().unwrap());

    let server_db = cluster.create_database("dashserve").await.unwrap();
    let (http, grpc, metrics) = (free_port(), free_port(), free_port());
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let _server = Running(
        dugong()
            .args(["serve", "--site", "0"])
            .env("DUGONG_DB", cluster.url(&server_db))
            .env("DUGONG_API_TOKENS", TOKEN)
            .env("DUGONG_HTTP", format!("127.0.0.1:{http}"))
            .env("DUGONG_GRPC", format!("127.0.0.1:{grpc}"))
            .env("DUGONG_METRICS", format!("127.0.0.1:{metrics}"))
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http}");
    wait_for("dugong serve ready", DEADLINE, || async {
        client.get(format!("{base}/readyz")).send().await.ok().filter(|r| r.status().is_success())
    })
    .await;
    // Calls of several routes and outcomes, and a watcher that gets a change.
    let watch = client.get(format!("{base}/api/v1/watch")).bearer_auth(TOKEN).send().await.unwrap();
    assert!(watch.status().is_success());
    client.get(format!("{base}/api/v1/settings/none")).bearer_auth(TOKEN).send().await.unwrap();
    let put = client
        .put(format!("{base}/api/v1/settings/theme"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"value": "dark"}));
    assert_eq!(put.send().await.unwrap().status(), 201);

    let queries = dashboard_queries();
    let needed: BTreeSet<String> = queries.iter().flat_map(|(_, q)| promql::metric_names(q)).collect();
    // Polled until everything shows (health metrics come with the first
    // count of what waits), or the deadline says what never did.
    let deadline = std::time::Instant::now() + DEADLINE;
    let (names, replicator, server) = loop {
        let replicator = scrape(&client, replicator_port).await.unwrap_or_default();
        let server = scrape(&client, metrics).await.unwrap_or_default();
        let mut names = exported(&replicator);
        names.extend(exported(&server));
        if needed.is_subset(&names) {
            break (names, replicator, server);
        }
        if std::time::Instant::now() > deadline {
            let missing: Vec<_> = needed.difference(&names).collect();
            panic!("never exported: {missing:?}\nreplicator:\n{replicator}\nserver:\n{server}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (panel, query) in &queries {
        for metric in promql::metric_names(query) {
            assert!(names.contains(&metric), "panel {panel:?}: {metric} is exported by neither process: {query}");
        }
    }
    // Both processes say what they are.
    let commit = String::from_utf8(dugong().arg("--version").output().unwrap().stdout).unwrap();
    let commit = commit.trim().trim_end_matches(')').rsplit(' ').next().unwrap().to_string();
    let build = format!("dugong_build_info{{version=\"{}\",commit=\"{commit}\"}} 1", env!("CARGO_PKG_VERSION"));
    assert!(replicator.contains(&build) && server.contains(&build), "{build} on both:\n{replicator}\n{server}");
    drop(watch);
}
