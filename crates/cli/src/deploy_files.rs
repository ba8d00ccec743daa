//! Every `dugong` command line shipped in `deploy/` — compose services and
//! their health checks, systemd units with their environment files, the
//! image's entrypoint — parsed by this binary's own argument parser, with the
//! `DUGONG_*` variables those files set turned into the flags they stand
//! for. A renamed flag or variable fails here, not on an operator's host.
//!
//! Compose files are read through `docker-compose config` (Debian's
//! `docker-compose`, which needs no Docker engine), so what is checked is
//! what compose itself makes of them; its YAML output is read with Python's
//! yaml module, which that package depends on.

use crate::Cli;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Variables `dugong` reads without a flag, or that a unit reads itself.
fn read_without_a_flag(name: &str) -> bool {
    let bucardo =
        name.strip_prefix("BUCARDO_DB").is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
    // DUGONG_READY_URL is the probe URL of the units' ExecStartPost.
    bucardo || ["DUGONG_API_TOKENS", "DUGONG_ADMIN_TOKENS", "DUGONG_READY_URL"].contains(&name)
}

/// One command line of a deployment file, with the environment it runs in.
#[derive(Debug, Clone)]
struct Invocation {
    /// Where it was found, for the failure message.
    origin: String,
    /// The arguments after the program.
    args: Vec<String>,
    env: BTreeMap<String, String>,
    /// The command the environment is written for: every `DUGONG_*`
    /// variable in it must be one its flags read. A health check or
    /// readiness probe shares that environment and reads only its own.
    main: bool,
}

impl Invocation {
    /// Parses the command line as `dugong` would, the environment's
    /// `DUGONG_*` variables given as the flags they set.
    fn check(&self) -> Result<(), String> {
        let fail = |why: String| format!("{}: dugong {}: {why}", self.origin, self.args.join(" "));
        let command = Cli::command();
        let sub = self.args.iter().find(|a| !a.starts_with('-')).and_then(|name| command.find_subcommand(name));
        let mut argv = vec!["dugong".to_string()];
        argv.extend(self.args.iter().cloned());
        for (name, value) in &self.env {
            if !(name.starts_with("DUGONG_") || name.starts_with("BUCARDO_")) || read_without_a_flag(name) {
                continue;
            }
            let args = sub.into_iter().flat_map(|s| s.get_arguments()).chain(command.get_arguments());
            let Some(arg) = args.into_iter().find(|a| a.get_env().is_some_and(|e| e == name.as_str())) else {
                if !self.main {
                    continue;
                }
                let of = sub.map_or(String::new(), |s| format!(" {}", s.get_name()));
                return Err(fail(format!("{name} is read by no flag of dugong{of}")));
            };
            let long = arg.get_long().ok_or_else(|| fail(format!("{name} sets an argument without a --flag")))?;
            if arg.get_action().takes_values() {
                argv.push(format!("--{long}={value}"));
            } else {
                match value.as_str() {
                    "true" | "1" | "yes" | "on" => argv.push(format!("--{long}")),
                    "false" | "0" | "no" | "off" | "" => {}
                    other => return Err(fail(format!("{name}={other}: --{long} takes true or false"))),
                }
            }
        }
        match Cli::try_parse_from(&argv) {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => Ok(()),
            Err(e) => Err(fail(format!("as {argv:?}: {e}"))),
        }
    }

    /// The value of `--flag` on the command line, or of the variable standing for it.
    fn value(&self, flag: &str, var: &str) -> Option<String> {
        let mut args = self.args.iter();
        while let Some(a) = args.next() {
            if a == flag {
                return args.next().cloned();
            }
            if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
                return Some(v.to_string());
            }
        }
        self.env.get(var).cloned()
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository's root")
}

/// Runs a tool the tests need, failing with how to get it when it is missing.
fn run(program: &str, args: &[&str], dir: &Path, input: Option<&str>) -> String {
    use std::io::Write;
    let mut command = Command::new(program);
    command.args(args).current_dir(dir).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    command.stdin(if input.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() });
    let mut child = command.spawn().unwrap_or_else(|e| {
        panic!("cannot run {program}: {e} (scripts/test.sh installs it: apt-get install docker-compose)")
    });
    if let Some(text) = input {
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("writing to the tool");
    }
    let out = child.wait_with_output().expect("tool output");
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Debian's python3, which has the yaml module docker-compose depends on.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// A compose file as `docker-compose config` resolves it, as JSON.
fn compose(file: &Path, env_file: Option<&Path>) -> Value {
    let file_arg = file.to_str().expect("UTF-8 path");
    let mut args = vec!["-f", file_arg];
    let env_arg;
    if let Some(env) = env_file {
        env_arg = env.to_str().expect("UTF-8 path").to_string();
        args.extend(["--env-file", env_arg.as_str()]);
    }
    args.push("config");
    let dir = file.parent().expect("a directory");
    // Variables a trial reads from the caller's environment.
    let resolved = {
        let mut command = Command::new("docker-compose");
        command.args(&args).current_dir(dir).env("DUGONG_API_TOKENS", "deploy-test-token-0123456789");
        let out = command.output().unwrap_or_else(|e| {
            panic!("cannot run docker-compose: {e} (scripts/test.sh installs it: apt-get install docker-compose)")
        });
        assert!(
            out.status.success(),
            "docker-compose config {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    };
    let json = run(
        python(),
        &["-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
        dir,
        Some(&resolved),
    );
    serde_json::from_str(&json).expect("compose config as JSON")
}

/// The `dugong` invocations of a resolved compose file: each service's
/// command and its health check, with the service's environment.
fn compose_invocations(config: &Value, origin: &str) -> Vec<(String, Invocation, Value)> {
    let mut found = Vec::new();
    let services = config["services"].as_object().expect("services");
    for (name, service) in services {
        if !service["image"].as_str().is_some_and(|i| i.starts_with("dugong")) {
            continue;
        }
        let env: BTreeMap<String, String> = service["environment"]
            .as_object()
            .map(|m| {
                m.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), String::from))).collect()
            })
            .unwrap_or_default();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().expect("a list").iter().map(|a| a.as_str().expect("a string").to_string()).collect()
        };
        let command = strings(&service["command"]);
        let origin_of = |what: &str| format!("{origin}: services.{name}.{what}");
        let main = Invocation { origin: origin_of("command"), args: command, env: env.clone(), main: true };
        found.push((name.clone(), main, service.clone()));
        if let Some(test) = service["healthcheck"]["test"].as_array() {
            let test = strings(&Value::Array(test.clone()));
            assert_eq!(
                test.first().map(String::as_str),
                Some("CMD"),
                "{}: exec form, no shell in the image",
                origin_of("healthcheck")
            );
            assert_eq!(test.get(1).map(String::as_str), Some("/usr/local/bin/dugong"), "{}", origin_of("healthcheck"));
            let inv = Invocation { origin: origin_of("healthcheck"), args: test[2..].to_vec(), env, main: false };
            found.push((name.clone(), inv, service.clone()));
        }
    }
    found
}

/// `KEY=VALUE` lines of an environment file (comments and blanks skipped).
fn env_file(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{}: not KEY=VALUE: {l}", path.display()));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// `${VAR}` replaced from `env`, as systemd does in Exec lines.
fn substitute(word: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or_else(|| format!("unclosed ${{ in {word}"))? + start;
        let name = &rest[start + 2..end];
        out.push_str(env.get(name).ok_or_else(|| format!("{name} is set by no environment file"))?);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `dugong` Exec lines of a systemd unit, with the environment of its
/// `EnvironmentFile=` (the example shipped beside it) and its credentials.
fn unit_invocations(unit: &Path) -> Vec<Invocation> {
    let text = std::fs::read_to_string(unit).expect("unit file");
    let name = unit.file_name().and_then(|n| n.to_str()).expect("unit name");
    let mut env = BTreeMap::new();
    env.insert("CREDENTIALS_DIRECTORY".to_string(), format!("/run/credentials/{name}"));
    for line in text.lines() {
        if let Some(file) = line.strip_prefix("EnvironmentFile=") {
            let base = Path::new(file.trim_start_matches('-')).file_name().expect("a file name");
            let example = unit.with_file_name(format!("{}.example", base.to_string_lossy()));
            env.extend(env_file(&example));
        }
    }
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let Some((key, value)) = line.split_once('=') else { continue };
        if !key.starts_with("Exec") {
            continue;
        }
        let origin = format!("{}:{}: {key}", unit.display(), n + 1);
        if key == "ExecReload" {
            // systemd's own variable, for the signal that reloads certificates.
            assert_eq!(value, "/bin/kill -HUP $MAINPID", "{origin}");
            continue;
        }
        let words: Vec<String> = value
            .split_whitespace()
            .map(|w| substitute(w, &env))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{origin}: {e}"));
        let program = words.first().map(|w| w.trim_start_matches(['-', '@', '+', '!'])).unwrap_or_default();
        assert_eq!(program, "/usr/local/bin/dugong", "{origin}: runs the installed binary");
        let main = key == "ExecStart";
        found.push(Invocation { origin, args: words[1..].to_vec(), env: env.clone(), main });
    }
    found
}

/// `bucardo.json` as `dugong replicate` would load it, with `"pass": "env"`
/// standing for a password the environment provides; returns the ids of the
/// databases that read their password from the environment.
fn load_replicator_config(path: &Path) -> Vec<u32> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let raw: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let from_env = raw["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .filter(|d| d["pass"] == "env")
        .map(|d| d["id"].as_u64().expect("id") as u32)
        .collect();
    // The environment is the process's, shared by every test: the
    // password itself stands in for it here, and the callers check the
    // variables are set where the file is used.
    let standalone = text.replace("\"pass\": \"env\"", "\"pass\": \"from-the-environment\"");
    dugong_config::Config::from_str(&standalone, path).unwrap_or_else(|e| panic!("{e}"));
    from_env
}

/// A replicator invocation's configuration loads, and its environment gives
/// every password the file leaves to it.
fn check_replicator(inv: &Invocation, host_path: &Path) {
    for id in load_replicator_config(host_path) {
        assert!(inv.env.contains_key(&format!("BUCARDO_DB{id}")), "{}: BUCARDO_DB{id} is not set", inv.origin);
    }
}

/// A server invocation's database URL is one `dugong serve` accepts.
fn check_server(inv: &Invocation) {
    let db = inv.value("--db", "DUGONG_DB").unwrap_or_else(|| panic!("{}: no --db / DUGONG_DB", inv.origin));
    db.parse::<dugong_store::DbUrl>().unwrap_or_else(|e| panic!("{}: DUGONG_DB: {e}", inv.origin));
}

#[test]
fn the_checker_refuses_what_the_binary_would() {
    let inv = |args: &[&str], env: &[(&str, &str)]| Invocation {
        origin: "test".into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        main: true,
    };
    assert!(inv(&["serve", "--site", "0"], &[("DUGONG_HTTP", "0.0.0.0:8000")]).check().is_ok());
    let e = inv(&["serve", "--sight", "0"], &[]).check().unwrap_err();
    assert!(e.contains("--sight"), "{e}");
    let e = inv(&["serve", "--site", "0"], &[("DUGONG_HTPP", "0.0.0.0:8000")]).check().unwrap_err();
    assert!(e.contains("DUGONG_HTPP is read by no flag of dugong serve"), "{e}");
    let e = inv(&["serve", "--site", "0"], &[("DUGONG_HTTP", "8000")]).check().unwrap_err();
    assert!(e.contains("--http"), "a bad value: {e}");
    let e = inv(&["replicate", "--config", "x.json"], &[("DUGONG_LOG_JSON", "maybe")]).check().unwrap_err();
    assert!(e.contains("takes true or false"), "{e}");
    assert!(inv(&["replicate", "--config", "x.json"], &[("BUCARDO_DB0", "pw"), ("DUGONG_LOG_JSON", "true")])
        .check()
        .is_ok());
    assert_eq!(
        substitute("${A}/x${B}", &[("A".into(), "1".into()), ("B".into(), "2".into())].into()),
        Ok("1/x2".into())
    );
    assert!(substitute("${NOPE}", &BTreeMap::new()).unwrap_err().contains("NOPE"));
}

#[test]
fn compose_files_run_command_lines_the_binary_accepts() {
    let root = repo();
    let compose_dir = root.join("deploy/compose");
    let example = compose_dir.join("site.env.example");
    let mut files = vec![(compose_dir.join("two-sites/compose.yaml"), None)];
    for site in ["site0", "site1"] {
        files.push((compose_dir.join(site).join("compose.yaml"), Some(example.as_path())));
    }
    for (file, env) in files {
        let config = compose(&file, env);
        let origin = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
        let invocations = compose_invocations(&config, &origin);
        let roles: Vec<&str> =
            invocations.iter().filter_map(|(_, inv, _)| inv.args.first().map(String::as_str)).collect();
        for role in ["serve", "replicate", "probe"] {
            assert!(roles.contains(&role), "{origin}: no `dugong {role}`: {roles:?}");
        }
        for (name, inv, service) in &invocations {
            inv.check().unwrap_or_else(|e| panic!("{e}"));
            match inv.args.first().map(String::as_str) {
                Some("serve") => check_server(inv),
                Some("replicate") => {
                    let inside = inv.value("--config", "DUGONG_CONFIG").expect("--config");
                    let mount = service["volumes"]
                        .as_array()
                        .and_then(|v| {
                            v.iter().filter_map(Value::as_str).find(|m| m.split(':').nth(1) == Some(inside.as_str()))
                        })
                        .unwrap_or_else(|| panic!("{origin}: services.{name}: {inside} is mounted from nowhere"));
                    check_replicator(inv, Path::new(mount.split(':').next().expect("a source")));
                }
                _ => {}
            }
        }
    }
}

#[test]
fn a_site_without_its_passwords_is_refused_by_compose_naming_them() {
    let file = repo().join("deploy/compose/site0/compose.yaml");
    let empty = tempfile::NamedTempFile::new().expect("temp file");
    let out = Command::new("docker-compose")
        .args(["-f", file.to_str().expect("path"), "--env-file", empty.path().to_str().expect("path"), "config"])
        .output()
        .expect("docker-compose (scripts/test.sh installs it)");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set DUGONG_DB0_PASSWORD in .env"), "{err}");
}

#[test]
fn systemd_units_run_command_lines_the_binary_accepts() {
    let dir = repo().join("deploy/systemd");
    let mut seen = Vec::new();
    for unit in ["dugong-serve.service", "dugong-replicate.service"] {
        let invocations = unit_invocations(&dir.join(unit));
        assert!(invocations.len() >= 2, "{unit}: ExecStart and the readiness probe");
        for inv in &invocations {
            inv.check().unwrap_or_else(|e| panic!("{e}"));
            match inv.args.first().map(String::as_str) {
                Some("serve") => check_server(inv),
                Some("replicate") => {
                    let path = inv.value("--config", "DUGONG_CONFIG").expect("--config");
                    assert_eq!(path, "/etc/dugong/bucardo.json", "{}: the installed deploy/bucardo.json", inv.origin);
                    check_replicator(inv, &repo().join("deploy/bucardo.json"));
                }
                Some("probe") => {
                    let url = inv.args.iter().find(|a| a.starts_with("http")).expect("a URL");
                    crate::probe::Target::parse(url).unwrap_or_else(|e| panic!("{}: {e}", inv.origin));
                }
                other => panic!("{}: unexpected dugong {other:?}", inv.origin),
            }
            seen.push(inv.args[0].clone());
        }
    }
    for role in ["serve", "replicate", "probe"] {
        assert!(seen.iter().any(|s| s == role), "no unit runs dugong {role}");
    }
}

#[test]
fn the_image_runs_the_binary_as_an_unprivileged_user() {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).expect("deploy/Dockerfile");
    let instruction = |name: &str| -> Vec<String> {
        let line =
            text.lines().rev().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name}"));
        serde_json::from_str(&line[name.len() + 1..]).unwrap_or_else(|e| panic!("{name} in exec form: {e}"))
    };
    let entrypoint = instruction("ENTRYPOINT");
    assert_eq!(entrypoint, ["/usr/local/bin/dugong"]);
    let inv = Invocation {
        origin: "deploy/Dockerfile: CMD".into(),
        args: instruction("CMD"),
        env: BTreeMap::new(),
        main: true,
    };
    inv.check().unwrap_or_else(|e| panic!("{e}"));
    let user = text.lines().rev().find_map(|l| l.strip_prefix("USER ")).expect("a USER");
    assert!(!user.starts_with("0") && !user.starts_with("root"), "runs as {user}");
    let version = format!("org.opencontainers.image.version=\"{}\"", crate::version::VERSION);
    assert!(text.contains(&version), "the image's version label says {version}");
}
