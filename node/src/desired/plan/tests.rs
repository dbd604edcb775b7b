//! Plans against a table: additions and updates, pruning, idempotence and
//! the moved-slot shares computed as the nodes compute tables.

use std::path::Path;

use super::*;
use crate::desired::parse;

fn desired(text: &str) -> DesiredState {
    parse(text, Path::new("t.toml")).expect("valid")
}

const TWO: &str = "[settings]\nhash_seed = 7\ntable_size = 251\n\
    [[vips]]\nvip = \"192.0.2.1:80/tcp\"\n\
    [[vips.backends]]\naddress = \"10.0.0.1\"\n\
    [[vips.backends]]\naddress = \"10.0.0.2\"\n\
    [[vips]]\nvip = \"192.0.2.2:53/udp\"\n\
    [[vips.backends]]\naddress = \"10.0.0.3\"\nweight = 5\n";

#[test]
fn a_fresh_cluster_gets_everything_in_one_batch_then_nothing() {
    let empty = ClusterState::default();
    let p = plan(&empty, &desired(TWO), false).unwrap();
    // settings, 2 VIPs, 3 backends
    assert_eq!(p.commands.len(), 6);
    assert_eq!(p.next.version, 1, "one version for the whole batch");
    assert_eq!(p.next.vips.len(), 2);
    assert_eq!(p.moved.len(), 2);
    assert!(p.moved.values().all(|s| *s == 1.0));
    // Applying the same file again plans nothing.
    let again = plan(&p.next, &desired(TWO), true).unwrap();
    assert!(again.commands.is_empty(), "{:?}", again.changes);
    assert!(again.moved.is_empty());
}

#[test]
fn updates_and_prune() {
    let start = plan(&ClusterState::default(), &desired(TWO), false)
        .unwrap()
        .next;
    // 10.0.0.2 gone, 10.0.0.1 reweighted and drained, the UDP VIP gone.
    let edited = "[[vips]]\nvip = \"192.0.2.1:80/tcp\"\nhash_no_source_port = true\n\
        [[vips.backends]]\naddress = \"10.0.0.1\"\nweight = 9\nstate = \"draining\"\n\
        [[vips.backends]]\naddress = \"10.0.0.4\"\n";
    let keep = plan(&start, &desired(edited), false).unwrap();
    let kinds: Vec<&str> = keep.changes.iter().map(|c| c.change).collect();
    assert_eq!(kinds, ["options", "weight", "state", "add"]);
    assert_eq!(
        keep.next.vips.len(),
        2,
        "without --prune nothing is removed"
    );
    assert_eq!(keep.next.version, start.version + 1);
    let tcp = keep.moved.keys().next().copied().expect("a share");
    assert_eq!(tcp.port, 80);
    // Settings were not named: left as they are.
    assert_eq!(keep.next.settings.table_size, 251);

    let pruned = plan(&start, &desired(edited), true).unwrap();
    let kinds: Vec<&str> = pruned.changes.iter().map(|c| c.change).collect();
    assert_eq!(
        kinds,
        ["remove", "remove", "options", "weight", "state", "add"]
    );
    assert_eq!(pruned.next.vips.len(), 1);
    let v = pruned.next.vips.values().next().unwrap();
    assert_eq!(v.backends.len(), 2);
    // The TCP VIP: 10.0.0.1 drained, 10.0.0.2 removed, 10.0.0.4 added: every
    // slot now points to 10.0.0.4, and the old owner of each was 1 or 2.
    assert_eq!(pruned.moved[&v.key], 1.0);
    assert_eq!(
        pruned.moved.len(),
        2,
        "the removed VIP moves all its slots too"
    );
}

#[test]
fn a_weight_change_moves_a_share_of_the_slots() {
    let start = plan(&ClusterState::default(), &desired(TWO), false)
        .unwrap()
        .next;
    let heavier = TWO.replace(
        "address = \"10.0.0.2\"\n",
        "address = \"10.0.0.2\"\nweight = 300\n",
    );
    let p = plan(&start, &desired(&heavier), false).unwrap();
    assert_eq!(p.commands.len(), 1);
    let share = p.moved.values().next().copied().expect("the TCP VIP moves");
    // 10.0.0.2 goes from 1/2 to 3/4 of the table: about a quarter moves.
    assert!((0.15..0.35).contains(&share), "{share}");
}

#[test]
fn a_plan_the_cluster_would_refuse_names_the_entry() {
    let mut gue = ClusterState::default();
    gue.apply(&Command::AddVip {
        key: crate::cli::parse::vip_key("192.0.2.9:80/tcp").unwrap(),
        flags: Default::default(),
        encapsulation: Encapsulation::Gue { port: 7000 },
    })
    .unwrap();
    let file = "[[vips]]\nvip = \"192.0.2.1:80/tcp\"\nencap = \"gue\"\ngue_port = 6080\n";
    let e = plan(&gue, &desired(file), false).unwrap_err().to_string();
    assert!(
        e.contains("batch entry 0 (add_vip), field `encapsulation.port`"),
        "{e}"
    );
}

#[test]
fn the_connection_settings_are_planned_once() {
    let file = "[connection]\nsecond_hop_window_secs = 0\nflood_threshold = \"off\"\n";
    let p = plan(&ClusterState::default(), &desired(file), false).unwrap();
    assert_eq!(p.commands.len(), 1, "{:?}", p.changes);
    assert_eq!(p.commands[0].name(), "set_connection_settings");
    assert_eq!(p.next.connection.second_hop_window_secs, 0);
    assert!(plan(&p.next, &desired(file), false)
        .unwrap()
        .commands
        .is_empty());
    // A file at the defaults plans nothing on a fresh cluster.
    let defaults = desired("[connection]\n");
    assert!(plan(&ClusterState::default(), &defaults, false)
        .unwrap()
        .commands
        .is_empty());
}
