//! Rounds over a whole network: every price stored exactly once, each pair under its own
//! digest, a node far from the others left without co-signatures, a committee that is down
//! replaced by the fallback, and members added or removed while the network runs.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use libp2p::Multiaddr;
use price_oracle::committee::{self, CommitteeSettings};
use price_oracle::cosign::{CosignRefusal, FallbackOutcome};
use price_oracle::domain::{Deployment, FaultBound};
use price_oracle::message::{Gossip, GossipKind, PriceMessage};
use price_oracle::pair::{Pair, PairSet};
use price_oracle::signed::price_digest;
use price_oracle::store::Store;
use price_oracle::testkit::{
    self, Peer, Stored, TestNode, addresses, addresses_of, assert_rows_verify, holds_for, price_by,
    report_rounds, stop_all, total, wait_for,
};
use rust_decimal::Decimal;

use super::{get, published};
use crate::common::{
    self,
    cluster::{Cluster, MEMBER_SEEDS, register},
};

/// `/ip4/127.0.0.1/tcp/P/p2p/ID` → `/dns4/localhost/tcp/P`.
fn by_host_name(addr: &Multiaddr) -> Multiaddr {
    use libp2p::multiaddr::Protocol;
    let port = addr
        .iter()
        .find_map(|protocol| match protocol {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    format!("/dns4/localhost/tcp/{port}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_store_every_price_exactly_once() {
    let cluster = Cluster::new("cluster").await;
    // One price per node: each originates once, as soon as it has peers and a database.
    let mut nodes = cluster.start(1..=4).await;
    // The fifth joins by host name and without a peer id, as compose's nodes do.
    let mut fifth = cluster.settings(5);
    fifth.network.bootstrap = vec![by_host_name(&cluster.boot_addr)];
    nodes.push(TestNode::start(fifth).await);
    let started = Instant::now();
    cluster.wait_rows(5, Duration::from_secs(90)).await;
    println!("5 prices stored {:?} after start", started.elapsed());
    // Nothing else may show up: no duplicates, no extra rows.
    holds_for("five rows", Duration::from_secs(2), async || {
        cluster.rows().await.len() == 5
    })
    .await;
    let stored = cluster.rows().await;
    let origins: HashSet<Address> = stored.iter().map(|s| s.report.round.origin).collect();
    assert_eq!(origins.len(), 5, "one price from each node");
    assert_rows_verify(&stored, 3, &addresses_of(&nodes));

    let originated = total(&nodes, |m| m.prices_originated.get());
    assert_eq!(originated, 5);
    let publishes =
        published(&nodes, GossipKind::Price) + published(&nodes, GossipKind::Attestation);
    println!(
        "publishes per price: {:.2} (N + 1 = 6)",
        publishes as f64 / originated as f64
    );
    assert!(
        publishes <= originated * 6,
        "{publishes} publishes for {originated} prices"
    );
    assert_eq!(
        total(&nodes, |m| m.prices_stored.get()),
        5,
        "the writers' own count agrees"
    );
    stop_all(nodes).await;
    assert_eq!(cluster.rows().await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pairs_are_each_stored_with_a_quorum_of_signatures_over_their_own_digest() {
    // Configured for the test chain's verifier, so that its rows verify there as stored.
    let cluster = Cluster::on_chain("two_pairs", MEMBER_SEEDS).await;
    // One round per node: each originates ETH/USD and BTC/USD once.
    let pairs: PairSet = [Pair::EthUsd, Pair::BtcUsd].into_iter().collect();
    let mut nodes = cluster
        .start_with(2..=4, |settings| settings.sign_pairs(pairs))
        .await;
    // Node 1 also serves the read API, which gives each stored price's on-chain report.
    let mut settings = cluster.settings(1);
    settings.sign_pairs(pairs);
    settings.http = Some("127.0.0.1:0".parse().unwrap());
    let reader = TestNode::start(settings).await;
    let api = format!("http://{}/v1", reader.node.http_addr.unwrap());
    nodes.push(reader);
    cluster.wait_rows(8, Duration::from_secs(90)).await;
    holds_for("eight rows", Duration::from_secs(2), async || {
        cluster.rows().await.len() == 8
    })
    .await;
    let stored = cluster.rows().await;
    // Each row's signatures recover over the digest of its own pair.
    assert_rows_verify(&stored, 3, &addresses_of(&nodes));
    for (pair, price) in [(Pair::EthUsd, "3000"), (Pair::BtcUsd, "90000")] {
        let of_pair: Vec<&Stored> = stored
            .iter()
            .filter(|row| row.report.round.pair == pair)
            .collect();
        assert_eq!(of_pair.len(), 4, "one {pair} price from each node");
        let origins: HashSet<Address> = of_pair.iter().map(|s| s.report.round.origin).collect();
        assert_eq!(origins.len(), 4);
        for row in of_pair {
            assert_eq!(row.row.price, price.parse::<Decimal>().unwrap(), "{pair}");
            // The same signatures do not hold for the other pair: the pair is signed.
            let other = if pair == Pair::EthUsd {
                Pair::BtcUsd
            } else {
                Pair::EthUsd
            };
            for entry in &row.report.observations {
                let observation = entry.observation;
                let digest = price_digest(
                    row.report.round.config,
                    other,
                    row.id(),
                    observation.price,
                    observation.observed_at,
                );
                let signature = price_oracle::signed::SignatureEntry {
                    signer: entry.signer,
                    signature: entry.signature,
                };
                assert!(signature.verify(digest).is_err());
            }
        }
        assert_eq!(
            total(&nodes, |m| m.prices_stored.get_pair(pair)),
            4,
            "{pair}"
        );
        assert_eq!(
            total(&nodes, |m| m.prices_originated.get_pair(pair)),
            4,
            "{pair}"
        );
    }
    // The API hands each stored price's committed report to consumers: the crate's on-chain
    // report of the row, with the row's own commits.
    let mut reports = 0;
    for pair in ["ETH/USD", "BTC/USD"] {
        let (code, body) = get(&format!("{api}/prices?pair={pair}")).await;
        assert_eq!(code, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        let prices = page["prices"].as_array().unwrap();
        assert_eq!(prices.len(), 4, "{pair}: {body}");
        for price in prices {
            assert_eq!(price["pair"], pair);
            let row = stored
                .iter()
                .find(|row| row.id().to_string() == price["id"].as_str().unwrap())
                .unwrap();
            let on_chain = price_oracle::report::OnChainReport::try_from(&row.report)
                .unwrap_or_else(|why| panic!("row {}: {why}", row.id()));
            assert_eq!(
                price["report"].as_str(),
                Some(alloy_primitives::hex::encode_prefixed(on_chain.encode()).as_str())
            );
            reports += 1;
        }
    }
    assert_eq!(reports, 8);
    // Every stored row, committed per protocol v2, verifies in the EVM with its own commit
    // signatures against the verifier of the network's configuration (members, f = 1), with
    // the row's value as its median.
    let members = addresses(MEMBER_SEEDS);
    let rows: Vec<&price_oracle::signed::Report> = stored.iter().map(|row| &row.report).collect();
    for ((verified, gas), row) in common::evm::relay_rows(&rows, &members, 1)
        .iter()
        .zip(&stored)
    {
        assert_eq!(
            verified.median,
            row.report.value().unwrap().e8(),
            "the contract's median is the row's value"
        );
        assert_eq!(verified.id, row.id());
        println!("a stored row verifies on chain: {gas} gas");
    }
    // The same rows, altered after their commit, do not: another median, another row's
    // observations, fewer commit signatures than f + 1.
    use common::evm::{Chain, VerifierArgs, committed_row};
    let mut chain = Chain::new(common::evm::CHAIN_ID);
    let verifier = chain
        .deploy_verifier(&VerifierArgs::new(&members, 1))
        .unwrap();
    let mut refusal = |report: &common::evm::CommittedReport| {
        chain.verify(verifier, &report.encode()).unwrap_err().name
    };
    let row = committed_row(&stored[0].report);
    let mut tampered = row.clone();
    tampered.median += 1;
    assert_eq!(refusal(&tampered), "NotMember");
    // Another row's observations: one whose set differs (two rounds observed in the same
    // second at the same price by the same members commit to the same observations).
    let mut swapped = row.clone();
    swapped.observations = stored
        .iter()
        .map(|other| committed_row(&other.report).observations)
        .find(|observations| *observations != row.observations)
        .expect("some stored round was observed at another time or price");
    assert_eq!(refusal(&swapped), "NotMember");
    let mut short = row.clone();
    short.signatures.truncate(1);
    assert_eq!(refusal(&short), "TooFewSignatures");
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_ten_percent_off_gets_no_cosignatures() {
    let cluster = Cluster::new("deviant").await;
    let deviant = testkit::mock_exchange("3300").await;
    let mut nodes = cluster.start(1..=4).await;
    let mut liar = cluster.settings(5);
    liar.fetch_from(&deviant);
    let liar = TestNode::start(liar).await;
    let liar_address = liar.address;
    let liar_metrics = liar.metrics.clone();
    nodes.push(liar);

    cluster.wait_rows(4, Duration::from_secs(90)).await;
    wait_for(
        "the liar's price to be refused by all",
        Duration::from_secs(20),
        async || {
            total(&nodes[..4], |m| {
                m.cosign_refused(CosignRefusal::Deviation).get()
            }) >= 4
        },
    )
    .await;
    // Give the liar's price every chance to be (wrongly) stored.
    holds_for("only the honest rows", Duration::from_secs(3), async || {
        cluster.rows().await.len() == 4
    })
    .await;
    let stored = cluster.rows().await;
    assert!(
        stored
            .iter()
            .all(|row| row.report.round.origin != liar_address)
    );
    assert!(
        stored
            .iter()
            .all(|row| row.row.price == Decimal::from(3000))
    );
    assert!(
        stored.iter().all(|row| !row.signed_by(&liar_address)),
        "the liar co-signed nobody: the honest prices are 9 % off its own"
    );
    assert_eq!(liar_metrics.prices_cosigned.get(), 0);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_while_running_counts_and_a_removed_one_stops_counting() {
    let cluster = Cluster::with_members("membership", 1..=3).await;
    let nodes = cluster
        .start_with(1..=4, |settings| {
            settings.trigger.heartbeat = Duration::from_secs(2)
        })
        .await;
    let newcomer = nodes[3].address;
    cluster.wait_rows(6, Duration::from_secs(90)).await;
    assert!(
        cluster
            .rows()
            .await
            .iter()
            .all(|row| !row.signed_by(&newcomer)),
        "a non-member neither originates nor co-signs a stored row"
    );

    let store = Store::connect(&cluster.db.settings()).await.unwrap();
    store.add_signer(&newcomer, "node4").await.unwrap();
    let added_at = Instant::now();
    wait_for(
        "the new member's price stored",
        Duration::from_secs(15),
        async || {
            cluster
                .rows()
                .await
                .iter()
                .any(|row| row.report.round.origin == newcomer)
        },
    )
    .await;
    println!(
        "a new member's price was stored {:?} after `signers add`",
        added_at.elapsed()
    );

    let removed = nodes[1].address;
    store.remove_signer(&removed).await.unwrap();
    // Within a heartbeat every node has read the shorter list; prices observed after that
    // must not carry the removed member's signature.
    wait_for(
        "every node to read the list without it",
        Duration::from_secs(10),
        async || nodes.iter().all(|node| node.metrics.members.get() == 3),
    )
    .await;
    let cutoff = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let after_removal = async || -> Vec<Stored> {
        cluster
            .rows()
            .await
            .into_iter()
            .filter(|row| row.observed_at() > cutoff)
            .collect()
    };
    wait_for(
        "prices after the removal",
        Duration::from_secs(30),
        async || after_removal().await.len() >= 4,
    )
    .await;
    for row in after_removal().await {
        assert!(
            !row.signed_by(&removed),
            "row {} still counts the removed member",
            row.id()
        );
        // Three members now: f = 0, and the quorum below (2f + 1 of the members at the row's
        // time) is what `oracle verify` checks.
    }
    // `oracle verify`'s rule: every row had its quorum of members at its observation time.
    let rules = price_oracle::audit::AuditRules {
        deployment: Deployment::default(),
        counted: price_oracle::audit::Counted::Members(store.signers().await.unwrap()),
        network: None,
    };
    for row in store.prices_page(None, None, 1000).await.unwrap() {
        let report = price_oracle::audit::audit_row(&row, &rules, chrono::Utc::now());
        assert_eq!(report.finding, None, "row {}", row.id);
    }
    store.close().await;
    stop_all(nodes).await;
}

/// The first `size` of price `id`'s co-signing order include every one of `silent`.
fn committee_holds_all(
    id: u64,
    origin: &Address,
    members: &[Address],
    size: usize,
    silent: &[Address],
) -> bool {
    let ranked = committee::ranking(id, origin, members);
    silent.iter().all(|member| ranked[..size].contains(member))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_whose_committee_is_down_are_cosigned_by_the_fallback_and_others_by_the_committee_alone()
 {
    // Eight members, configured down to f = 1: a round needs three, its committee is the
    // origin and three co-signers, one more steps in at each fallback.
    let f = FaultBound::new(1);
    let committee_size = CommitteeSettings::size(f);
    let cluster = Cluster::new("committee").await;
    register(&cluster.db, [6, 7, 9]).await;
    let members = addresses((1..=7).chain([9]));
    let deployment = Deployment {
        max_faults: Some(1),
        ..Deployment::default()
    };
    let config = deployment.config_digest(&members, f);
    let fallback = Duration::from_secs(5);
    let mut nodes = cluster
        .start_with(1..=7, |settings| {
            settings.committee = CommitteeSettings::new(fallback);
            settings.deployment = deployment.clone();
        })
        .await;
    // The origin: member 9, speaking raw gossip, so the test picks which ids it publishes.
    let (origin, _, mut heard) =
        Peer::start_listening(9, vec![cluster.boot_addr.clone()], |_| {}).await;
    let mut watcher = origin.handle.clone();
    watcher.wait_for_peers(3).await;
    cluster.wait_rows(7, Duration::from_secs(90)).await;
    // Two members go down: members 6 and 7.
    let down: Vec<TestNode> = nodes.split_off(5);
    let silent = addresses_of(&down);
    stop_all(down).await;
    let origin_address = origin.identity.address();
    // Prices whose committee holds both silent members (one live co-signer: no quorum without
    // the fallback), and prices whose committee holds neither.
    let mut stranded = Vec::new();
    let mut served = Vec::new();
    let mut at = SystemTime::now();
    while stranded.len() < 3 || served.len() < 3 {
        at += Duration::from_millis(10);
        let price = price_by(config, &origin.identity, at, "3000");
        let id = price.data.id;
        if committee_holds_all(id, &origin_address, &members, committee_size, &silent) {
            if stranded.len() < 3 {
                stranded.push(price);
            }
        } else if !committee::ranking(id, &origin_address, &members)[..committee_size]
            .iter()
            .any(|member| silent.contains(member))
            && served.len() < 3
        {
            served.push(price);
        }
    }
    // Its rounds' reports too, as an origin's node makes them (drained of what came before).
    while heard.try_recv().is_ok() {}
    let published: Vec<PriceMessage> = stranded.iter().chain(&served).cloned().collect();
    for price in &published {
        origin.handle.publish(Gossip::Price(price.clone()));
    }
    let quorum = f.quorum();
    let reporter = {
        let handle = origin.handle.clone();
        let identity = origin.identity.clone();
        tokio::spawn(async move {
            report_rounds(
                &mut heard,
                &handle,
                &identity,
                &published,
                quorum,
                Duration::from_secs(60),
            )
            .await;
        })
    };
    let wanted: HashSet<u64> = stranded.iter().chain(&served).map(|p| p.data.id).collect();
    wait_for(
        "all six prices stored",
        Duration::from_secs(60),
        async || {
            let stored: HashSet<u64> = cluster.rows().await.iter().map(Stored::id).collect();
            wanted.is_subset(&stored)
        },
    )
    .await;
    reporter.abort();
    let stored = cluster.rows().await;
    let signers_ranked = |id: u64| -> Vec<usize> {
        let ranked = committee::ranking(id, &origin_address, &members);
        let row = stored.iter().find(|row| row.id() == id).unwrap();
        row.report
            .signers()
            .filter(|signer| *signer != origin_address)
            .map(|signer| ranked.iter().position(|m| *m == signer).unwrap())
            .collect()
    };
    // A stranded price needs a co-signer from outside its committee; a served one gets none.
    for (kind, prices, needs_fallback) in
        [("stranded", &stranded, true), ("served", &served, false)]
    {
        for price in prices {
            let id = price.data.id;
            let ranks = signers_ranked(id);
            println!("{kind} price {id}: co-signed by ranks {ranks:?}");
            assert_eq!(
                ranks.iter().any(|rank| *rank >= committee_size),
                needs_fallback,
                "{kind} price {id}: co-signed by ranks {ranks:?} (committee: ranks below {committee_size})"
            );
        }
    }
    assert_rows_verify(&stored, 3, &members);
    let stepped_in = total(&nodes, |m| m.fallback(FallbackOutcome::SteppedIn).get());
    assert!(
        stepped_in >= 3,
        "fallback co-signers stepped in {stepped_in} times"
    );
    stop_all(nodes).await;
    drop(origin);
}
