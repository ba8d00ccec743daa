//! Every setting also comes from `DUGONG_*` environment variables. (Its own test binary: it
//! changes the process environment.)

use std::net::SocketAddr;
use std::time::Duration;

use dugong_client::ClientConfig;

#[test]
fn the_environment_configures_the_client() {
    std::env::set_var("DUGONG_URL", "grpc://ha.test:8001");
    std::env::set_var("DUGONG_SERVERS", "3");
    std::env::set_var("DUGONG_RECONNECT_DELAY", "5");
    std::env::set_var("DUGONG_CONNECT_TIMEOUT", "250ms");
    std::env::set_var("DUGONG_DNS", "127.0.0.1:5353");
    let config = ClientConfig::from_env().unwrap();
    assert_eq!(config.target.names().len(), 3);
    assert_eq!(config.reconnect_delay, Duration::from_secs(5));
    assert_eq!(config.connect_timeout, Duration::from_millis(250));
    assert_eq!(config.dns, Some("127.0.0.1:5353".parse::<SocketAddr>().unwrap()));

    std::env::set_var("DUGONG_SERVERS", "0");
    assert!(ClientConfig::from_env().unwrap_err().to_string().contains("--servers must be at least 1"));
    std::env::set_var("DUGONG_SERVERS", "2");
    std::env::set_var("DUGONG_RECONNECT_DELAY", "0s");
    assert_eq!(ClientConfig::from_env().unwrap_err().to_string(), "--reconnect-delay must be greater than zero");
}
