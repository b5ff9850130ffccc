//! Attacks from inside and outside: an outsider with valid signatures, forgeries and replays;
//! a member that lies; outsiders running complete nodes; id squatting; a flood of garbage. None
//! gets a price stored or moves a stored value.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use price_oracle::id::IdGenerator;
use price_oracle::labels::Limit;
use price_oracle::message::{Attestation, Gossip, StoredNotice};
use price_oracle::metrics::{Metrics, StatementLabel};
use price_oracle::network::NetworkEvent;
use price_oracle::network::validation::RefusalReason;
use price_oracle::node::NodeEvent;
use price_oracle::pair::Pair;
use price_oracle::store::Store;
use price_oracle::testkit::TestDb;
use price_oracle::testkit::{
    self, Peer, Stored, TestNode, addresses, addresses_of, assert_rows_verify, holds_for, identity,
    price_by, stop_all, total, wait_for, wait_until,
};
use price_oracle::time::unix_seconds;
use price_oracle::trigger::Reason;
use rust_decimal::Decimal;

use crate::common::{
    self,
    cluster::{Cluster, MEMBER_SEEDS, register},
};

fn ignored(nodes: &[TestNode], reason: RefusalReason) -> u64 {
    total(nodes, |m| m.ignored(reason).get())
}

fn rejected(nodes: &[TestNode], reason: RefusalReason) -> u64 {
    total(nodes, |m| m.rejected(reason).get())
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
    let outsider = price_by(cluster.config, &attacker.identity, now, "1");
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
    let mut forged = price_by(cluster.config, &attacker.identity, now, "3000");
    for node in &nodes[..3] {
        let mut fake = forged.data.sign(attacker.identity.signer());
        fake.signer = node.address;
        forged.signatures.push(fake);
    }
    attacker.handle.publish(Gossip::Price(forged));
    // A validly signed member price from an hour ago, and garbage.
    let replayed = price_by(
        cluster.config,
        &identity(1),
        now - Duration::from_secs(3600),
        "3000",
    );
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
    let cluster = Cluster::on_chain(label, MEMBER_SEEDS).await;
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
    // Each row verifies on chain, with its own commit signatures, at the honest value.
    let rows: Vec<&price_oracle::signed::Report> = stored.iter().map(|row| &row.report).collect();
    for (verified, _) in common::evm::relay_rows(&rows, &addresses(MEMBER_SEEDS), 1) {
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
    // Five members (f = 1): each honest round's committee is three of the four others, member 5
    // (not running) among them or not, so two or three honest co-signatures each; an outsider's
    // price never reaches a pool (ignored as not_member), so it adds none.
    let cosigned = total(&honest, |m| m.prices_cosigned.get());
    assert!(
        (8..=12).contains(&cosigned),
        "the 4 honest prices got {cosigned} co-signatures: 2 or 3 each, none for an outsider"
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
            let junk = price_by(cluster.config, &victim, squatted_until, "1").data;
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
                1 => attacker.handle.publish(Gossip::Price(price_by(
                    cluster.config,
                    &attacker.identity,
                    at,
                    "1",
                ))),
                _ => attacker
                    .handle
                    .publish(Gossip::Attestation(Attestation::sign(
                        &price_by(cluster.config, &member, at, "3000").data,
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

/// Seven members, so f = 2 and a round needs five observations: members 6 and 7 collude, both
/// reading `lie` and taking part in every round whatever its origin saw. Every stored value is
/// an honest one (all honest members read 3000), and the contract, deployed for the network's
/// configuration with a quorum of five, takes each row at that value.
async fn two_members_collude(label: &str, lie: &str) -> Vec<Stored> {
    let cluster = Cluster::on_chain(label, 1..=7).await;
    let liars_exchange = testkit::mock_exchange(lie).await;
    let every_3s = |settings: &mut price_oracle::node::NodeSettings| {
        settings.trigger.heartbeat = Duration::from_secs(3);
    };
    let mut nodes = cluster.start_with(1..=5, every_3s).await;
    let liars = cluster
        .start_with([6, 7], |settings| {
            every_3s(settings);
            settings.fetch_from(&liars_exchange);
            settings.trigger.max_deviation = Decimal::ONE;
        })
        .await;
    let colluders: Vec<Address> = addresses_of(&liars);
    nodes.extend(liars);
    cluster.wait_rows(8, Duration::from_secs(120)).await;
    let stored = cluster.rows().await;
    assert_rows_verify(&stored, 5, &addresses_of(&nodes));
    for row in &stored {
        assert!(
            row.report.observations.len() >= 5,
            "row {} has {} observations, f = 2 needs five",
            row.id(),
            row.report.observations.len()
        );
        assert_eq!(
            row.row.price,
            Decimal::from(3000),
            "row {} moved by the colluders: {:?}",
            row.id(),
            row.report.observations
        );
    }
    let rows: Vec<&price_oracle::signed::Report> = stored.iter().map(|row| &row.report).collect();
    for (verified, _) in common::evm::relay_rows(&rows, &addresses(1..=7), 2) {
        assert_eq!(verified.median, 300_000_000_000, "the contract's median");
    }
    let carrying = stored
        .iter()
        .filter(|row| {
            colluders
                .iter()
                .any(|colluder| row.observation_of(colluder).is_some())
        })
        .count();
    println!(
        "{} rows at seven members (f = 2), {carrying} carrying a colluder's {lie}, every one stored at 3000",
        stored.len()
    );
    stop_all(nodes).await;
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_colluders_at_f_two_inside_the_deviation_move_no_stored_value() {
    two_members_collude("colluders_close", "3027").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_colluders_at_f_two_reading_one_dollar_get_no_value_of_theirs_stored() {
    let stored = two_members_collude("colluders_far", "1").await;
    // Their own rounds are far from every honest observation: nobody else joins them.
    let colluders = [identity(6).address(), identity(7).address()];
    assert!(
        stored
            .iter()
            .all(|row| !colluders.contains(&row.report.round.origin)),
        "a colluder's round was stored"
    );
}

/// A member signs stored notices naming every round it hears and every id the origins would
/// mint in the next seconds. Its key is node 7's, which held the writer lease first, so that
/// every node's heartbeats saw it hold the lease — what the old rule (believe any of the last 8
/// lease holders) took as enough. Nodes drop a round only when their own database holds its
/// row: every round started during the attack is stored, and every node counts the false
/// notices, against that key alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_signing_false_stored_notices_censors_nothing_and_is_counted() {
    let cluster = Cluster::with_members("false_notices", 1..=7).await;
    // Node 7 runs first, on the bootstrap peer alone, and keeps the lease for a long term while
    // the others join.
    let mut nodes = cluster
        .start_with([7], |settings| {
            settings.min_peers = 1;
            settings.lease.term = Duration::from_secs(30);
        })
        .await;
    wait_for(
        "node 7 to hold the lease",
        Duration::from_secs(30),
        async || nodes[0].metrics.lease_writer.get() == 1,
    )
    .await;
    nodes.extend(cluster.start(1..=6).await);
    let heartbeats = |node: &TestNode| {
        Metrics::counter(
            &node.metrics.db_statements,
            StatementLabel { kind: "heartbeat" },
        )
        .get()
    };
    wait_for(
        "every node to heartbeat",
        Duration::from_secs(30),
        async || nodes.iter().all(|node| heartbeats(node) >= 2),
    )
    .await;
    println!(
        "node 7 holds the lease as the others heartbeat: {}",
        nodes[0].metrics.lease_writer.get() == 1
    );
    let mut events: Vec<_> = nodes.iter().map(|node| node.node.subscribe()).collect();
    let (attacker, _, mut heard) =
        Peer::start_listening(70, vec![cluster.boot_addr.clone()], |_| {}).await;
    let mut watcher = attacker.handle.clone();
    watcher.wait_for_peers(3).await;
    let key = identity(7);
    // Each origin's ids, as its own generator mints them (without signing thousands of prices).
    let mut origins: Vec<IdGenerator> = addresses(1..=7)
        .iter()
        .map(|origin| IdGenerator::new(IdGenerator::machine_id_from_address(origin)))
        .collect();

    let attack = Duration::from_secs(20);
    let started = Instant::now();
    let rows_before = cluster.rows().await.len();
    let mut named = HashSet::new();
    let mut originated = HashSet::new();
    let mut squatted_until = SystemTime::now();
    let mut asked = Instant::now();
    let mut notices = 0;
    for turn in 0.. {
        if started.elapsed() >= attack {
            break;
        }
        // A round a second, each node in turn.
        if turn == 0 || asked.elapsed() >= Duration::from_secs(1) {
            nodes[turn % nodes.len()].node.originate_now();
            asked = Instant::now();
        }
        let mut ids = Vec::new();
        while let Ok(NetworkEvent::Gossip(gossip)) = heard.try_recv() {
            let id = match gossip {
                Gossip::Price(price) => price.data.id,
                Gossip::Attestation(attestation) => attestation.data.id,
                Gossip::Report(report) => report.id,
                Gossip::Commit(commit) => commit.id,
                Gossip::Stored(_) => continue,
            };
            if named.insert(id) {
                ids.push(id);
            }
        }
        // Every origin's ids of the next 4 s (peers refuse a notice naming ids more than 6 s
        // after its time).
        let horizon = SystemTime::now() + Duration::from_secs(4);
        while squatted_until < horizon {
            for origin in &mut origins {
                let id = origin.next_id_at(squatted_until).unwrap();
                if named.insert(id) {
                    ids.push(id);
                }
            }
            squatted_until += Duration::from_millis(10);
        }
        let at = unix_seconds(SystemTime::now());
        for notice in StoredNotice::sign_all(&ids, at, cluster.config, key.signer()) {
            attacker.handle.publish(Gossip::Stored(notice));
            notices += 1;
        }
        collect_originated(&mut events, &mut originated);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    collect_originated(&mut events, &mut originated);

    // Every round started during the attack is stored, those it named first among them.
    let stored_ids =
        async || -> HashSet<u64> { cluster.rows().await.iter().map(Stored::id).collect() };
    let all_stored = wait_until(
        "every round started during the attack stored",
        Instant::now() + Duration::from_secs(20),
        async || originated.is_subset(&stored_ids().await),
    )
    .await;
    let stored = stored_ids().await;
    assert!(
        all_stored.is_ok(),
        "{} of the {} rounds started during the attack stored",
        originated.intersection(&stored).count(),
        originated.len()
    );
    let rows = cluster.rows().await;
    let hit = originated.iter().filter(|id| named.contains(id)).count();
    println!(
        "{notices} false notices naming {} ids; {} rounds started during the attack, {hit} of them \
         named first, all stored ({} rows in all, {rows_before} before)",
        named.len(),
        originated.len(),
        rows.len()
    );
    assert!(originated.len() >= 10, "{} rounds", originated.len());
    assert!(hit >= 1, "the attack named none of the rounds");
    assert_rows_verify(&rows, 3, &addresses_of(&nodes));
    // Every node found it out, and counted it against that key only: an honest writer's
    // notice, checked the same way, is never false.
    for node in &nodes {
        let lookups = Metrics::counter(
            &node.metrics.db_statements,
            StatementLabel {
                kind: "read stored ids",
            },
        )
        .get();
        let found_false = node.metrics.false_notices_of(key.address()).get();
        println!(
            "{}: {found_false} false notices counted, {lookups} lookups",
            node.address
        );
        assert!(found_false >= 1, "{} counted no false notice", node.address);
        for seed in 1..=6 {
            assert_eq!(
                node.metrics
                    .false_notices_of(identity(seed).address())
                    .get(),
                0
            );
        }
    }
    stop_all(nodes).await;
}

/// The ids of the rounds the nodes started, from their events so far.
fn collect_originated(
    events: &mut [tokio::sync::broadcast::Receiver<NodeEvent>],
    originated: &mut HashSet<u64>,
) {
    for receiver in events {
        while let Ok(event) = receiver.try_recv() {
            if let NodeEvent::Originated { id, .. } = event {
                originated.insert(id);
            }
        }
    }
}
