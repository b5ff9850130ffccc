//! Whole networks in one process: real libp2p over TCP on 127.0.0.1, a real PostgreSQL database
//! per test, the mock exchange, and intervals of seconds.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use common::cluster::{Cluster, MEMBER_SEEDS, register};
use libp2p::Multiaddr;
use price_oracle::cosign::{CommitteeSettings, CosignRefusal, FallbackOutcome, committee};
use price_oracle::labels::Limit;
use price_oracle::message::{Attestation, Gossip, GossipKind};
use price_oracle::metrics::Metrics;
use price_oracle::mock_exchange::Fault;
use price_oracle::network::ConnectionBounds;
use price_oracle::network::validation::RefusalReason;
use price_oracle::node::NodeEvent;
use price_oracle::pair::{Pair, PairSet};
use price_oracle::signed::price_digest;
use price_oracle::store::Store;
use price_oracle::testkit::TestDb;
use price_oracle::testkit::{
    self, Peer, Stored, TestNode, addresses, addresses_of, assert_rows_verify, holds_for, identity,
    price_by, stop_all, total, wait_for,
};
use price_oracle::trigger::Reason;
use price_oracle::writer::FlushResult;
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

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

fn ignored(nodes: &[TestNode], reason: RefusalReason) -> u64 {
    total(nodes, |m| m.ignored(reason).get())
}

fn rejected(nodes: &[TestNode], reason: RefusalReason) -> u64 {
    total(nodes, |m| m.rejected(reason).get())
}

/// Messages of `kind` the nodes published.
fn published(nodes: &[TestNode], kind: GossipKind) -> u64 {
    total(nodes, |m| m.published(kind).get())
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
    let cluster = Cluster::new("two_pairs").await;
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
                let digest =
                    price_digest(other, row.id(), observation.price, observation.observed_at);
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
    // Every stored row, as the API hands it to consumers, verifies in the EVM against a
    // verifier deployed with the members and the quorum, with the row's price as its median.
    let members = addresses(MEMBER_SEEDS);
    let mut reports = Vec::new();
    let mut medians = Vec::new();
    for pair in ["ETH/USD", "BTC/USD"] {
        let (code, body) = get(&format!("{api}/prices?pair={pair}")).await;
        assert_eq!(code, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        let prices = page["prices"].as_array().unwrap();
        assert_eq!(prices.len(), 4, "{pair}: {body}");
        for price in prices {
            assert_eq!(price["pair"], pair);
            let report = price["report"].as_str().unwrap();
            reports.push(alloy_primitives::hex::decode(report).unwrap());
            medians.push(price["price_e8"].as_str().unwrap().parse::<i64>().unwrap());
        }
    }
    let verified = common::evm::verify_all(&reports, &members, 3);
    for ((verified, gas), median) in verified.iter().zip(&medians) {
        assert_eq!(
            verified.median, *median,
            "the contract's median is the row's price"
        );
        println!("a stored report verifies on chain: {gas} gas");
    }
    // The same stored rows, altered, do not: a tampered observation, another round's
    // observation, a verifier that does not count one of the signers, a quorum above them.
    use common::evm::Verifier;
    use price_oracle::report::OnChainReport;
    let row = OnChainReport::decode(&reports[0]).unwrap();
    let other = OnChainReport::decode(&reports[1]).unwrap();
    let refusal = |verifier: &mut Verifier, report: &OnChainReport| {
        verifier.verify(&report.encode()).unwrap_err().name
    };
    let mut verifier = Verifier::deploy_verifier(&members, 3).unwrap();
    let mut tampered = row.clone();
    tampered.observations[0].price_e8 += 1;
    assert_eq!(refusal(&mut verifier, &tampered), "NotMember");
    let mut swapped = row.clone();
    swapped.observations[1] = other.observations[1];
    assert_eq!(refusal(&mut verifier, &swapped), "NotMember");
    let one_signer = stored
        .iter()
        .find(|stored| stored.id() == row.id)
        .map(|stored| stored.report.observations[0].signer)
        .unwrap();
    let others: Vec<Address> = members
        .iter()
        .filter(|member| **member != one_signer)
        .copied()
        .collect();
    let mut without_one = Verifier::deploy_verifier(&others, 3).unwrap();
    assert_eq!(refusal(&mut without_one, &row), "NotMember");
    let mut five = Verifier::deploy_verifier(&members, 5).unwrap();
    assert_eq!(refusal(&mut five, &row), "BelowQuorum");
    let mut short = row.clone();
    short.observations.truncate(2);
    assert_eq!(refusal(&mut verifier, &short), "BelowQuorum");
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
async fn an_outsider_with_valid_signatures_forgeries_and_replays_gets_nothing_stored() {
    let cluster = Cluster::new("attack").await;
    let nodes = cluster
        .start_with(1..=4, |settings| {
            settings.trigger.heartbeat = Duration::from_secs(2)
        })
        .await;
    // One libp2p peer with two more keys that never ran a node: three valid signatures.
    let (attacker, _) = Peer::start(66, vec![cluster.boot_addr.clone()]).await;
    let offline = [identity(67), identity(68)];
    let mut watcher = attacker.handle.clone();
    watcher.wait_for_peers(3).await;
    cluster.wait_rows(4, Duration::from_secs(60)).await;

    let now = SystemTime::now();
    let outsider = price_by(&attacker.identity, now, "1");
    attacker.handle.publish(Gossip::Price(outsider.clone()));
    for key in &offline {
        attacker
            .handle
            .publish(Gossip::Attestation(Attestation::sign(
                &outsider.data,
                key.signer(),
            )));
    }
    // A price "co-signed" by three honest nodes — signatures the attacker made itself.
    let mut forged = price_by(&attacker.identity, now, "3000");
    for node in &nodes[..3] {
        let mut fake = forged.data.sign(attacker.identity.signer());
        fake.signer = node.address;
        forged.signatures.push(fake);
    }
    attacker.handle.publish(Gossip::Price(forged));
    // A validly signed member price from an hour ago, and garbage.
    let replayed = price_by(&identity(1), now - Duration::from_secs(3600), "3000");
    attacker.handle.publish(Gossip::Price(replayed));
    attacker
        .handle
        .publish_raw(b"{\"type\":\"price\",\"body\":\"garbage\"}".to_vec());

    // The attacker publishes to its mesh peers only, and a refused message is not forwarded:
    // the honest nodes it reached refuse each message, and nobody else ever sees it.
    wait_for(
        "the honest nodes to refuse every kind",
        Duration::from_secs(20),
        async || {
            ignored(&nodes, RefusalReason::NotMember) >= 3
                && ignored(&nodes, RefusalReason::TooOld) >= 1
                && rejected(&nodes, RefusalReason::ExtraSignatures) >= 1
                && rejected(&nodes, RefusalReason::Malformed) >= 1
        },
    )
    .await;
    let before = cluster.rows().await.len();
    cluster.wait_rows(before + 4, Duration::from_secs(30)).await;
    let attacker_keys: HashSet<Address> = offline
        .iter()
        .map(|key| key.address())
        .chain([attacker.identity.address()])
        .collect();
    assert!(cluster.rows().await.iter().all(|row| {
        row.row.price == Decimal::from(3000)
            && row
                .report
                .signers()
                .all(|signer| !attacker_keys.contains(&signer))
    }));
    assert_eq!(ignored(&nodes, RefusalReason::FromFuture), 0);
    stop_all(nodes).await;
}

/// Members 1–4 read 3000 from their exchange; member 5 reads `liar_price` from its own. A
/// `stubborn` liar takes part in every round whatever the origin saw (`--max-deviation` 100 %),
/// as a member that means to lie would. Every stored value is the median of its observations
/// (recomputed here, by `oracle verify`'s rule and by the contract), and stays 3000.
async fn one_member_lies(label: &str, liar_price: &str, stubborn: bool) -> Vec<Stored> {
    let cluster = Cluster::new(label).await;
    let liar_exchange = testkit::mock_exchange(liar_price).await;
    let every_3s = |settings: &mut price_oracle::node::NodeSettings| {
        settings.trigger.heartbeat = Duration::from_secs(3);
    };
    let mut nodes = cluster.start_with(1..=4, every_3s).await;
    let liar = cluster
        .start_with([5], |settings| {
            every_3s(settings);
            settings.fetch_from(&liar_exchange);
            if stubborn {
                settings.trigger.max_deviation = Decimal::ONE;
            }
        })
        .await;
    let liar_address = liar[0].address;
    nodes.extend(liar);
    cluster.wait_rows(12, Duration::from_secs(120)).await;
    let stored = cluster.rows().await;
    assert_rows_verify(&stored, 3, &addresses_of(&nodes));
    // A flat market: the honest members start no round on a move. The liar's view stays apart
    // from every value, which its rounds do not move: it starts one round on it, not one per
    // observation (an observation a second, a value every 2–3 s here).
    let moves = |node: &TestNode| {
        node.metrics
            .round_started(Pair::EthUsd, Reason::Deviation)
            .get()
    };
    for node in &nodes[..4] {
        assert_eq!(moves(node), 0, "an honest member started a round on a move");
    }
    let liar_moves = moves(&nodes[4]);
    println!("the liar started {liar_moves} rounds on its view of a move");
    assert!(
        liar_moves <= 1,
        "the liar started {liar_moves} rounds on its view"
    );
    let honest = Decimal::from(3000);
    for row in &stored {
        // What the closing notes quote: each stored value beside the observations it is the
        // median of.
        let observations: Vec<String> = row
            .report
            .observations
            .iter()
            .map(|entry| {
                let tag = if entry.signer == liar_address {
                    " (liar)"
                } else {
                    ""
                };
                format!("{}{tag}", entry.observation.price)
            })
            .collect();
        println!(
            "row {} origin {}: stored {} = median of [{}]",
            row.id(),
            if row.report.round.origin == liar_address {
                "liar"
            } else {
                "honest"
            },
            row.row.price,
            observations.join(", ")
        );
        assert_eq!(
            row.row.price,
            honest,
            "row {} carries {} from {:?}",
            row.id(),
            row.row.price,
            row.report.observations
        );
    }
    let reports: Vec<Vec<u8>> = stored
        .iter()
        .map(|row| price_oracle::report::OnChainReport::from(&row.report).encode())
        .collect();
    for (verified, _) in common::evm::verify_all(&reports, &addresses(MEMBER_SEEDS), 3) {
        assert_eq!(verified.median, 300_000_000_000, "the contract's median");
    }
    let lies = stored
        .iter()
        .filter(|row| row.observation_of(&liar_address).is_some())
        .count();
    println!(
        "{} rows, {lies} carrying the liar's observation of {liar_price}, every one stored at 3000",
        stored.len()
    );
    stop_all(nodes).await;
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_reading_nine_tenths_of_a_percent_high_cannot_move_the_prices_it_starts() {
    let liar = identity(5).address();
    let stored = one_member_lies("liar_close", "3027", false).await;
    // Inside --max-deviation the honest members take part in its rounds, and outvote it there.
    let its_rounds: Vec<&Stored> = stored
        .iter()
        .filter(|row| row.report.round.origin == liar)
        .collect();
    assert!(
        !its_rounds.is_empty(),
        "none of the liar's rounds was stored"
    );
    for row in its_rounds {
        let lie = row
            .observation_of(&liar)
            .expect("the origin's own observation");
        assert_eq!(lie.observation.price.to_string(), "3027.00000000");
        assert_eq!(row.row.price, Decimal::from(3000));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_lying_by_half_in_every_round_neither_moves_nor_blocks_a_price() {
    let liar = identity(5).address();
    let stored = one_member_lies("liar_far", "1500", true).await;
    // It signs its lie into the honest rounds, which are stored at the honest value anyway;
    // its own rounds are far from what the others see, so nobody joins them.
    assert!(
        stored
            .iter()
            .any(|row| row.observation_of(&liar).is_some_and(|lie| lie
                .observation
                .price
                .to_string()
                == "1500.00000000")),
        "the liar's observation reached no stored row"
    );
    assert!(stored.iter().all(|row| row.report.round.origin != liar));
}

/// Three outsiders run complete nodes, with a database of their own where they are members,
/// inside the honest network.
async fn outsider_nodes_attack(label: &str, outsider_price: &str) {
    let cluster = Cluster::new(label).await;
    let outsider_source = testkit::mock_exchange(outsider_price).await;
    let outsider_db = TestDb::create(&format!("{label}_own")).await;
    Store::migrate(&outsider_db.settings()).await.unwrap();
    register(&outsider_db, 11..=13).await;
    let honest = cluster.start(1..=4).await;
    let outsiders = cluster
        .start_with(11..=13, |settings| {
            settings.fetch_from(&outsider_source);
            settings.db = outsider_db.settings();
        })
        .await;
    cluster.wait_rows(4, Duration::from_secs(90)).await;
    wait_for(
        "the outsiders' prices to reach the honest nodes",
        Duration::from_secs(20),
        async || ignored(&honest, RefusalReason::NotMember) >= 3,
    )
    .await;
    holds_for(
        "nothing of theirs stored",
        Duration::from_secs(3),
        async || cluster.rows().await.len() == 4,
    )
    .await;
    let outsider_addresses = addresses_of(&outsiders);
    assert!(cluster.rows().await.iter().all(|row| {
        outsider_addresses
            .iter()
            .all(|outsider| !row.signed_by(outsider))
    }));
    assert_eq!(
        total(&honest, |m| m.prices_cosigned.get()),
        12,
        "each honest node co-signed the 3 other honest prices and no outsider's"
    );
    stop_all(honest).await;
    stop_all(outsiders).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsider_nodes_at_a_price_of_one_get_nothing_stored() {
    outsider_nodes_attack("outsiders_one", "1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsider_nodes_inside_the_deviation_get_no_cosignatures() {
    outsider_nodes_attack("outsiders_close", "3000").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_squatting_cannot_block_a_members_prices() {
    let cluster = Cluster::new("squat").await;
    // Room for every junk entry, so that the squatting itself (not the per-signer bound) is
    // what this test is about.
    let roomy = |settings: &mut price_oracle::node::NodeSettings| {
        settings.pool.max_pending_per_signer = 10_000;
    };
    let mut nodes = cluster.start_with(2..=4, roomy).await;
    // The squatter is a member (seed 5) speaking raw gossip: the strongest case.
    let (squatter, _) = Peer::start(5, vec![cluster.boot_addr.clone()]).await;
    let mut watcher = squatter.handle.clone();
    watcher.wait_for_peers(3).await;
    cluster.wait_rows(3, Duration::from_secs(90)).await;
    let victim_node = cluster.start_with([1], roomy).await;
    let victim_metrics = victim_node[0].metrics.clone();
    nodes.extend(victim_node);
    // Squat once the victim is about to run, so that its next seconds of prices fall in the
    // squatted window even on a loaded machine.
    wait_for("the victim to join", Duration::from_secs(30), async || {
        victim_metrics.connected_peers.get() >= 3
    })
    .await;
    // The victim's ids are predictable: its machine bits, each 10 ms tick, sequence 0. The
    // squatter keeps signing junk under every tick of the next seconds (within the clock skew
    // peers accept), before the victim mints them, until the victim has prices stored: a
    // rolling window, so a victim delayed on a loaded machine still mints inside it.
    let victim = identity(1);
    let victims_rows = async || -> Vec<u64> {
        cluster
            .rows()
            .await
            .iter()
            .filter(|row| row.report.round.origin == victim.address())
            .map(Stored::id)
            .collect()
    };
    let mut squatted = HashSet::new();
    let mut squatted_until = SystemTime::now();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut asked = Instant::now();
    while victims_rows().await.len() < 6 {
        // A round from the victim every second.
        if asked.elapsed() >= Duration::from_secs(1) {
            nodes[3].node.originate_now();
            asked = Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for 6 of the victim's prices"
        );
        let horizon = SystemTime::now() + Duration::from_secs(5);
        while squatted_until < horizon {
            let junk = price_by(&victim, squatted_until, "1").data;
            squatted.insert(junk.id);
            squatter
                .handle
                .publish(Gossip::Attestation(Attestation::sign(
                    &junk,
                    squatter.identity.signer(),
                )));
            squatted_until += Duration::from_millis(10);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Every price the victim has minted so far gets stored. The grace is generous: on a loaded
    // machine the last ones may still be gathering co-signatures; a blocked price never would.
    let originated = victim_metrics.prices_originated.get();
    wait_for(
        "every price the victim minted stored",
        Duration::from_secs(30),
        async || victims_rows().await.len() as u64 >= originated,
    )
    .await;
    let stored = victims_rows().await;
    let hit = stored.iter().filter(|id| squatted.contains(id)).count();
    println!("{hit} of the victim's stored prices had ids the squatter signed junk under first");
    assert!(
        hit >= 1,
        "the squatter's window covered none of the victim's prices"
    );
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_republished_by_another_peer_still_reaches_quorum_everywhere() {
    let cluster = Cluster::new("poison").await;
    let nodes = cluster.start(1..=4).await;
    let (relay, _) = Peer::start(66, vec![cluster.boot_addr.clone()]).await;
    let mut watcher = relay.handle.clone();
    watcher.wait_for_peers(3).await;
    cluster.wait_rows(4, Duration::from_secs(60)).await;
    // Member 5's genuine price, first heard from a stranger's peer id.
    let genuine = price_by(&identity(5), SystemTime::now(), "3000");
    relay.handle.publish(Gossip::Price(genuine.clone()));
    wait_for(
        "the genuine price stored",
        Duration::from_secs(20),
        async || {
            cluster
                .rows()
                .await
                .iter()
                .any(|row| row.id() == genuine.data.id)
        },
    )
    .await;
    wait_for(
        "every node to verify it",
        Duration::from_secs(10),
        async || {
            nodes
                .iter()
                .all(|node| node.metrics.prices_verified.get() >= 5)
        },
    )
    .await;
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_garbage_and_outsider_messages_leaves_prices_flowing_and_memory_bounded() {
    let cluster = Cluster::new("flood").await;
    // One node takes few inbound connections, so the flood's connections hit the bound; every
    // node cuts off a peer after 40 refused messages in a minute.
    let nodes = cluster
        .start_with(1..=4, |settings| {
            settings.trigger.heartbeat = Duration::from_secs(2);
            settings.network.max_refused_per_peer = 40;
            if settings.name == "node1" {
                settings.network.connections.max_inbound = 6;
            }
        })
        .await;
    cluster.wait_rows(4, Duration::from_secs(60)).await;
    // Twenty attacking peers, each with its own key, each sending 250 messages: garbage,
    // outsider prices and outsider attestations on members' prices.
    let mut attackers = Vec::new();
    for seed in 30..50u8 {
        attackers.push(Peer::start(seed, vec![cluster.boot_addr.clone()]).await.0);
    }
    let member = identity(2);
    let before = cluster.rows().await.len();
    let flood_started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (n, attacker) in attackers.iter().enumerate() {
        let mut watcher = attacker.handle.clone();
        watcher.wait_for_peers(1).await;
        for i in 0..250u64 {
            let at = SystemTime::now() + Duration::from_millis(i * 10);
            match i % 3 {
                0 => attacker.handle.publish_raw(
                    format!("{{\"type\":\"garbage\",\"n\":{n},\"i\":{i}}}").into_bytes(),
                ),
                1 => attacker
                    .handle
                    .publish(Gossip::Price(price_by(&attacker.identity, at, "1"))),
                _ => attacker
                    .handle
                    .publish(Gossip::Attestation(Attestation::sign(
                        &price_by(&member, at, "3000").data,
                        attacker.identity.signer(),
                    ))),
            }
        }
    }
    cluster.wait_rows(before + 8, Duration::from_secs(60)).await;
    assert!(
        ignored(&nodes, RefusalReason::NotMember) + rejected(&nodes, RefusalReason::Malformed)
            > 100
    );
    let cut_off = total(&nodes, |m| m.limit_hit_count(Limit::RefusedPerPeer));
    assert!(cut_off > 0, "flooding peers are cut off");
    println!("the honest nodes cut off {cut_off} flooding peers");
    // Every price keeps its quorum (checked below); on two shared cores a co-signature can
    // arrive after the 1 s flush delay, so a full set is reported rather than required.
    let stored = cluster.rows().await;
    let during: Vec<&Stored> = stored
        .iter()
        .filter(|row| row.observed_at() >= flood_started)
        .collect();
    let complete = during
        .iter()
        .filter(|row| row.report.observations.len() == 4)
        .count();
    println!(
        "{complete} of {} prices stored during the flood carry all 4 signatures",
        during.len()
    );
    let refused = nodes[0].metrics.limit_hit_count(Limit::Connections);
    println!("node 1 refused {refused} connections over its limit of 6");
    assert_rows_verify(&stored, 3, &addresses_of(&nodes));
    stop_all(nodes).await;
    drop(attackers);
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
        assert!(row.report.observations.len() >= 3);
    }
    // `oracle verify`'s rule: every row had its quorum of members at its observation time.
    let rules = price_oracle::audit::AuditRules {
        min_signers: 3,
        counted: price_oracle::audit::Counted::Members(store.signers().await.unwrap()),
    };
    for row in store.prices_page(None, None, 1000).await.unwrap() {
        let report = price_oracle::audit::audit_row(&row, &rules);
        assert_eq!(report.finding, None, "row {}", row.id);
    }
    store.close().await;
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_bootstrap_node_dies_prices_flow_and_a_restarted_node_finds_its_way_back() {
    let mut cluster = Cluster::new("noboot").await;
    let every_3s = |settings: &mut price_oracle::node::NodeSettings| {
        settings.trigger.heartbeat = Duration::from_secs(3);
    };
    let mut nodes = cluster.start_with(1..=5, every_3s).await;
    wait_for(
        "a mesh of full nodes",
        Duration::from_secs(30),
        async || {
            nodes
                .iter()
                .all(|node| node.metrics.connected_peers.get() >= 4)
                && cluster.rows().await.len() >= 5
        },
    )
    .await;

    cluster.kill_bootstrap().await;
    let before = cluster.rows().await.len();
    let killed_at = Instant::now();
    cluster.wait_rows(before + 5, Duration::from_secs(30)).await;
    println!(
        "{} more prices stored within {:?} of killing the bootstrap node",
        cluster.rows().await.len() - before,
        killed_at.elapsed()
    );

    // Node 5 restarts on a new random port; its only bootstrap is the dead one. The heartbeat
    // table tells it where the others are.
    let Some(node5) = nodes.pop() else {
        unreachable!("five nodes")
    };
    node5.stop().await;
    let restarted_at = SystemTime::now();
    let node5 = cluster.start_with([5], every_3s).await.remove(0);
    let node5_address = node5.address;
    wait_for(
        "a price of the restarted node stored",
        Duration::from_secs(60),
        async || {
            cluster.rows().await.iter().any(|row| {
                row.report.round.origin == node5_address
                    && UNIX_EPOCH + Duration::from_secs(row.observed_at())
                        >= restarted_at - Duration::from_secs(1)
            })
        },
    )
    .await;
    println!(
        "the restarted node rejoined: {} peers",
        node5.metrics.connected_peers.get()
    );
    nodes.push(node5);
    assert_rows_verify(&cluster.rows().await, 3, &addresses_of(&nodes));
    stop_all(nodes).await;
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A scrape in the Prometheus / OpenMetrics text format: every line is a comment or
/// `name{labels} value` with a numeric value, and it ends with `# EOF`.
fn parse_exposition(text: &str) -> Vec<(String, f64)> {
    assert_eq!(
        text.lines().last(),
        Some("# EOF"),
        "the exposition ends with # EOF"
    );
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            let name = series.split('{').next().unwrap();
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name in {line}"
            );
            assert_eq!(
                series.matches('{').count(),
                series.matches('}').count(),
                "{line}"
            );
            (
                series.to_owned(),
                value.parse::<f64>().unwrap_or_else(|_| panic!("{line}")),
            )
        })
        .collect()
}

fn value(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(name, _)| name == series)
        .map_or(0.0, |(_, value)| *value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_report_health_status_and_moving_metrics() {
    let cluster = Cluster::new("http").await;
    let others = cluster.start(2..=4).await;
    // The observed node reaches the database through a proxy that can be cut.
    let proxy = common::Proxy::start(common::socket_of(&cluster.db.url).await).await;
    let mut settings = cluster.settings(1);
    settings.db = price_oracle::testkit::settings_for(&proxy.url_through(&cluster.db.url));
    settings.db.timeout = Duration::from_millis(500);
    settings.http = Some("127.0.0.1:0".parse().unwrap());
    let node = TestNode::start(settings).await;
    let base = format!("http://{}", node.node.http_addr.unwrap());

    let (code, first) = get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    let before = parse_exposition(&first);

    wait_for("a healthy node", Duration::from_secs(30), async || {
        get(&format!("{base}/health")).await.0 == 200
    })
    .await;
    cluster.wait_rows(4, Duration::from_secs(90)).await;
    let (code, status) = get(&format!("{base}/status")).await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["name"], "node1");
    assert_eq!(status["database"], "ok");
    assert!(status["connected_peers"].as_u64().unwrap() >= 3);
    assert!(
        status["listen_addrs"][0]
            .as_str()
            .unwrap()
            .contains("/p2p/16Uiu2")
    );
    assert_eq!(
        status["last_observations"]["ETH/USD"]["price"],
        "3000.00000000"
    );
    // Test nodes have one source: the mock, as Coinbase.
    assert_eq!(status["last_observations"]["ETH/USD"]["sources"], 1);
    let source = &status["sources"][0];
    assert_eq!(source["source"], "coinbase", "{status}");
    assert_eq!(source["state"], "ok", "{status}");
    assert_eq!(source["last_quote"]["ETH/USD"], "3000.00000000", "{status}");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    for field in [
        "address",
        "peer_id",
        "is_writer",
        "pool",
        "uptime_seconds",
        "last_stored_id",
        "problems",
    ] {
        assert!(status.get(field).is_some(), "/status has {field}: {status}");
    }

    let (_, text) = get(&format!("{base}/metrics")).await;
    let after = parse_exposition(&text);
    for series in [
        "oracle_prices_originated_total{pair=\"ETH/USD\"}",
        "oracle_prices_cosigned_total{pair=\"ETH/USD\"}",
        "oracle_prices_verified_total{pair=\"ETH/USD\"}",
        "oracle_publishes_total{kind=\"attestation\"}",
        "oracle_messages_received_total{kind=\"price\"}",
        "oracle_db_statements_total{kind=\"heartbeat\"}",
        "oracle_quorum_seconds_count",
        "oracle_source_fetch_seconds_count{source=\"coinbase\"}",
    ] {
        assert!(
            value(&after, series) > value(&before, series),
            "{series} did not move: {} -> {}",
            value(&before, series),
            value(&after, series)
        );
    }
    for name in [
        "libp2p_gossipsub",
        "libp2p_kad",
        "libp2p_identify",
        "libp2p_swarm",
        "oracle_lease_writer",
    ] {
        assert!(
            after.iter().any(|(series, _)| series.starts_with(name)),
            "no {name} metrics"
        );
    }

    proxy.cut();
    wait_for(
        "/health to report the database",
        Duration::from_secs(15),
        async || {
            let (code, body) = get(&format!("{base}/health")).await;
            code == 503 && body.contains("database")
        },
    )
    .await;
    proxy.restore().await;
    wait_for("/health to recover", Duration::from_secs(15), async || {
        get(&format!("{base}/health")).await.0 == 200
    })
    .await;

    // Price sources that keep failing make the node unhealthy, and it recovers with them.
    cluster.exchange.set_faults(1.0, &[Fault::ServerError]);
    wait_for(
        "/health to report the price sources",
        Duration::from_secs(15),
        async || {
            node.node.originate_now();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (code, body) = get(&format!("{base}/health")).await;
            code == 503 && body.contains("price fetches failed")
        },
    )
    .await;
    cluster.exchange.set_faults(0.0, &[]);
    wait_for(
        "/health to recover with the sources",
        Duration::from_secs(15),
        async || {
            node.node.originate_now();
            tokio::time::sleep(Duration::from_millis(200)).await;
            get(&format!("{base}/health")).await.0 == 200
        },
    )
    .await;

    node.stop().await;
    stop_all(others).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connections_past_the_bound_are_refused_and_counted() {
    let bounds = ConnectionBounds {
        max_inbound: 3,
        max_per_peer: 1,
    };
    let (hub, hub_addr) =
        Peer::start_with(100, vec![], |settings| settings.connections = bounds).await;
    let mut spokes = Vec::new();
    for seed in 30..38u8 {
        spokes.push(Peer::start(seed, vec![hub_addr.clone()]).await.0);
    }
    let refused = || hub.metrics.limit_hit_count(Limit::Connections);
    wait_for("refused connections", Duration::from_secs(15), async || {
        refused() >= 5
    })
    .await;
    assert!(
        hub.handle.connected_peers() <= 3,
        "{} peers connected past a bound of 3",
        hub.handle.connected_peers()
    );
    drop((spokes, hub));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_network_takes_only_nodes_with_its_swarm_key() {
    let cluster = Cluster::new("psk").await;
    let key = price_oracle::network::transport::generate_psk();
    let (private_boot, private_addr) =
        Peer::start_with(101, vec![], |settings| settings.psk = Some(key)).await;
    let mut nodes = cluster
        .start_with(1..=4, |settings| {
            settings.network.bootstrap = vec![private_addr.clone()];
            settings.network.psk = Some(key);
        })
        .await;
    // A member, even, but without the key: it never gets onto the transport.
    let keyless = cluster
        .start_with([5], |settings| {
            settings.network.bootstrap = vec![private_addr.clone()]
        })
        .await
        .remove(0);
    cluster.wait_rows(4, Duration::from_secs(90)).await;
    let stored = cluster.rows().await;
    for node in &nodes {
        assert!(
            stored.iter().all(|row| row.signed_by(&node.address)),
            "every node with the key joined and signed every price"
        );
    }
    assert_eq!(keyless.metrics.connected_peers.get(), 0);
    assert!(stored.iter().all(|row| !row.signed_by(&keyless.address)));
    nodes.push(keyless);
    stop_all(nodes).await;
    drop(private_boot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_stops_within_its_budget_while_the_database_hangs() {
    let cluster = Cluster::new("stop_hang").await;
    let proxy = common::Proxy::start(common::socket_of(&cluster.db.url).await).await;
    let mut settings = cluster.settings(1);
    // A database timeout far longer than the stop budget: a stop that waited on the database
    // would take at least this long.
    settings.db = price_oracle::testkit::settings_for(&proxy.url_through(&cluster.db.url));
    settings.db.timeout = Duration::from_secs(15);
    settings.min_peers = 0;
    let node = TestNode::start(settings).await;
    wait_for(
        "the node to hold the lease",
        Duration::from_secs(30),
        async || node.metrics.lease_writer.get() == 1,
    )
    .await;
    proxy.stall();
    // A heartbeat starts, and hangs.
    let heartbeats = || {
        Metrics::counter(
            &node.metrics.db_statements,
            price_oracle::metrics::StatementLabel { kind: "heartbeat" },
        )
        .get()
    };
    let stalled_at = heartbeats();
    wait_for("a heartbeat to hang", Duration::from_secs(5), async || {
        heartbeats() > stalled_at
    })
    .await;
    let started = Instant::now();
    node.stop().await;
    let took = started.elapsed();
    println!("stopped in {took:?} with the database hanging");
    assert!(took < Duration::from_secs(5), "the stop took {took:?}");
    proxy.resume();
}

/// Ids every node has seen reach the quorum so far.
fn drain_verified(
    events: &mut [tokio::sync::broadcast::Receiver<NodeEvent>],
    verified: &mut HashSet<u64>,
) {
    for receiver in events {
        while let Ok(event) = receiver.try_recv() {
            if let NodeEvent::Verified { report, .. } = event {
                verified.insert(report.round.id);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_every_node_at_once_stores_every_verified_price() {
    let cluster = Cluster::new("full_stop").await;
    // Nothing becomes due during the test: only the stop can store a price.
    let nodes = cluster
        .start_with(1..=4, |settings| {
            settings.pool.flush_delay = Duration::from_secs(600)
        })
        .await;
    let mut events: Vec<_> = nodes.iter().map(|node| node.node.subscribe()).collect();
    let mut verified = HashSet::new();
    // Each node originates once when its database is connected.
    wait_for("the first prices", Duration::from_secs(90), async || {
        drain_verified(&mut events, &mut verified);
        verified.len() >= 4
    })
    .await;
    // More prices, then everybody stops while the last ones are still gathering signatures.
    for _ in 0..3 {
        for node in &nodes {
            node.node.originate_now();
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(cluster.rows().await.is_empty(), "nothing was due yet");
    let writers = addresses_of(&nodes);
    let started = Instant::now();
    stop_all(nodes).await;
    let took = started.elapsed();
    drain_verified(&mut events, &mut verified);
    let stored = cluster.rows().await;
    let stored_ids: HashSet<u64> = stored.iter().map(Stored::id).collect();
    println!(
        "{} prices verified somewhere, {} stored by the stopping nodes in {took:?}",
        verified.len(),
        stored_ids.len()
    );
    let lost: Vec<&u64> = verified.difference(&stored_ids).collect();
    assert!(lost.is_empty(), "verified but lost at the stop: {lost:?}");
    assert_rows_verify(&stored, 3, &writers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_twice_is_counted_once() {
    let (hub, hub_addr) = Peer::start(60, vec![]).await;
    let (mut spoke, _) = Peer::start(61, vec![hub_addr]).await;
    spoke.handle.wait_for_peers(1).await;
    let price = price_by(&identity(2), SystemTime::now(), "3000");
    let attestation = Attestation::sign(&price.data, spoke.identity.signer());
    let sent = || spoke.metrics.published(GossipKind::Attestation).get();
    spoke
        .handle
        .publish(Gossip::Attestation(attestation.clone()));
    wait_for(
        "the first copy to go out",
        Duration::from_secs(20),
        async || sent() == 1,
    )
    .await;
    spoke.handle.publish(Gossip::Attestation(attestation));
    holds_for(
        "one copy sent: a duplicate is not a message",
        Duration::from_millis(500),
        async || sent() == 1,
    )
    .await;
    drop(hub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_healthy_network_the_writer_changes_once_per_term_and_stores_on_time() {
    let cluster = Cluster::new("calm_lease").await;
    let nodes = cluster
        .start_with(1..=5, |settings| {
            settings.trigger.heartbeat = Duration::from_secs(2)
        })
        .await;
    cluster.wait_rows(5, Duration::from_secs(90)).await;
    let writer_sql = Statement::from_string(
        DbBackend::Postgres,
        r#"SELECT node_address FROM heartbeat ORDER BY "timestamp" DESC, node_address DESC LIMIT 1"#,
    );
    let flushes = |outcome| total(&nodes, |m| m.flushed(outcome).get());
    let (stored_before, refused_before) =
        (flushes(FlushResult::Stored), flushes(FlushResult::Refused));
    let rows_before = cluster.rows().await.len();
    let mut writers: Vec<String> = Vec::new();
    let watched = Duration::from_secs(20);
    let started = Instant::now();
    while started.elapsed() < watched {
        if let Ok(Some(row)) = cluster.conn.query_one_raw(writer_sql.clone()).await
            && let Ok(writer) = row.try_get_by_index::<String>(0)
            && writers.last() != Some(&writer)
        {
            writers.push(writer);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let changes = writers.len().saturating_sub(1);
    let stored = flushes(FlushResult::Stored) - stored_before;
    let refused = flushes(FlushResult::Refused) - refused_before;
    // How long after its flush delay (1 s) each price of the watched window was stored.
    let lags: Vec<f64> = cluster
        .conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT extract(epoch FROM created_time - lastsigned_time)::float8 - 1.0 FROM prices \
             ORDER BY id OFFSET 5",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<f64>(0).unwrap())
        .collect();
    let mut sorted = lags.clone();
    sorted.sort_by(f64::total_cmp);
    let p90 = sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)];
    println!(
        "in {watched:?}: {changes} writer changes (term 5 s), {stored} flushes stored, {refused} \
         refused, {} prices; storage lag after the flush delay p90 {p90:.2} s",
        cluster.rows().await.len() - rows_before
    );
    // Four terms; a handover where two nodes take at once counts twice.
    assert!(changes <= 8, "{changes} writer changes in {watched:?}");
    assert!(
        refused * 10 <= stored + refused,
        "{refused} of {} flushes refused",
        stored + refused
    );
    assert!(p90 <= 1.0, "storage lag p90 {p90:.2} s: {sorted:?}");
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_network_dies_stops_and_says_why() {
    let cluster = Cluster::new("network_dies").await;
    let node = cluster
        .start_with([1], |settings| settings.min_peers = 1)
        .await
        .remove(0);
    let mut status = node.node.status.clone();
    let _ = tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|status| status.connected_peers >= 1),
    )
    .await
    .expect("the node connects");
    node.node.crash_network();
    tokio::time::timeout(Duration::from_secs(10), node.node.stopping())
        .await
        .expect("the node stops on its own");
    let err = node.node.stop().await.unwrap_err();
    assert!(err.to_string().contains("network"), "{err:#}");
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
    const COMMITTEE: usize = 3;
    let cluster = Cluster::new("committee").await;
    register(&cluster.db, [6, 7, 9]).await;
    let members = addresses((1..=7).chain([9]));
    let fallback = Duration::from_secs(5);
    let mut nodes = cluster
        .start_with(1..=7, |settings| {
            settings.committee = CommitteeSettings {
                size: COMMITTEE,
                step: 2,
                fallback,
            };
        })
        .await;
    // The origin: member 9, speaking raw gossip, so the test picks which ids it publishes.
    let (origin, _) = Peer::start(9, vec![cluster.boot_addr.clone()]).await;
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
        let price = price_by(&origin.identity, at, "3000");
        let id = price.data.id;
        if committee_holds_all(id, &origin_address, &members, COMMITTEE, &silent) {
            if stranded.len() < 3 {
                stranded.push(price);
            }
        } else if !committee::ranking(id, &origin_address, &members)[..COMMITTEE]
            .iter()
            .any(|member| silent.contains(member))
            && served.len() < 3
        {
            served.push(price);
        }
    }
    for price in stranded.iter().chain(&served) {
        origin.handle.publish(Gossip::Price(price.clone()));
    }
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
                ranks.iter().any(|rank| *rank >= COMMITTEE),
                needs_fallback,
                "{kind} price {id}: co-signed by ranks {ranks:?} (committee: ranks below {COMMITTEE})"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_publishing_on_the_old_topic_name_and_on_the_new_one_hear_each_other() {
    let (new, new_addr) = Peer::start(70, vec![]).await;
    let (mut old, _) = Peer::start_with(71, vec![new_addr], |settings| {
        settings.publish_legacy_topic = true
    })
    .await;
    old.handle.wait_for_peers(1).await;
    let heard = |peer: &Peer| {
        peer.metrics
            .messages_received
            .get_or_create(&price_oracle::metrics::GossipLabel {
                kind: GossipKind::Price,
            })
            .get()
    };
    wait_for(
        "each to hear the other's price",
        Duration::from_secs(20),
        async || {
            // Published again until heard: the mesh forms a moment after the connection.
            old.handle.publish(Gossip::Price(price_by(
                &old.identity,
                SystemTime::now(),
                "3000",
            )));
            new.handle.publish(Gossip::Price(price_by(
                &new.identity,
                SystemTime::now(),
                "3000",
            )));
            tokio::time::sleep(Duration::from_millis(400)).await;
            heard(&old) >= 1 && heard(&new) >= 1
        },
    )
    .await;
}
