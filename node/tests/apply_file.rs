//! `lbctl apply` / `export` against a real 3-node cluster (edgelb-sim's
//! namespaces, real `lbnode` daemons with XDP attached): a file of
//! 10 VIPs x 20 backends lands as exactly one table version on every node,
//! re-applying is a no-op, `--dry-run` changes nothing, export round-trips,
//! and bad files or stale versions are refused with nothing applied.
//!
//! Needs root and the workspace binaries:
//! `cargo build --release -p edgelb-node -p edgelb-sim` first.

mod support;

use std::{fmt::Write as _, path::Path, time::Duration};

use edgelb_node::{
    admin::{
        client::AdminClient,
        protocol::{Request, Response},
    },
    desired::{parse, render},
};
use edgelb_sim::cluster::{backend_addr, in_namespace, lb_addr, Cluster, ADMIN_PORT};
use support::{all_at, fails, ok, settled_cluster};

const VIPS: usize = 10;
const BACKENDS: usize = 20;

/// 10 VIPs x 20 backends; `weight_of` picks each backend's weight. The
/// backends are the sim's real hosts (shared by the VIPs), so the nodes'
/// health checks pass and report nothing: the table moves only by apply.
fn desired_file(weight_of: impl Fn(usize, usize) -> u32) -> String {
    let mut text = String::new();
    for v in 0..VIPS {
        let _ = write!(text, "[[vips]]\nvip = \"192.0.2.10:{}/tcp\"\n", 8000 + v);
        for b in 0..BACKENDS {
            let _ = write!(
                text,
                "[[vips.backends]]\naddress = \"{}\"\nweight = {}\n",
                backend_addr(b + 1),
                weight_of(v, b)
            );
        }
    }
    text
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p.to_string_lossy().into_owned()
}

#[test]
fn apply_export_and_bad_files_on_a_real_cluster() {
    let (cluster, v0) = settled_cluster(BACKENDS);
    let dir = tempfile::tempdir().expect("tempdir");

    // --- one file, one version on every node.
    let first = write(
        dir.path(),
        "first.toml",
        &desired_file(|_, b| 10 + b as u32),
    );
    let out = ok(&cluster, 1, &["apply", "-f", &first]);
    assert!(out.contains("210 changes in one batch"), "{out}");
    assert!(
        out.contains(&format!("ok: applied at table version {}", v0 + 1)),
        "{out}"
    );
    let d1 = all_at(&cluster, v0 + 1);

    // --- re-apply: nothing to do, no new version.
    let out = ok(&cluster, 2, &["apply", "-f", &first]);
    assert!(out.starts_with("no changes"), "{out}");
    assert_eq!(cluster.current_version().unwrap(), v0 + 1);

    // --- an edit, dry run: the plan, and nothing changes.
    let edited_text = desired_file(|v, b| if v == 3 && b < 2 { 500 } else { 10 + b as u32 });
    let edited = write(dir.path(), "edited.toml", &edited_text);
    let plan = ok(&cluster, 3, &["apply", "-f", &edited, "--dry-run"]);
    for needle in [
        "2 changes",
        "192.0.2.10:8003/tcp  10.102.1.2",
        "weight",
        "10 → 500",
        "SLOTS MOVED",
    ] {
        assert!(plan.contains(needle), "plan lacks `{needle}`:\n{plan}");
    }
    assert!(!plan.contains("ok: applied"), "{plan}");
    assert_eq!(cluster.current_version().unwrap(), v0 + 1);
    assert_eq!(all_at(&cluster, v0 + 1), d1);

    // --- for real: one more version.
    let out = ok(&cluster, 3, &["apply", "-f", &edited]);
    assert!(
        out.contains(&format!("ok: applied at table version {}", v0 + 2)),
        "{out}"
    );
    let d2 = all_at(&cluster, v0 + 2);
    assert_ne!(d1, d2);

    // --- export: the file's content, normalised; applying it is a no-op.
    let exported = ok(&cluster, 1, &["export"]);
    let got = parse(&exported, Path::new("export")).expect("export parses");
    let mut want = parse(&edited_text, Path::new("edited")).unwrap();
    want.settings = got.settings;
    // The file names no [connection]: export writes the cluster's.
    want.connection = got.connection;
    assert_eq!(got, want);
    assert_eq!(exported, render(&want));
    let exported_path = write(dir.path(), "exported.toml", &exported);
    let out = ok(&cluster, 2, &["apply", "-f", &exported_path, "--prune"]);
    assert!(out.starts_with("no changes"), "{out}");

    // --- optimistic concurrency: a stale --expect-version is refused.
    let third = write(dir.path(), "third.toml", &desired_file(|_, _| 7));
    fails(
        &cluster,
        1,
        &["apply", "-f", &third, "--expect-version", &v0.to_string()],
        "not the expected",
    );
    assert_eq!(cluster.current_version().unwrap(), v0 + 2);

    // --- bad files: line and field path, exit code 2, nothing applied.
    let bad_cases = [
        (
            edited_text.replacen("weight = 10\n", "weight = 0\n", 1),
            ":5: vips[0].backends[0].weight: 0 is not in 1..=65535",
        ),
        (
            edited_text.replacen("weight = 10\n", "weight = 10\nport = 1\n", 1),
            ":6: vips[0].backends[0].port: unknown field `port`",
        ),
        (
            edited_text.replacen("10.102.1.2\"", "10.102.1.x\"", 1),
            ":4: vips[0].backends[0].address: `10.102.1.x` is not an IPv4 or IPv6 address",
        ),
        (
            format!("{edited_text}[[vips]]\nvip = \"192.0.2.10:8000/tcp\"\n"),
            "vips[10].vip: 192.0.2.10:8000/tcp is already vips[0]",
        ),
        (
            edited_text.replacen("address = \"10.102.2.2\"", "address = \"10.102.1.2\"", 1),
            "vips[0].backends[1].address: 10.102.1.2 is already vips[0].backends[0]",
        ),
        ("[[vips]\nvip = 1\n".to_owned(), ":1: "),
    ];
    for (i, (text, needle)) in bad_cases.iter().enumerate() {
        let path = write(dir.path(), &format!("bad{i}.toml"), text);
        let r = fails(&cluster, 2, &["apply", "-f", &path], needle);
        assert_eq!(r.code, Some(2), "{r:?}");
    }
    assert_eq!(cluster.current_version().unwrap(), v0 + 2);

    // --- capacity: more VIPs than the data plane holds is refused whole.
    let mut too_many = String::new();
    for v in 0..65 {
        let _ = write!(
            too_many,
            "[[vips]]\nvip = \"192.0.2.20:{}/udp\"\n",
            1000 + v
        );
    }
    let path = write(dir.path(), "too-many.toml", &too_many);
    fails(&cluster, 1, &["apply", "-f", &path], "refused");
    assert_eq!(cluster.current_version().unwrap(), v0 + 2);
    assert_eq!(all_at(&cluster, v0 + 2), d2);

    admin_batches(&cluster);
}

/// The admin protocol's batch, sent directly: an invalid entry (or one
/// that is not a table write) refuses the whole batch, naming it; a good
/// one is one version.
fn admin_batches(cluster: &Cluster) {
    let token = std::fs::read_to_string(&cluster.token_file).unwrap();
    let addr = format!("{}:{ADMIN_PORT}", lb_addr(1));
    let vip = edgelb_node::cli::parse::vip_key("192.0.2.10:9000/tcp").unwrap();
    let add_vip = Request::VipAdd {
        key: vip,
        flags: Default::default(),
        encapsulation: edgelb_consensus::Encapsulation::IpIp,
    };
    let (b1, b2) = (backend_addr(1).to_string(), backend_addr(2).to_string());
    let backend = move |a: &str, weight| Request::BackendAdd {
        vip,
        backend: edgelb_consensus::Backend {
            address: a.parse().unwrap(),
            weight,
            state: edgelb_consensus::BackendState::Active,
        },
    };
    let batches = vec![
        (
            vec![add_vip.clone(), backend(&b1, 5), backend(&b2, 0)],
            "batch entry 2 (add_backend), field `backend.weight`",
        ),
        (
            vec![add_vip.clone(), backend(&b1, 5), backend(&b1, 6)],
            "batch entry 2 (add_backend), field `backend.address`",
        ),
        (
            vec![backend(&b1, 5)],
            "batch entry 0 (add_backend), field `vip`: unknown VIP",
        ),
        (
            vec![add_vip.clone(), Request::Status],
            "batch entry 1 (status), field `op`",
        ),
        (
            vec![
                add_vip.clone(),
                Request::Batch {
                    expect_version: None,
                    requests: vec![],
                },
            ],
            "batch entry 1 (batch): a batch cannot contain another batch",
        ),
    ];
    let good_requests = vec![add_vip, backend(&b1, 5), backend(&b2, 6)];
    let answers = in_namespace(cluster.client.name(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut client = AdminClient::connect(&addr, token.trim(), Duration::from_secs(10))
                .await
                .expect("connect");
            let mut answers = Vec::new();
            for (requests, needle) in batches {
                let r = client
                    .request(&Request::Batch {
                        expect_version: None,
                        requests,
                    })
                    .await
                    .expect("answer");
                answers.push((r, needle));
            }
            // A good batch: one version for a VIP and two backends.
            let before = match client.request(&Request::VipList).await.unwrap() {
                Response::Vips { version, .. } => version,
                other => panic!("{other:?}"),
            };
            let good = client
                .request(&Request::Batch {
                    expect_version: Some(before),
                    requests: good_requests,
                })
                .await
                .unwrap();
            (answers, before, good)
        })
    })
    .expect("namespace thread");
    let (answers, before, good) = answers;
    for (r, needle) in answers {
        match r {
            Response::Error { message } => assert!(message.contains(needle), "{message}"),
            other => panic!("expected an error with `{needle}`, got {other:?}"),
        }
    }
    assert_eq!(
        good,
        Response::Written {
            version: before + 1
        }
    );
    let listing = ok(cluster, 2, &["backend", "list", "192.0.2.10:9000/tcp"]);
    assert!(listing.contains(&b1) && listing.contains(&b2), "{listing}");
    // Nothing from the refused batches was applied: only the good one.
    assert_eq!(cluster.current_version().unwrap(), before + 1);
}
