//! Stored prices in memory. One reader per node follows the `prices` table — woken by `LISTEN`
//! ([`crate::store::notify`]), polling besides — keeps each served pair's newest stored price
//! serialized and ready to send, and hands every newly committed row, serialized once, to every
//! stream. So `latest` never touches the database (and still answers while it is down, with the
//! age of what it holds), and a thousand streams cost one query per commit, not a thousand.
//!
//! Nothing is held, sent or served before it verifies: every row read, by the reader, for a
//! history page, a stream's replay or one price, is judged once by [`super::checked`] — the
//! rules of `oracle verify` — and a refused row is left out (so `latest` keeps the pair's
//! previous good price). Every price that verified is kept serialized by id in a cache bounded
//! by its bytes (a stored price never changes), and every refused id with its reason: a page of
//! history then costs one query for its ids, and rows (and their judgement) only for the ids
//! not held. A full page never changes either (a row that commits later has a greater `seq`
//! than all of it), so full pages are kept whole, by query, in a second cache — and, once a
//! client that takes gzip asks for one again, gzipped too: a 100-row page is mostly hex
//! (signatures, digests, the ABI report with its padding and its copy of each signature) and
//! shrinks several times (501 KB to 57 KB for prices of five observations), which is what a
//! node serving the same pages to many clients sends (and the kernel copies, and each client
//! reads).
//!
//! The reader reads `seq > its cursor` in commit order, as every reader of the table does (see
//! [`crate::store::read`]): a lost notification or a reconnect loses no row, since the next read
//! (at the listener's wake-up after every reconnect, or at the poll) picks up whatever committed
//! meanwhile.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use tokio::sync::{broadcast, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::checked::Checker;
use super::view::PriceView;
use crate::audit::{Finding, FindingKind};
use crate::pair::{Pair, PairSet};
use crate::store::read::HistoryQuery;
use crate::store::reports::StoredPrice;
use crate::store::{Store, StoreError};

/// Rows read per query while catching up.
const PAGE: u64 = 256;
/// Rows read per query while looking for a pair's newest price that verifies.
const NEWEST_PAGE: u64 = 16;
/// The bytes of JSON the cache of serialized prices holds (some 2,000 prices of five
/// observations).
const CACHE_BYTES: u64 = 8 << 20;
/// The bytes of JSON the cache of full pages holds (some 50 pages of 100).
const PAGE_CACHE_BYTES: u64 = 16 << 20;
/// How often the reader reads even without a notification: the safety net under `LISTEN`.
pub const POLL: Duration = Duration::from_secs(5);

/// A stored price, serialized once for every reader.
#[derive(Debug)]
pub struct StoredJson {
    pub pair: Pair,
    pub seq: i64,
    pub view: PriceView,
    /// The view's JSON.
    pub json: Bytes,
}

impl StoredJson {
    /// The view of a stored row, serialized; why not, for a row this code cannot show.
    pub fn render(row: &StoredPrice) -> Result<Self, String> {
        let pair = row
            .pair
            .parse::<Pair>()
            .map_err(|err| format!("pair {:?}: {err}", row.pair))?;
        let view = PriceView::from_row(row).map_err(|err| err.to_string())?;
        let json = serde_json::to_vec(&view).map_err(|err| err.to_string())?;
        Ok(Self {
            pair,
            seq: row.seq,
            view,
            json: Bytes::from(json),
        })
    }
}

/// What the reader has learned so far.
#[derive(Default)]
struct Held {
    /// The greatest `seq` read; `None` until the database first answered.
    cursor: Option<i64>,
    newest: HashMap<Pair, Arc<StoredJson>>,
    /// When the reader last read the database successfully.
    synced_at: Option<Instant>,
}

/// The newest stored price of a pair, as held in memory.
pub struct Newest {
    /// `None`: nothing of the pair is stored.
    pub price: Option<Arc<StoredJson>>,
    /// How long ago the reader last confirmed it with the database.
    pub age: Duration,
}

/// A row as this node serves it — verified and serialized — or why it refuses it.
pub type Judged = Result<Arc<StoredJson>, FindingKind>;

/// The node's stored prices in memory, and the broadcast of new ones to its streams. Only rows
/// that verify ([`Checker`]) are ever held, sent or served.
pub struct StoredPrices {
    held: RwLock<Held>,
    sender: broadcast::Sender<Arc<StoredJson>>,
    /// Rows that verified, serialized: each judged once when read (a row never changes for a
    /// node's role; one an admin changes after it was judged is served as it was judged).
    by_id: Cache<i64, Arc<StoredJson>, JsonBytes>,
    pages: Cache<HistoryQuery, Arc<FullPage>, JsonBytes>,
    checker: Checker,
}

/// A full page of history, kept: its JSON, and its gzip once asked for.
struct FullPage {
    json: Bytes,
    /// `None` inside: it could not be compressed (never in practice); served as JSON.
    gzip: OnceLock<Option<Bytes>>,
}

impl FullPage {
    /// The page gzipped, compressed at the first call (the best compression: it is done once
    /// and every later answer is smaller).
    fn gzip(&self) -> Option<Bytes> {
        self.gzip
            .get_or_init(|| {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(self.json.len() / 2),
                    flate2::Compression::best(),
                );
                encoder
                    .write_all(&self.json)
                    .and_then(|()| encoder.finish())
                    .map(Bytes::from)
                    .inspect_err(|err| log::error!("API: cannot gzip a page of history: {err}"))
                    .ok()
            })
            .clone()
    }
}

/// Weighs a cached price or page by its JSON.
#[derive(Clone)]
struct JsonBytes;

impl Weighter<i64, Arc<StoredJson>> for JsonBytes {
    fn weight(&self, _id: &i64, price: &Arc<StoredJson>) -> u64 {
        price.json.len() as u64
    }
}

impl Weighter<HistoryQuery, Arc<FullPage>> for JsonBytes {
    /// The JSON and, once made, its gzip (a ninth to a third more).
    fn weight(&self, _query: &HistoryQuery, page: &Arc<FullPage>) -> u64 {
        page.json.len() as u64 * 4 / 3
    }
}

/// One page of history.
pub struct Page {
    pub prices: Vec<Arc<StoredJson>>,
    /// The cursor of the next page; `None` when this one was the last so far.
    pub next: Option<i64>,
}

/// A page of history, serialized.
pub struct PageJson {
    pub json: Bytes,
    /// The same, gzipped: for a full page asked for before, when the client takes gzip.
    pub gzip: Option<Bytes>,
    /// A full page: it never changes.
    pub full: bool,
}

impl Page {
    /// The page's JSON, as [`super::view::PricePage`] serializes: the prices' JSON as held.
    pub fn to_json(&self) -> Vec<u8> {
        let size = self
            .prices
            .iter()
            .map(|price| price.json.len() + 1)
            .sum::<usize>();
        let mut json = Vec::with_capacity(size + 40);
        json.extend_from_slice(b"{\"prices\":[");
        for (index, price) in self.prices.iter().enumerate() {
            if index > 0 {
                json.push(b',');
            }
            json.extend_from_slice(&price.json);
        }
        json.extend_from_slice(b"],\"next\":");
        match self.next {
            Some(seq) => json.extend_from_slice(format!("\"{seq}\"").as_bytes()),
            None => json.extend_from_slice(b"null"),
        }
        json.push(b'}');
        json
    }
}

impl StoredPrices {
    /// `backlog`: how many prices a stream may fall behind by before it is dropped; `checker`
    /// judges every row read.
    pub fn new(backlog: usize, checker: Checker) -> Self {
        Self {
            held: RwLock::default(),
            sender: broadcast::Sender::new(backlog.max(1)),
            by_id: Cache::with_weighter(2_048, CACHE_BYTES, JsonBytes),
            pages: Cache::with_weighter(64, PAGE_CACHE_BYTES, JsonBytes),
            checker,
        }
    }

    /// The stored price `id` as served: from memory when judged before, else read and judged.
    /// `Ok(None)`: no row has this id.
    pub async fn price(&self, store: &Store, id: i64) -> Result<Option<Judged>, StoreError> {
        if let Some(judged) = self.known(id) {
            return Ok(Some(judged));
        }
        let Some(row) = store.price_by_id(id).await? else {
            return Ok(None);
        };
        let read_at = Instant::now();
        Ok(self.judged(store, &[row], read_at).await?.pop())
    }

    /// Each of `rows`, all read from the database by `read_at`, as served: judged and
    /// serialized once, from memory after; or why it is refused.
    pub(super) async fn judged(
        &self,
        store: &Store,
        rows: &[StoredPrice],
        read_at: Instant,
    ) -> Result<Vec<Judged>, StoreError> {
        let known: Vec<Option<Judged>> = rows.iter().map(|row| self.known(row.id)).collect();
        let unknown: Vec<&StoredPrice> = rows
            .iter()
            .zip(&known)
            .filter(|(_, known)| known.is_none())
            .map(|(row, _)| row)
            .collect();
        let mut verdicts = self
            .checker
            .judge(store, &unknown, read_at)
            .await?
            .into_iter();
        Ok(rows
            .iter()
            .zip(known)
            .map(|(row, known)| {
                known.unwrap_or_else(|| match verdicts.next().flatten() {
                    None => self.keep(row),
                    Some(refused) => Err(refused),
                })
            })
            .collect())
    }

    /// What this node made of the row `id` when it last read it, while it remembers.
    fn known(&self, id: i64) -> Option<Judged> {
        match self.by_id.get(&id) {
            Some(price) => Some(Ok(price)),
            None => self.checker.refused(id).map(Err),
        }
    }

    /// A row that verified, serialized and kept; refused if this code cannot show it.
    fn keep(&self, row: &StoredPrice) -> Judged {
        match StoredJson::render(row) {
            Ok(price) => {
                let price = Arc::new(price);
                self.by_id.insert(row.id, Arc::clone(&price));
                Ok(price)
            }
            Err(reason) => Err(self.checker.refuse(
                row.id,
                &Finding::Invalid(format!("cannot be shown: {reason}")),
            )),
        }
    }

    /// One page of history as JSON (and gzip, if `gzip` and the page is held): a full page
    /// from the cache if held, else [`Self::page`]. A page is gzipped at its second request
    /// from a client that takes it, not its first: pages asked for once (a client scanning at
    /// random cursors) never pay for a compression nobody reuses.
    pub async fn page_json(
        &self,
        store: &Store,
        query: &HistoryQuery,
        gzip: bool,
    ) -> Result<PageJson, StoreError> {
        if let Some(page) = self.pages.get(query) {
            return Ok(PageJson {
                json: page.json.clone(),
                gzip: gzip.then(|| page.gzip()).flatten(),
                full: true,
            });
        }
        let page = self.page(store, query).await?;
        let json = Bytes::from(page.to_json());
        // Full: as many rows as asked for (`next` set), none of them left out.
        let full = page.next.is_some() && page.prices.len() as u64 == query.limit;
        if full {
            let kept = FullPage {
                json: json.clone(),
                gzip: OnceLock::new(),
            };
            self.pages.insert(query.clone(), Arc::new(kept));
        }
        Ok(PageJson {
            json,
            gzip: None,
            full,
        })
    }

    /// One page of history: the ids from the database, the prices from memory where judged
    /// before, the others read and judged.
    pub async fn page(&self, store: &Store, query: &HistoryQuery) -> Result<Page, StoreError> {
        let keys = store.price_history_ids(query).await?;
        let mut judged: Vec<(i64, Option<Judged>)> =
            keys.iter().map(|(id, _)| (*id, self.known(*id))).collect();
        let missing: Vec<i64> = judged
            .iter()
            .filter(|(_, known)| known.is_none())
            .map(|(id, _)| *id)
            .collect();
        if !missing.is_empty() {
            let rows = store.prices_by_ids(&missing).await?;
            let read_at = Instant::now();
            let mut read: HashMap<i64, Judged> = rows
                .iter()
                .map(|row| row.id)
                .zip(self.judged(store, &rows, read_at).await?)
                .collect();
            for (id, known) in &mut judged {
                if known.is_none() {
                    *known = read.remove(id);
                }
            }
        }
        let full = keys.len() as u64 == query.limit;
        Ok(Page {
            // A refused row is left out (it was counted and logged); `next` still moves past
            // it, or it would stop every reader there for good.
            prices: judged
                .into_iter()
                .filter_map(|(_, judged)| judged?.ok())
                .collect(),
            next: keys.last().filter(|_| full).map(|(_, seq)| *seq),
        })
    }

    /// The newest stored price of `pair`; `None` while the database has never answered (nothing
    /// is known yet, not even that nothing is stored).
    pub fn newest(&self, pair: Pair) -> Option<Newest> {
        let held = self.held.read().unwrap_or_else(PoisonError::into_inner);
        let synced_at = held.synced_at?;
        Some(Newest {
            price: held.newest.get(&pair).cloned(),
            age: synced_at.elapsed(),
        })
    }

    /// Every price read from now on, and the cursor they follow: each has a greater `seq`.
    /// `None` while the database has never answered.
    pub fn follow(&self) -> Option<(broadcast::Receiver<Arc<StoredJson>>, i64)> {
        // Under the lock, which the reader takes to move the cursor before it sends: a price
        // past the cursor returned here is sent after this subscription.
        let held = self.held.read().unwrap_or_else(PoisonError::into_inner);
        let cursor = held.cursor?;
        Some((self.sender.subscribe(), cursor))
    }

    /// Follows the table until `stop`: reads whatever committed past the cursor at every
    /// wake-up of `wake` and every [`POLL`].
    pub async fn follow_table(
        &self,
        store: Store,
        pairs: PairSet,
        mut wake: watch::Receiver<u64>,
        stop: CancellationToken,
    ) {
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            match self.catch_up(&store, pairs).await {
                Ok(()) if failing => {
                    log::info!("API: reading stored prices again");
                    failing = false;
                }
                Ok(()) => {}
                // Once per outage: the store's own log already counts the failed statements.
                Err(err) if !failing => {
                    log::warn!("API: cannot read stored prices ({err}); serving what is held");
                    failing = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = woken(&mut wake) => {}
                _ = poll.tick() => {}
            }
        }
    }

    /// Reads past the cursor until nothing more is there; the first time, the newest price of
    /// each pair and the cursor to start from. Rows are judged before the cursor moves past
    /// them: a row that cannot be judged now (the member history unreadable) is read again.
    async fn catch_up(&self, store: &Store, pairs: PairSet) -> Result<(), StoreError> {
        let mut cursor = match self.cursor() {
            Some(cursor) => cursor,
            None => self.load(store, pairs).await?,
        };
        loop {
            let rows = store.prices_committed_after(cursor, PAGE).await?;
            let read_at = Instant::now();
            let judged = self.judged(store, &rows, read_at).await?;
            for (row, judged) in rows.iter().zip(judged) {
                cursor = row.seq;
                self.add(row.seq, judged.ok(), pairs);
            }
            if (rows.len() as u64) < PAGE {
                break;
            }
        }
        self.write().synced_at = Some(Instant::now());
        Ok(())
    }

    /// The cursor first (what commits after it is read next), then each pair's newest.
    async fn load(&self, store: &Store, pairs: PairSet) -> Result<i64, StoreError> {
        let cursor = store.last_seq().await?;
        let mut newest = HashMap::new();
        for pair in pairs.iter() {
            if let Some(price) = self.newest_served(store, pair).await? {
                newest.insert(pair, price);
            }
        }
        let mut held = self.write();
        held.cursor = Some(cursor);
        held.newest = newest;
        Ok(cursor)
    }

    /// The newest stored price of `pair` that verifies: refused rows (one dated in the future
    /// would stay the newest for good) are passed over, newest first.
    pub(super) async fn newest_served(
        &self,
        store: &Store,
        pair: Pair,
    ) -> Result<Option<Arc<StoredJson>>, StoreError> {
        let mut pages = store.newest_first(pair, NEWEST_PAGE);
        while let Some(rows) = pages.next_page().await? {
            let read_at = Instant::now();
            // One at a time: the newest usually verifies, and the rest need not be judged.
            for row in &rows {
                let judged = self
                    .judged(store, std::slice::from_ref(row), read_at)
                    .await?;
                if let Some(Ok(price)) = judged.into_iter().next() {
                    return Ok(Some(price));
                }
            }
        }
        Ok(None)
    }

    /// A row past the cursor, `price` if it verified: the pair's newest if it is fresher (a
    /// row can commit after a fresher one), and to every stream.
    fn add(&self, seq: i64, price: Option<Arc<StoredJson>>, pairs: PairSet) {
        let price = price.filter(|price| pairs.contains(price.pair));
        let mut held = self.write();
        held.cursor = Some(seq);
        let Some(price) = price else {
            return;
        };
        let fresher = held
            .newest
            .get(&price.pair)
            .is_none_or(|newest| price.view.is_fresher_than(&newest.view));
        if fresher {
            held.newest.insert(price.pair, Arc::clone(&price));
        }
        // No stream listening is not an error.
        let _ = self.sender.send(price);
    }

    fn cursor(&self) -> Option<i64> {
        self.held
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .cursor
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Held> {
        self.held.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The listener's next wake-up; never, once it is gone (the node is stopping): the poll alone
/// remains, rather than a wake-up that is always ready.
async fn woken(wake: &mut watch::Receiver<u64>) {
    if wake.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::view::PricePage;
    use crate::api::view::tests::vector_row;

    #[test]
    fn a_page_is_the_json_of_its_views() {
        let price = Arc::new(StoredJson::render(&vector_row()).unwrap());
        for (count, next) in [(0, None), (1, None), (3, Some(4711))] {
            let page = Page {
                prices: vec![Arc::clone(&price); count],
                next,
            };
            let views = PricePage {
                prices: vec![price.view.clone(); count],
                next: next.map(|seq| seq.to_string()),
            };
            assert_eq!(page.to_json(), serde_json::to_vec(&views).unwrap());
        }
    }
}
