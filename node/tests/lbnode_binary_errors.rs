//! The real `lbnode` binary on bad input: bad configuration files (with and
//! without `--check`) and bad arguments exit non-zero with a message that
//! names the offending field or file, and start nothing.

use std::{path::Path, process::Command};

const EXAMPLE: &str = include_str!("../../deploy/lbnode.example.toml");

fn lbnode(args: &[&str], config: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lbnode"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run lbnode");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn with(from: &str, to: &str) -> String {
    assert!(
        EXAMPLE.contains(from),
        "fixture `{from}` not in the example"
    );
    EXAMPLE.replacen(from, to, 1)
}

#[test]
fn check_accepts_the_shipped_example() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "good.toml", EXAMPLE);
    let (code, out, err) = lbnode(&["--check"], &p);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn bad_files_name_the_field_with_and_without_check() {
    let dir = tempfile::tempdir().unwrap();
    // A syntax error names no field: its line does.
    let syntax = with("[drain]", "[drain");
    let syntax_line = format!(
        ":{}: invalid table header",
        syntax[..syntax.find("[drain").unwrap()]
            .matches('\n')
            .count()
            + 1
    );
    let cases = [
        (
            "unknown",
            with("heartbeat_ms = 250", "heartbeat_ms = 250\nhartbeat_ms = 1"),
            "hartbeat_ms",
        ),
        (
            "unknown-section",
            format!("{EXAMPLE}\n[bgpp]\nx = 1\n"),
            "bgpp",
        ),
        (
            "type",
            with("local_asn = 65001", "local_asn = \"sixty-five\""),
            "local_asn",
        ),
        (
            "range",
            with("heartbeat_ms = 250", "heartbeat_ms = 900"),
            "cluster.heartbeat_ms",
        ),
        (
            "iface",
            with("interfaces = [\"eth0\"]", "interfaces = []"),
            "xdp.interfaces",
        ),
        (
            "mode",
            with("mode = \"driver\"", "mode = \"turbo\""),
            "mode",
        ),
        (
            "address",
            with("listen = \"10.0.0.1:7000\"", "listen = \"10.0.0.1\""),
            "listen",
        ),
        ("syntax", syntax.clone(), syntax_line.as_str()),
    ];
    for (name, text, field) in cases {
        let p = write(dir.path(), &format!("{name}.toml"), &text);
        for args in [&["--check"][..], &[][..]] {
            let (code, out, err) = lbnode(args, &p);
            assert_eq!(code, Some(2), "{name} {args:?}: {out}{err}");
            assert!(out.is_empty(), "{name} {args:?}: {out}");
            assert!(
                err.contains(field),
                "{name} {args:?}: error does not name `{field}`: {err}"
            );
            assert!(
                err.contains(&p.display().to_string()),
                "{name} {args:?}: error does not name the file: {err}"
            );
        }
    }
}

#[test]
fn missing_file_and_missing_secret_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = lbnode(&["--check"], &dir.path().join("absent.toml"));
    assert_eq!(code, Some(2));
    assert!(err.contains("absent.toml"), "{err}");

    // Valid file, but the secret it points at does not exist: startup fails
    // before binding or loading anything, naming the file.
    let secret = dir.path().join("no-such.secret");
    let text = with("/etc/edgelb/cluster.secret", &secret.display().to_string())
        .replace(
            "/var/lib/edgelb",
            &dir.path().join("data").display().to_string(),
        )
        .replace(
            "/sys/fs/bpf/edgelb",
            &dir.path().join("pins").display().to_string(),
        );
    let p = write(dir.path(), "nosecret.toml", &text);
    let (code, _, err) = lbnode(&[], &p);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no-such.secret"), "{err}");
    assert!(!dir.path().join("pins").exists(), "nothing was loaded");
}

#[test]
fn bad_arguments_are_rejected() {
    let out = Command::new(env!("CARGO_BIN_EXE_lbnode")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
    let out = Command::new(env!("CARGO_BIN_EXE_lbnode"))
        .args(["--config", "x.toml", "--frobnicate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--frobnicate"));
}
