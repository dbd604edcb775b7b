//! The real `lbctl` binary where no node is needed: shell completions, the
//! man page, and desired-state files refused before anything is sent
//! (exit code 2, the file's line and the field path).

use std::process::Command;

fn lbctl(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lbctl"))
        .args(args)
        // An address nothing listens on: these runs must not need a node.
        .args(["--node", "127.0.0.1:1", "--timeout-ms", "2000"])
        .env_remove("LBCTL_NODE")
        .env_remove("LBCTL_TOKEN_FILE")
        .output()
        .expect("run lbctl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn completions_for_every_shell_name_the_subcommands() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef lbctl"),
        ("fish", "complete -c lbctl"),
    ] {
        let (code, out, err) = lbctl(&["completions", shell]);
        assert_eq!(code, Some(0), "{shell}: {err}");
        assert!(out.contains(marker), "{shell}: lacks `{marker}`");
        for sub in ["apply", "export", "backend", "vip"] {
            assert!(out.contains(sub), "{shell} completion lacks `{sub}`");
        }
    }
    let (code, _, err) = lbctl(&["completions", "tcsh"]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn the_man_page_documents_the_commands() {
    let (code, out, err) = lbctl(&["man"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with(".ie") || out.contains(".TH lbctl"), "{out}");
    for needle in ["apply", "export", "completions", "\\-\\-token\\-file"] {
        assert!(out.contains(needle), "man page lacks `{needle}`");
    }
}

#[test]
fn a_bad_file_exits_2_naming_line_and_field_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[vips]]\nvip = \"192.0.2.1:80/tcp\"\n[[vips.backends]]\naddress = \"10.0.0.1\"\nweight = 0\n",
    )
    .unwrap();
    let path = bad.to_string_lossy().into_owned();
    let (code, out, err) = lbctl(&["apply", "-f", &path, "--dry-run"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!(
            "{path}:5: vips[0].backends[0].weight: 0 is not in 1..=65535"
        )),
        "{err}"
    );
    // A good file gets past parsing and fails only at connecting (exit 1).
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        include_str!("../../deploy/desired-state.example.toml"),
    )
    .unwrap();
    let (code, _, err) = lbctl(&["apply", "-f", &good.to_string_lossy()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("token"), "{err}");
    // A missing file is not a parse error.
    let (code, _, err) = lbctl(&["apply", "-f", "/nonexistent/desired.toml"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("reading /nonexistent/desired.toml"), "{err}");
}
