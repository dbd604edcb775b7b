//! The configuration file: the shipped example parses, bad files give errors
//! that name the field.

use std::path::Path;

use edgelb_node::config::{Config, ConfigError, HealthKind, XdpAttachMode};

const EXAMPLE: &str = include_str!("../../deploy/lbnode.example.toml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

#[test]
fn shipped_example_parses() {
    let c = parse(EXAMPLE).expect("deploy/lbnode.example.toml must stay valid");
    assert_eq!(c.node.id, 1);
    assert_eq!(c.cluster.initial_members.len(), 3);
    assert_eq!(c.xdp.mode, XdpAttachMode::Driver);
    assert_eq!(c.health.kind, HealthKind::Http);
    assert_eq!(c.bgp.peers[0].port, 179, "default port");
    assert_eq!(c.bgp.graceful_restart_secs, 30);
    assert_eq!((c.drain.prepend_secs, c.drain.prepend_count), (5, 3));
    assert_eq!(c.bgp.med, None);
}

/// Replaces the first occurrence of `from` in the example.
fn example_with(from: &str, to: &str) -> String {
    assert!(
        EXAMPLE.contains(from),
        "fixture text `{from}` not in the example"
    );
    EXAMPLE.replacen(from, to, 1)
}

fn error_of(text: &str) -> String {
    parse(text).expect_err("must be rejected").to_string()
}

#[test]
fn unknown_field_is_named() {
    let e = error_of(&example_with(
        "heartbeat_ms = 250",
        "heartbeat_ms = 250\nhartbeat = 1",
    ));
    assert!(e.contains("hartbeat"), "{e}");
}

#[test]
fn wrong_type_is_named() {
    let e = error_of(&example_with(
        "local_asn = 65001",
        "local_asn = \"sixty-five\"",
    ));
    assert!(e.contains("local_asn"), "{e}");
}

#[test]
fn invalid_values_name_their_field() {
    let cases = [
        ("id = 1  ", "id = 0  ", "node.id"),
        (
            "heartbeat_ms = 250",
            "heartbeat_ms = 900",
            "cluster.heartbeat_ms",
        ),
        (
            "hold_time_secs = 9",
            "hold_time_secs = 2",
            "bgp.peers[0].hold_time_secs",
        ),
        (
            "remote_asn = 65000",
            "remote_asn = 23456",
            "bgp.peers[0].remote_asn",
        ),
        (
            "interfaces = [\"eth0\"]",
            "interfaces = []",
            "xdp.interfaces",
        ),
        (
            "interfaces = [\"eth0\"]",
            "interfaces = [\"a/b\"]",
            "xdp.interfaces[0]",
        ),
        (
            "encap_source_v4 = \"172.16.0.0/16\"",
            "encap_source_v4 = \"2001:db8::9\"",
            "xdp.encap_source_v4",
        ),
        (
            "encap_source_v6 = \"fd00::/96\"",
            "encap_source_v6 = \"fd00::/64\"",
            "xdp.encap_source_v6",
        ),
        (
            "communities = [\"65001:100\"]",
            "communities = [\"65001:70000\"]",
            "bgp.communities[0]",
        ),
        ("timeout_ms = 500", "timeout_ms = 5000", "health.timeout_ms"),
        ("rise = 2", "rise = 0", "health.rise"),
        (
            "as_path_prepend = 0",
            "as_path_prepend = 11",
            "bgp.as_path_prepend",
        ),
        (
            "aggregates = []",
            "aggregates = [\"192.0.2.1/24\"]",
            "bgp.aggregates[0]",
        ),
        (
            "aggregates = []",
            "aggregates = [\"192.0.2.0\"]",
            "bgp.aggregates[0]",
        ),
        (
            "graceful_restart_secs = 30 ",
            "graceful_restart_secs = 5000",
            "bgp.graceful_restart_secs",
        ),
        (
            "prepend_count = 3",
            "prepend_count = 0",
            "drain.prepend_count",
        ),
        (
            "prepend_secs = 5 ",
            "prepend_secs = 7200 ",
            "drain.prepend_secs",
        ),
        (
            "http_path = \"/healthz\"",
            "http_path = \"healthz\"",
            "health.http_path",
        ),
        (
            "{ id = 1, addr",
            "{ id = 7, addr",
            "cluster.initial_members",
        ),
        (
            "{ id = 3, addr",
            "{ id = 2, addr",
            "cluster.initial_members[2].id",
        ),
    ];
    for (from, to, field) in cases {
        let e = error_of(&example_with(from, to));
        // `FILE:LINE: FIELD: MESSAGE`, the line that of the edited value.
        assert!(e.contains(&format!(": {field}: ")), "{from} -> {to}: {e}");
        assert!(e.starts_with("test.toml:"), "{from} -> {to}: {e}");
    }
}

/// The flood threshold: a rate in range, "auto" or "off"; 0, negative,
/// absurdly large or another word is an error naming the field.
#[test]
fn flood_threshold_is_checked() {
    const AUTO: &str = "flood_threshold = \"auto\"";
    let c = parse(EXAMPLE).unwrap();
    assert_eq!(
        c.xdp.flood_threshold.threshold(),
        Ok(xdp_fwd::FloodThreshold::FromCapacity)
    );
    for (to, want) in [
        (
            "flood_threshold = 5000",
            xdp_fwd::FloodThreshold::PerSecond(5000),
        ),
        ("flood_threshold = \"off\"", xdp_fwd::FloodThreshold::Off),
    ] {
        let c = parse(&example_with(AUTO, to)).unwrap();
        assert_eq!(c.xdp.flood_threshold.threshold(), Ok(want), "{to}");
    }
    for to in [
        "flood_threshold = 0",
        "flood_threshold = -5",
        "flood_threshold = 100000001",
        "flood_threshold = 9223372036854775807",
        "flood_threshold = \"lots\"",
    ] {
        let e = error_of(&example_with(AUTO, to));
        assert!(e.contains(": xdp.flood_threshold: "), "{to}: {e}");
    }
}

#[test]
fn bad_address_is_a_parse_error_naming_the_field() {
    let e = error_of(&example_with(
        "listen = \"10.0.0.1:7000\"",
        "listen = \"10.0.0.1\"",
    ));
    assert!(e.contains("listen"), "{e}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let e = Config::load(Path::new("/nonexistent/edgelb.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/edgelb.toml"), "{e}");
}

#[test]
fn http_api_is_off_unless_listen_is_set() {
    let c = parse(EXAMPLE).unwrap();
    assert_eq!(c.http.listen, None);
    assert_eq!(c.http.max_body_bytes, 1 << 20);
    let on = example_with(
        "[metrics]",
        "[http]\nlisten = \"127.0.0.1:7200\"\nmax_body_bytes = 4096\n\n[metrics]",
    );
    let c = parse(&on).expect("an [http] section");
    assert_eq!(c.http.listen, Some("127.0.0.1:7200".parse().unwrap()));
    assert_eq!(c.http.max_body_bytes, 4096);
    for bad in ["100", "9000000"] {
        let text = example_with(
            "[metrics]",
            &format!("[http]\nlisten = \"127.0.0.1:7200\"\nmax_body_bytes = {bad}\n\n[metrics]"),
        );
        let e = error_of(&text);
        assert!(e.contains("http.max_body_bytes"), "{e}");
    }
    let e = error_of(&example_with(
        "[metrics]",
        "[http]\nlisten = \"127.0.0.1:7200\"\nport = 1\n\n[metrics]",
    ));
    assert!(e.contains("port"), "{e}");
}

#[test]
fn errors_name_file_line_and_field() {
    // Refused by validation, by the parser (a type), by the parser (an
    // unknown field), and a cross-field rule on a value the file spells out.
    let cases = [
        (
            "hold_time_secs = 9",
            "hold_time_secs = 2",
            "bgp.peers[0].hold_time_secs: must be 0 or at least 3",
        ),
        (
            "local_asn = 65001",
            "local_asn = \"sixty-five\"",
            "bgp.local_asn: invalid type",
        ),
        (
            "heartbeat_ms = 250",
            "hartbeat = 1\nheartbeat_ms = 250",
            "cluster.hartbeat: unknown field `hartbeat`",
        ),
        (
            "heartbeat_ms = 250",
            "heartbeat_ms = 900",
            "cluster.heartbeat_ms: must be at least 1",
        ),
    ];
    for (from, to, want) in cases {
        let text = example_with(from, to);
        let line = text[..text.find(to).unwrap()].matches('\n').count() + 1;
        let e = error_of(&text);
        assert!(
            e.starts_with(&format!("test.toml:{line}: {want}")),
            "want `test.toml:{line}: {want}`, got `{e}`"
        );
    }
}
