//! The file descriptors a server needs for its configured limits, against
//! what the process may open (`ulimit -n`): warned about at start, since a
//! server that runs out stops accepting exactly when it is busiest.

use crate::config::ServerConfig;

/// Descriptors beyond connections and the pool: listeners, the database
/// files, the runtime, logs.
const BASE: u64 = 64;

/// What the configuration needs: a descriptor per connection allowed, per
/// database connection, and the base.
pub fn needed(config: &ServerConfig) -> u64 {
    config.net.max_connections as u64 + config.pool_size as u64 + BASE
}

/// Warns when the soft limit on open files is below what the limits need.
pub fn check_file_descriptors(config: &ServerConfig) {
    let need = needed(config);
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let open_files: u64 = limit.rlim_cur;
    if open_files < need {
        tracing::warn!(
            open_files_limit = open_files,
            needed = need,
            max_connections = config.net.max_connections,
            "ulimit -n is below what --max-connections needs; raise it (LimitNOFILE= in systemd) \
             or lower --max-connections, or new connections will fail when busiest"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_and_the_pool_need_a_descriptor_each() {
        let db: dugong_store::DbUrl = "sqlite:x.sqlite".parse().unwrap();
        let mut config = ServerConfig::new("0", db, crate::Auth::new(Vec::new(), true));
        config.net.max_connections = 1000;
        config.pool_size = 16;
        assert_eq!(needed(&config), 1080);
    }
}
