//! What the node does with gossip: a price, attestation, report or commit into the pool, a round
//! committed (counted, handed to the triggers, and said once as a [`NodeEvent`]), a stored notice
//! (looked up in the database before anything is dropped: [`crate::writer::notices`]), whether
//! and when to co-sign ([`crate::cosign`] decides; this carries it out), and this node's own
//! report or commit when the pool says one is due.

use super::*;

impl Node {
    pub(super) fn on_gossip(&mut self, gossip: Gossip) {
        let now = Moment::now();
        self.liveness.last_gossip = Some(now.at);
        match gossip {
            Gossip::Price(message) => {
                let data = message.data;
                let added = self.pool.add(&data, &message.signatures, now);
                self.note_added(&data.round(), added);
                match added {
                    Added::OverLimit => {}
                    // A price carries its origin's signature only: the origin equivocated.
                    Added::Equivocation { .. } => self.origin_equivocated(&data, now),
                    _ => {
                        self.triggers
                            .heard(data.pair, data.id, data.origin, data.price, now.at);
                        let members = Arc::clone(&self.members.borrow());
                        let actions = self.cosigning.heard(data, &members, &self.pool, now.at);
                        self.carry_out(actions);
                        self.commit_if_due(&data.round());
                    }
                }
            }
            Gossip::Attestation(attestation) => {
                let data = attestation.data;
                let added = self.pool.add(&data, &[attestation.signature], now);
                self.note_added(&data.round(), added);
                if added
                    == (Added::Equivocation {
                        signer: data.origin,
                    })
                {
                    self.origin_equivocated(&data, now);
                }
                self.commit_if_due(&data.round());
            }
            Gossip::Report(message) => {
                let report = message.report();
                let round = report.round;
                let added = self.pool.add_report(&report, message.signature, now);
                self.note_added(&round, added);
                if added
                    == (Added::Equivocation {
                        signer: round.origin,
                    })
                    && let Some(origin) = report.origin_observation()
                {
                    self.origin_equivocated(&report.signed_fields(origin), now);
                }
                self.commit_if_due(&round);
            }
            Gossip::Commit(commit) => {
                let round = commit.round();
                let added = self
                    .pool
                    .add_commit(round, commit.digest, commit.signature, now);
                self.note_added(&round, added);
            }
            Gossip::Stored(notice) => self.on_stored_notice(&notice, now),
        }
    }

    /// Signs what the pool says is due from this node for `round`: as its origin, the report
    /// of its `2f + 1` member observations; as a member whose observation the origin's report
    /// holds, a commit to it. Each at most once per round.
    pub(super) fn commit_if_due(&mut self, round: &Round) {
        let me = self.settings.identity.address();
        let Some(report) = self.pool.to_commit(round, &me) else {
            return;
        };
        let signer = self.settings.identity.signer();
        let now = Moment::now();
        if me == round.origin {
            let Some(message) = ReportMessage::sign(&report, signer) else {
                return;
            };
            let added = self.pool.add_report(&report, message.signature, now);
            self.note_added(round, added);
            log::debug!(
                "reporting round {} with {} observations",
                round.id,
                report.observations.len()
            );
            self.network.publish(Gossip::Report(message));
        } else {
            let Some(message) = CommitMessage::sign(&report, signer) else {
                return;
            };
            let added = self
                .pool
                .add_commit(*round, message.digest, message.signature, now);
            self.note_added(round, added);
            self.network.publish(Gossip::Commit(message));
        }
    }

    /// The origin of `data`'s round signed two different observations for it: the round can
    /// never verify, and stops standing for its pair at once.
    fn origin_equivocated(&mut self, data: &PriceData, now: Moment) {
        self.triggers
            .equivocated(data.pair, data.id, data.origin, data.price, now.at);
    }

    /// Counts and reports what adding observations, a report or a commit to the pool did.
    pub(super) fn note_added(&mut self, round: &Round, added: Added) {
        match added {
            Added::New { verified: true, .. }
            | Added::Merged {
                became_verified: true,
                ..
            } => self.count_verified(round),
            Added::Equivocation { signer } => {
                self.metrics.equivocations.inc();
                log::warn!(
                    "{signer} signed two different observations, reports or commits for round \
                     {} of {}: they do not count",
                    round.id,
                    round.origin
                );
            }
            Added::OverLimit => {
                self.metrics.limit_hit(Limit::PendingPerSigner);
                log::debug!(
                    "price {} from {} refused: its signer has too many pending prices here",
                    round.id,
                    round.origin
                );
            }
            _ => {}
        }
    }

    pub(super) fn count_verified(&mut self, round: &Round) {
        self.metrics.prices_verified.inc(round.pair);
        if let Some(report) = self.pool.report(round) {
            self.newly_verified(report);
        }
        // The id's time is the origin's observation time.
        let minted = UNIX_EPOCH + Duration::from_millis(crate::id::decompose(round.id).unix_ms);
        let since_observed = age(minted);
        self.metrics
            .quorum_seconds
            .observe(since_observed.as_secs_f64());
        log::debug!(
            "price {} committed with {} observations, {since_observed:?} after it was observed",
            round.id,
            self.pool.signer_count(round),
        );
    }

    /// A round reached its quorum here: it is the pair's newest value for the triggers, and one
    /// event says so to whoever listens (the API's consumers get it from there, unless it is
    /// already stored; the node renders nothing for them).
    pub(super) fn newly_verified(&mut self, report: Report) {
        let round = report.round;
        if let (Some(value), Some(observed_at)) = (report.value(), report.time()) {
            self.triggers.verified(
                round.pair,
                Verified {
                    id: round.id,
                    origin: round.origin,
                    observed_at,
                    value,
                },
                Instant::now(),
            );
        }
        // Nobody listening is not an error.
        let _ = self.events.send(NodeEvent::Verified {
            already_stored: self.pool.is_stored(round.id),
            report: Arc::new(report),
            at: Instant::now(),
        });
    }

    /// A member says it stored these ids: nothing is dropped on its word. The ids not known
    /// stored here are looked up in the database ([`Node::check_notices`]).
    pub(super) fn on_stored_notice(&mut self, notice: &StoredNotice, now: Moment) {
        let ids: Vec<u64> = notice
            .ids
            .iter()
            .copied()
            .filter(|id| !self.pool.is_stored(*id))
            .collect();
        self.writer.notice_heard(notice.writer, ids, now.at);
        self.check_notices();
    }

    /// Starts the next lookup of notices' ids in the background, if one is due and none runs.
    pub(super) fn check_notices(&mut self) {
        if self.work.is_running(Job::CheckNotices) {
            return;
        }
        if let Some(check) = self.writer.notice_check_due(Instant::now()) {
            self.work.spawn(Job::CheckNotices, async move {
                Done::NoticesChecked(check.await)
            });
        }
    }

    /// The database holds these rows: every round under their ids is dropped, and later
    /// messages under them are ignored. A round under an id whose row records another round is
    /// a conflict: it can never be stored, so it goes too.
    pub(super) fn found_stored(&mut self, rows: &[StoredRound]) {
        if rows.is_empty() {
            return;
        }
        let by_id: HashMap<u64, &StoredRound> = rows.iter().map(|row| (row.id, row)).collect();
        let ids: HashSet<u64> = by_id.keys().copied().collect();
        for round in self.pool.rounds_with_ids(&ids) {
            if let Some(row) = by_id.get(&round.id)
                && !row.records(&round)
            {
                log::warn!(
                    "dropping round {} of {} ({}): the database holds another round under its \
                     id ({} of {}), so it can never be stored",
                    round.id,
                    round.origin,
                    round.pair,
                    row.pair,
                    row.origin
                );
            }
        }
        let ids: Vec<u64> = ids.into_iter().collect();
        let known = self.pool.mark_stored(&ids, Moment::now());
        log::debug!(
            "the database holds {} ids named in stored notices ({known} rounds known here)",
            ids.len()
        );
    }

    /// Carries out what co-signing decided.
    pub(super) fn carry_out(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Sign(round, ours) => self.cosign(&round, ours),
                Action::Observe => self.observe(),
                Action::QueueFull(_) => self.metrics.limit_hit(Limit::CosignQueue),
                Action::Turn(data, outcome) => {
                    self.metrics.fallback(outcome).inc();
                    if outcome == FallbackOutcome::SteppedIn {
                        log::debug!(
                            "stepping in to co-sign price {} from {}: still short of its quorum",
                            data.id,
                            data.origin
                        );
                    }
                }
                Action::Decline(data, declined) => self.declined(&data, declined),
            }
        }
    }

    pub(super) fn declined(&mut self, data: &PriceData, declined: Declined) {
        self.metrics.cosign_refused(declined.reason()).inc();
        match declined {
            Declined::Stale => log::debug!(
                "not co-signing price {} from {}: observed more than {COSIGN_WINDOW:?} from our observation",
                data.id,
                data.origin
            ),
            Declined::Deviates { deviation, ours } => {
                if let Some(suppressed) = self.cosign_refusals.allow(Instant::now()) {
                    log::info!(
                        "not co-signing price {} from {}: {} is {:.3}% from our {}{}",
                        data.id,
                        data.origin,
                        data.price,
                        deviation * Decimal::ONE_HUNDRED,
                        ours,
                        crate::logging::suppressed_note(suppressed)
                    );
                }
            }
        }
    }

    /// Signs this node's own observation under the round of `price`, and publishes it.
    pub(super) fn cosign(&mut self, price: &PriceData, ours: signed::Observation) {
        let own = PriceData::new(price.round(), ours);
        let attestation = Attestation::sign(&own, self.settings.identity.signer());
        let added = self.pool.add(&own, &[attestation.signature], Moment::now());
        self.note_added(&own.round(), added);
        self.metrics.prices_cosigned.inc(own.pair);
        log::debug!(
            "observed {} in round {} of {}",
            own.price,
            own.id,
            own.origin
        );
        self.network.publish(Gossip::Attestation(attestation));
        self.commit_if_due(&own.round());
    }
}
