//! The desired-state file: the shipped example, the canonical rendering,
//! and every kind of bad input answered with its line and field path.

use std::path::Path;

use super::*;

fn parse_text(text: &str) -> Result<DesiredState, DesiredError> {
    parse(text, Path::new("d.toml"))
}

const EXAMPLE: &str = include_str!("../../../../deploy/desired-state.example.toml");

#[test]
fn the_shipped_example_parses_with_its_defaults() {
    let d = parse_text(EXAMPLE).expect("example parses");
    assert_eq!(
        d.settings,
        Some(ClusterSettings {
            hash_seed: 0,
            table_size: 65_537
        })
    );
    assert_eq!(d.vips.len(), 2);
    let v6 = d
        .vips
        .values()
        .find(|v| v.key.address.is_ipv6())
        .expect("v6 VIP");
    assert_eq!(v6.encapsulation, Encapsulation::Gue { port: 6080 });
    let b = v6.backends.values().next().expect("a backend");
    assert_eq!((b.weight, b.state), (100, BackendState::Active));
}

#[test]
fn rendering_is_canonical_and_parses_back() {
    let d = parse_text(EXAMPLE).unwrap();
    let text = render(&d);
    assert_eq!(parse_text(&text).unwrap(), d);
    assert_eq!(render(&parse_text(&text).unwrap()), text);
    // Order in the file does not matter: VIPs by key, backends by address.
    let shuffled = "[[vips]]\nvip = \"192.0.2.2:80/tcp\"\n[[vips.backends]]\naddress = \"10.0.0.9\"\n\
                    [[vips.backends]]\naddress = \"10.0.0.1\"\n[[vips]]\nvip = \"192.0.2.1:80/tcp\"\n";
    let sorted = "[[vips]]\nvip = \"192.0.2.1:80/tcp\"\n[[vips]]\nvip = \"192.0.2.2:80/tcp\"\n\
                  [[vips.backends]]\naddress = \"10.0.0.1\"\n[[vips.backends]]\naddress = \"10.0.0.9\"\n";
    assert_eq!(
        render(&parse_text(shuffled).unwrap()),
        render(&parse_text(sorted).unwrap())
    );
}

fn err(text: &str) -> DesiredError {
    parse_text(text).expect_err("should be refused")
}

#[test]
fn bad_input_names_the_line_and_the_field() {
    let two_vips = "[[vips]]\nvip = \"192.0.2.1:80/tcp\"\n\n[[vips]]\nvip = \"192.0.2.2:80/tcp\"\n";
    let cases: Vec<(String, usize, &str, &str)> = vec![
        (
            format!("{two_vips}[[vips.backends]]\naddress = \"10.0.0.1\"\nweight = 0\n"),
            8,
            "vips[1].backends[0].weight",
            "0 is not in 1..=65535",
        ),
        (
            format!("{two_vips}[[vips.backends]]\naddress = \"10.0.0.1\"\nweight = 70000\n"),
            8,
            "vips[1].backends[0].weight",
            "70000 is not in 1..=65535",
        ),
        (
            format!("{two_vips}[[vips.backends]]\naddress = \"10.0.0.300\"\n"),
            7,
            "vips[1].backends[0].address",
            "is not an IPv4 or IPv6 address",
        ),
        (
            format!("{two_vips}[[vips.backends]]\naddress = \"224.0.0.1\"\n"),
            7,
            "vips[1].backends[0].address",
            "multicast",
        ),
        (
            format!("{two_vips}colour = \"red\"\n"),
            6,
            "vips[1].colour",
            "unknown field `colour`",
        ),
        (
            "[[vips]]\nvip = \"192.0.2.1:80/sctp\"\n".into(),
            2,
            "vips[0].vip",
            "not tcp or udp",
        ),
        (
            format!("{two_vips}[[vips]]\nvip = \"192.0.2.1:80/tcp\"\n"),
            7,
            "vips[2].vip",
            "192.0.2.1:80/tcp is already vips[0]",
        ),
        (
            format!(
                "{two_vips}[[vips.backends]]\naddress = \"10.0.0.1\"\n\
                 [[vips.backends]]\naddress = \"10.0.0.1\"\n"
            ),
            9,
            "vips[1].backends[1].address",
            "10.0.0.1 is already vips[1].backends[0]",
        ),
        (
            "[settings]\nhash_seed = 1\ntable_size = 65536\n".into(),
            3,
            "settings.table_size",
            "65536 is not a prime in 251..=1048576",
        ),
        (
            "[[vips]]\nvip = \"192.0.2.1:80/tcp\"\ngue_port = 6080\n".into(),
            3,
            "vips[0].gue_port",
            "only with encap",
        ),
        (
            "[[vips]]\nvip = \"192.0.2.1:80/tcp\"\nencap = \"gue\"\ngue_port = 1\n\
             [[vips]]\nvip = \"192.0.2.2:80/tcp\"\nencap = \"gue\"\ngue_port = 2\n"
                .into(),
            8,
            "vips[1].gue_port",
            "one GUE port per cluster",
        ),
        (
            "[[vips]]\nvip = \"192.0.2.1:80/tcp\"\nencap = \"vxlan\"\n".into(),
            3,
            "vips[0].encap",
            "unknown variant `vxlan`",
        ),
        (
            "[[vips]]\nvip = \"192.0.2.1:80/tcp\"\n[[vips.backends]]\naddress = \"10.0.0.1\"\nstate = \"up\"\n".into(),
            5,
            "vips[0].backends[0].state",
            "unknown variant `up`",
        ),
    ];
    for (text, line, field, needle) in cases {
        let e = err(&text);
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(line), field),
            "{e}\n--- in ---\n{text}"
        );
        assert!(e.message.contains(needle), "{e}: lacks `{needle}`");
        assert!(
            e.to_string()
                .starts_with(&format!("d.toml:{line}: {field}: ")),
            "{e}"
        );
    }
}

#[test]
fn a_syntax_error_names_its_line() {
    let e = err("[[vips]]\nvip = \"192.0.2.1:80/tcp\"\nweight = = 3\n");
    assert_eq!(e.line, Some(3), "{e}");
    let e = err("[[vips]]\nvip = \"192.0.2.1:80/tcp\n");
    assert_eq!(e.line, Some(2), "{e}");
}

#[test]
fn the_connection_section_is_parsed_checked_and_rendered() {
    use edgelb_consensus::{ConnectionSettings, FloodAdmission};
    let d =
        parse_text("[connection]\nsecond_hop_window_secs = 0\nflood_threshold = 5000\n").unwrap();
    let want = ConnectionSettings {
        second_hop_window_secs: 0,
        flood_threshold: FloodAdmission::PerSecond(5000),
    };
    assert_eq!(d.connection, Some(want));
    assert_eq!(parse_text(&render(&d)).unwrap(), d);
    // Keys left out take their defaults; a file without the section leaves
    // the cluster's settings alone.
    let d = parse_text("[connection]\nflood_threshold = \"off\"\n").unwrap();
    assert_eq!(d.connection.unwrap().second_hop_window_secs, 60);
    assert_eq!(parse_text("").unwrap().connection, None);
    for (text, field) in [
        (
            "second_hop_window_secs = 3601",
            "connection.second_hop_window_secs",
        ),
        (
            "second_hop_window_secs = -1",
            "connection.second_hop_window_secs",
        ),
        ("flood_threshold = 0", "connection.flood_threshold"),
        ("flood_threshold = -5", "connection.flood_threshold"),
        ("flood_threshold = 100000001", "connection.flood_threshold"),
        ("flood_threshold = \"lots\"", "connection.flood_threshold"),
    ] {
        let e = err(&format!("[connection]\n{text}\n"));
        assert_eq!(e.field, field, "{text}: {e}");
        assert_eq!(e.line, Some(2), "{text}: {e}");
    }
}
