//! The long-lived `nft -i` session against the real kernel, in throwaway network
//! namespaces (deleted on drop). Needs root, `ip` and `nft`; otherwise every test passes
//! after printing why it was skipped.

use bulkhead_dataplane::session::{NftSession, SessionError};
use bulkhead_dataplane::table::{Chain, Table};
use bulkhead_dataplane::{CommandRunner, Dataplane};
use bulkhead_netns::{Netns, unique_name};

mod common;
use common::capable;

fn chain(ns: &Netns) -> String {
    ns.exec_ok("nft", ["list", "chain", "inet", "t", "c"])
        .expect("nft list chain")
}

#[test]
fn one_line_is_one_transaction_and_a_refusal_changes_nothing() {
    if !capable() {
        return;
    }
    let ns = Netns::create(&unique_name("session")).expect("namespace");
    let mut s = NftSession::start(Some(ns.name())).expect("nft -i starts");
    s.run("add table inet t\nadd chain inet t c\nadd rule inet t c tcp dport 22 accept\n")
        .expect("valid script");
    assert!(chain(&ns).contains("tcp dport 22 accept"));

    // The flush would succeed alone; the rule after it cannot: nothing of it happens.
    let refused = s.run("flush chain inet t c\nadd rule inet t nosuch tcp dport 23 accept\n");
    match refused {
        Err(SessionError::Rejected(m)) => assert!(m.contains("nosuch"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(chain(&ns).contains("tcp dport 22 accept"), "all or nothing");

    // The session is still good after a refusal.
    s.run("flush chain inet t c\nadd rule inet t c tcp dport 24 accept")
        .expect("valid script");
    let now = chain(&ns);
    assert!(
        now.contains("tcp dport 24 accept") && !now.contains("dport 22"),
        "{now}"
    );
}

#[test]
fn the_runner_follows_a_namespace_recreated_under_the_same_name() {
    if !capable() {
        return;
    }
    let name = unique_name("session-re");
    let mut table = Table::default();
    table.chains.insert(
        "c".into(),
        Chain {
            hook: None,
            rules: vec!["tcp dport 22 accept".into()],
        },
    );
    let mut changed = table.clone();
    if let Some(c) = changed.chains.get_mut("c") {
        c.rules = vec!["tcp dport 23 accept".into()];
    }
    let mut dp = Dataplane::new(CommandRunner::in_netns(&name));
    {
        let ns = Netns::create(&name).expect("namespace");
        dp.apply(table.clone()).expect("load");
        dp.apply(changed.clone()).expect("diff through the session");
        let listed = ns
            .exec_ok("nft", ["list", "chain", "inet", "bulkhead", "c"])
            .expect("listed");
        assert!(listed.contains("dport 23"), "{listed}");
    }
    // Same name, new namespace: a diff sent to the old session would vanish with it.
    let ns = Netns::create(&name).expect("namespace again");
    dp.force_full();
    dp.apply(table).expect("reload into the new namespace");
    dp.apply(changed).expect("diff into the new namespace");
    let listed = ns
        .exec_ok("nft", ["list", "chain", "inet", "bulkhead", "c"])
        .expect("listed");
    assert!(listed.contains("dport 23"), "{listed}");
}
