//! The node's side of observing and starting rounds: it asks [`super::origination`] for
//! observations, and [`crate::trigger`] whether one starts a round, then publishes it.

use super::*;

impl Node {
    /// A round of every pair is wanted at once, whatever the market did.
    pub(super) fn originate(&mut self) {
        self.origination.want();
        self.observe();
    }

    /// Starts an observation round of every pair, unless one is running.
    pub(super) fn observe(&mut self) {
        if self.work.is_running(Job::Observe) {
            return;
        }
        let round = self.origination.observe(self.metrics.clone());
        self.work
            .spawn(Job::Observe, async move { Done::Observed(round.await) });
    }

    pub(super) fn on_observed(&mut self, round: ObservationRound) {
        // Rounds start only once the node runs and counts as a member: before, it knows
        // neither its peers nor the newest stored values, nor the configuration its signatures
        // are bound to (the member set), so a round it started would never count.
        let members = Arc::clone(&self.members.borrow());
        let running = self.phase == Phase::Running && members.is_member(&self.me);
        let requested = running && self.origination.round_started();
        let mut failed = false;
        for (pair, result) in round.results {
            let price = match result {
                Ok(sourced) => {
                    if let Some(failures) = self.origination.pair_observed(pair) {
                        log::info!("{pair} observed again, after {failures} failed observations");
                    }
                    sourced.price
                }
                Err(err) => {
                    // Peers' prices waiting for our observation of the pair cannot be judged:
                    // they go unsigned by us. The next observation is due in one interval.
                    failed = true;
                    let unjudged = self.cosigning.observation_failed(pair);
                    let in_a_row = self.origination.pair_failed(pair);
                    if unjudged > 0 || in_a_row == 1 {
                        let note = if unjudged > 0 {
                            format!("; {unjudged} peers' prices go unsigned by us")
                        } else {
                            String::new()
                        };
                        log::warn!("cannot observe the {pair} price: {err}{note}");
                    } else {
                        log::debug!("cannot observe the {pair} price ({in_a_row} in a row): {err}");
                    }
                    continue;
                }
            };
            let now = Moment::now();
            let ours = Observation {
                price,
                at: now.wall,
                fetched: now.at,
            };
            let actions = self.cosigning.observed(pair, ours, &self.pool);
            if running {
                self.start_round_if_due(pair, price, now, &members, requested);
            }
            self.carry_out(actions);
        }
        // Rounds asked for before the node runs wait for its first observation then.
        if self.origination.round_ended(failed) && running {
            self.observe();
        }
    }

    /// Starts a round of `pair` from our observation `price` if the triggers say so.
    pub(super) fn start_round_if_due(
        &mut self,
        pair: Pair,
        price: UsdPrice,
        now: Moment,
        members: &crate::membership::Members,
        requested: bool,
    ) {
        let wall = unix_seconds(now.wall);
        match self
            .triggers
            .observed(pair, price, now.at, wall, members, requested)
        {
            Decision::Start(reason) => {
                let config = members.signing_config();
                let signer = self.settings.identity.signer();
                if let Some(message) = self.origination.mint(config, pair, price, now, signer) {
                    self.publish_price(message, now, reason);
                }
            }
            Decision::Wait { rank, until } => log::debug!(
                "a round of {pair} is due; {rank} members ahead of us may start it within {:?}",
                until.saturating_duration_since(now.at)
            ),
            Decision::Covered => {
                log::debug!("a round of {pair} is due, and one we would join is under way")
            }
            Decision::Quiet => {}
        }
    }

    /// Logs and counts the rounds the triggers found failed: each stopped standing for its
    /// pair, and one that cost its origin its starter turn says so.
    pub(super) fn note_stalled(&mut self) {
        for stalled in self.triggers.take_stalled() {
            let Stalled {
                pair,
                origin,
                id,
                cause,
                penalty,
            } = stalled;
            self.metrics.round_stalled(cause).inc();
            let round = match id {
                Some(id) => format!("round {id}"),
                None => "our round".to_owned(),
            };
            let why = match cause {
                StallCause::Timeout => format!(
                    "not verified within {:?}",
                    self.settings.trigger.progress_timeout
                ),
                StallCause::Equivocation => "its origin signed two observations".to_owned(),
            };
            match penalty {
                None => {
                    log::info!("{round} of {pair} from {origin} stands for nothing more: {why}")
                }
                Some(penalty) => {
                    self.metrics.starter_penalties.inc();
                    log::warn!(
                        "{round} of {pair} from {origin} stands for nothing more: {why}; its \
                         rounds keep failing, so it loses its turn to start rounds for {penalty:?}"
                    );
                }
            }
        }
    }

    pub(super) fn publish_price(&mut self, message: PriceMessage, now: Moment, reason: Reason) {
        let data = message.data;
        let added = self.pool.add(&data, &message.signatures, now);
        self.note_added(&data.round(), added);
        self.metrics.prices_originated.inc(data.pair);
        self.metrics.round_started(data.pair, reason).inc();
        log::info!(
            "originated price {}: {} {} (trigger: {reason})",
            data.id,
            data.pair,
            data.price
        );
        self.network.publish(Gossip::Price(message));
        // With f = 0 the origin's own observation is the whole report.
        self.commit_if_due(&data.round());
        let _ = self.events.send(NodeEvent::Originated {
            id: data.id,
            at: Instant::now(),
        });
    }
}
