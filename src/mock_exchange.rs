//! A local stand-in for the four exchange APIs, so tests and offline demos never touch the
//! internet. It serves one random-walk ETH price on each exchange's real path and response shape
//! (several pairs in one answer where the exchange does that, for the queries this client
//! sends) and, on request, a share of faulty answers to exercise the clients' error handling.
//! Every other pair is the same walk at its own scale ([`scale`]), so one `--price` sets them
//! all.
//!
//! Two POST endpoints move it while it runs, for demos and tests:
//! - `POST /mock/price?pair=ETH/USD&price=3060` sets the pair's price (the walk goes on from
//!   there, the other pairs follow at their scale);
//! - `POST /mock/lag?seconds=300` makes Coingecko's `last_updated_at` that much older than now
//!   (a stale quote).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::pair::{Pair, PairSet};
use crate::price::{Source, UsdPrice};
use crate::time::unix_seconds;

/// A kind of bad answer the mock can give instead of a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// HTTP 500 with a plain-text body.
    ServerError,
    /// HTTP 429 with `Retry-After: 1`.
    RateLimited,
    /// HTTP 200 with an HTML page, as a captive portal or a CDN error page sends.
    Html,
    /// HTTP 200 with the right JSON shape but a price that is not a number.
    NonNumeric,
    /// No answer until the hang time has passed (longer than a client's timeout).
    Hang,
    /// HTTP 451 with Binance's answer to an address in a region it does not serve.
    Blocked,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::ServerError,
        Fault::RateLimited,
        Fault::Html,
        Fault::NonNumeric,
        Fault::Hang,
        Fault::Blocked,
    ];
}

/// How the mock behaves.
#[derive(Debug, Clone)]
pub struct MockSettings {
    /// Starting ETH/USD price; the other pairs follow at their [`scale`].
    pub price: UsdPrice,
    /// Largest relative step of the walk per tick (0.001 = ±0.1 %); 0 keeps the price fixed.
    pub volatility: f64,
    /// How often the walk steps.
    pub tick: Duration,
    /// Seed for the walk and the faults; `None` seeds from the OS.
    pub seed: Option<u64>,
    /// Share of answers, 0.0–1.0, that are a fault instead of a price.
    pub fail_rate: f64,
    /// Faults to pick from, uniformly.
    pub faults: Vec<Fault>,
    /// How long a `hang` fault stalls before answering.
    pub hang: Duration,
    /// How much older than now Coingecko's `last_updated_at` says its quotes are.
    pub quote_lag: Duration,
}

impl MockSettings {
    /// A fixed `price` (no walk, no faults): what tests and benchmarks usually want.
    pub fn steady(price: UsdPrice) -> Self {
        Self {
            price,
            volatility: 0.0,
            tick: Duration::from_secs(1),
            seed: Some(1),
            fail_rate: 0.0,
            faults: Vec::new(),
            hang: Duration::from_secs(15),
            quote_lag: Duration::ZERO,
        }
    }
}

struct Walk {
    price: f64,
    last_step: Instant,
    rng: StdRng,
}

struct Shared {
    settings: Mutex<MockSettings>,
    walk: Mutex<Walk>,
    /// Requests answered, by source (in [`Source::ALL`] order).
    requests: [AtomicU64; Source::ALL.len()],
}

/// A running mock exchange. Dropping it stops the server.
pub struct MockExchange {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl MockExchange {
    /// Binds `listen` (port 0 picks a free port) and serves in a background task.
    pub async fn start(listen: SocketAddr, settings: MockSettings) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let rng = match settings.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let shared = Arc::new(Shared {
            walk: Mutex::new(Walk {
                price: settings.price.to_decimal().to_f64().unwrap_or(1.0),
                last_step: Instant::now(),
                rng,
            }),
            settings: Mutex::new(settings),
            requests: Default::default(),
        });
        let exchanges = Source::ALL.iter().fold(Router::new(), |router, &source| {
            let shared = Arc::clone(&shared);
            // A source's requests share the path and differ in the query.
            let path = source
                .requests(PairSet::ALL)
                .first()
                .and_then(|request| request.path.split('?').next().map(str::to_owned))
                .unwrap_or_default();
            router.route(
                &path,
                get(move |RawQuery(query): RawQuery| answer(Arc::clone(&shared), source, query)),
            )
        });
        let price_shared = Arc::clone(&shared);
        let lag_shared = Arc::clone(&shared);
        let app = exchanges
            .route(
                "/mock/price",
                post(move |query| set_price(Arc::clone(&price_shared), query)),
            )
            .route(
                "/mock/lag",
                post(move |query| set_lag(Arc::clone(&lag_shared), query)),
            );
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                log::error!("mock exchange server stopped: {err}");
            }
        });
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, to pass as `--source-base-url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Jumps the walk to `price` (of ETH/USD).
    pub fn set_price(&self, price: UsdPrice) {
        self.shared.set_price(Pair::EthUsd, price);
    }

    /// Makes Coingecko's `last_updated_at` `lag` older than now.
    pub fn set_quote_lag(&self, lag: Duration) {
        self.shared.set_quote_lag(lag);
    }

    /// How many requests for `source` the mock has answered (faults included).
    pub fn requests(&self, source: Source) -> u64 {
        self.shared.requests[source_index(source)].load(Ordering::Relaxed)
    }

    /// Changes the share and kinds of faulty answers.
    pub fn set_faults(&self, fail_rate: f64, faults: &[Fault]) {
        let mut settings = lock(&self.shared.settings);
        settings.fail_rate = fail_rate;
        settings.faults = faults.to_vec();
    }

    /// Waits until the server task ends (it does not end on its own unless it fails).
    pub async fn wait(mut self) {
        let _ = (&mut self.server).await;
    }
}

impl Drop for MockExchange {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Shared {
    /// Jumps the walk so that `pair` is at `price`.
    fn set_price(&self, pair: Pair, price: UsdPrice) {
        let usd = price.to_decimal().to_f64().unwrap_or(1.0);
        lock(&self.walk).price = usd / scale(pair);
    }

    fn set_quote_lag(&self, lag: Duration) {
        lock(&self.settings).quote_lag = lag;
    }
}

fn source_index(source: Source) -> usize {
    Source::ALL
        .iter()
        .position(|known| *known == source)
        .unwrap_or_default()
}

/// The mock's state stays consistent under a panic in another request, so a poisoned lock is
/// still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How the mock prices a pair against its ETH/USD walk: roughly today's ratios.
pub fn scale(pair: Pair) -> f64 {
    match pair {
        Pair::EthUsd => 1.0,
        Pair::BtcUsd => 30.0,
        Pair::SolUsd => 0.05,
    }
}

/// The pairs whose quotes `source` serves at this query string: those of the request this
/// client sends for them (in its order of pairs).
fn pairs_of(source: Source, query: Option<&str>) -> Option<PairSet> {
    let query = query?;
    (1..1u8 << Pair::ALL.len())
        .map(|bits| {
            Pair::ALL
                .into_iter()
                .enumerate()
                .filter(|(index, _)| bits & (1 << index) != 0)
                .map(|(_, pair)| pair)
                .collect::<PairSet>()
        })
        .flat_map(|pairs| source.requests(pairs))
        .find(|request| request.path.split_once('?').map(|(_, q)| q) == Some(query))
        .map(|request| request.pairs)
}

async fn answer(shared: Arc<Shared>, source: Source, query: Option<String>) -> Response {
    shared.requests[source_index(source)].fetch_add(1, Ordering::Relaxed);
    let Some(pairs) = pairs_of(source, query.as_deref()) else {
        return (StatusCode::NOT_FOUND, "unknown market\n").into_response();
    };
    let (eth, fault, hang, lag) = {
        let settings = lock(&shared.settings).clone();
        let mut walk = lock(&shared.walk);
        step_walk(&mut walk, &settings);
        let faulty = settings.fail_rate > 0.0 && walk.rng.random::<f64>() < settings.fail_rate;
        let fault = if faulty {
            settings.faults.choose(&mut walk.rng).copied()
        } else {
            None
        };
        (walk.price, fault, settings.hang, settings.quote_lag)
    };
    let updated_at = unix_seconds(SystemTime::now()).saturating_sub(lag.as_secs());
    let quotes: Vec<(Pair, String)> = pairs
        .iter()
        .map(|pair| (pair, cents(eth * scale(pair))))
        .collect();
    log::debug!("{source}: {quotes:?}, fault {fault:?}");
    let prices = || json(quote_body(source, &quotes, true, updated_at));
    match fault {
        None => prices(),
        Some(Fault::ServerError) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n").into_response()
        }
        Some(Fault::RateLimited) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            json(r#"{"error":"rate limit exceeded"}"#.to_owned()),
        )
            .into_response(),
        Some(Fault::Html) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!DOCTYPE html>\n<html><head><title>Just a moment...</title></head>\
             <body><h1>Checking your browser</h1></body></html>\n",
        )
            .into_response(),
        Some(Fault::NonNumeric) => {
            let broken: Vec<(Pair, String)> = pairs
                .iter()
                .map(|pair| (pair, "not-a-number".to_owned()))
                .collect();
            json(quote_body(source, &broken, false, updated_at))
        }
        Some(Fault::Hang) => {
            tokio::time::sleep(hang).await;
            prices()
        }
        Some(Fault::Blocked) => (
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            json(
                r#"{"code":0,"msg":"Service unavailable from a restricted location according to 'b. Eligibility' in https://www.binance.com/en/terms. Please contact customer service if you believe you received this message in error."}"#
                    .to_owned(),
            ),
        )
            .into_response(),
    }
}

/// Cents, as exchanges quote, so every source shows the same value in its own format.
fn cents(price: f64) -> String {
    Decimal::from_f64(price)
        .unwrap_or(Decimal::ONE)
        .round_dp(2)
        .max(Decimal::new(1, 2))
        .normalize()
        .to_string()
}

/// `POST /mock/price?pair=…&price=…`.
#[derive(Debug, Deserialize)]
struct PriceChange {
    pair: String,
    price: String,
}

/// `POST /mock/lag?seconds=…`.
#[derive(Debug, Deserialize)]
struct LagChange {
    seconds: u64,
}

async fn set_price(
    shared: Arc<Shared>,
    query: Result<Query<PriceChange>, QueryRejection>,
) -> Response {
    let change = match query {
        Ok(Query(change)) => change,
        Err(rejection) => return bad_request(&rejection.body_text()),
    };
    let pair: Pair = match change.pair.parse() {
        Ok(pair) => pair,
        Err(err) => return bad_request(&err.to_string()),
    };
    let price = match UsdPrice::parse_quote(&change.price) {
        Ok(price) => price,
        Err(err) => return bad_request(&format!("price: {err}")),
    };
    shared.set_price(pair, price);
    log::info!("mock exchange: {pair} set to {price}");
    axum::Json(serde_json::json!({"pair": pair, "price": price})).into_response()
}

async fn set_lag(shared: Arc<Shared>, query: Result<Query<LagChange>, QueryRejection>) -> Response {
    let seconds = match query {
        Ok(Query(change)) => change.seconds,
        Err(rejection) => return bad_request(&rejection.body_text()),
    };
    shared.set_quote_lag(Duration::from_secs(seconds));
    log::info!("mock exchange: Coingecko quotes lag {seconds} s");
    axum::Json(serde_json::json!({"quote_lag_seconds": seconds})).into_response()
}

fn bad_request(reason: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({"error": reason})),
    )
        .into_response()
}

fn step_walk(walk: &mut Walk, settings: &MockSettings) {
    if settings.tick.is_zero() {
        return;
    }
    // Cap the catch-up so a mock idle for days does not spin on one request.
    let steps = (walk.last_step.elapsed().as_nanos() / settings.tick.as_nanos()).min(10_000);
    for _ in 0..steps {
        let step = settings.volatility * walk.rng.random_range(-1.0..=1.0);
        walk.price = (walk.price * (1.0 + step)).max(0.01);
    }
    walk.last_step += settings.tick * steps as u32;
}

/// The source's real response shape, quoting each of `quotes` (Coinbase answers for one
/// currency: the first). `numeric` is false when the prices are deliberately not numbers, which
/// Coingecko (whose price is a JSON number) must then send as strings.
fn quote_body(source: Source, quotes: &[(Pair, String)], numeric: bool, updated_at: u64) -> String {
    let symbol = |pair: Pair| source.symbol(pair).unwrap_or_default();
    let each = |entry: &dyn Fn(&str, &str) -> String| {
        quotes
            .iter()
            .map(|(pair, price)| entry(symbol(*pair), price))
            .collect::<Vec<_>>()
            .join(",")
    };
    match source {
        Source::Coinbase => {
            let (symbol, price) = quotes
                .first()
                .map(|(pair, price)| (symbol(*pair), price.as_str()))
                .unwrap_or_default();
            format!(
                r#"{{"data":{{"currency":"{symbol}","rates":{{"AED":"11476.23","USD":"{price}","USDC":"{price}","EUR":"2700.10"}}}}}}"#
            )
        }
        Source::Coingecko => {
            let entries = each(&|id, price| {
                let usd = if numeric {
                    price.to_owned()
                } else {
                    format!(r#""{price}""#)
                };
                format!(r#""{id}":{{"usd":{usd},"last_updated_at":{updated_at}}}"#)
            });
            format!("{{{entries}}}")
        }
        Source::Kraken => {
            let tickers = each(&|key, price| {
                format!(
                    r#""{key}":{{"a":["{price}","1","1.000"],"b":["{price}","2","2.000"],"c":["{price}","0.10000000"],"v":["1000.1","5000.2"],"p":["{price}","{price}"],"t":[100,500],"l":["{price}","{price}"],"h":["{price}","{price}"],"o":"{price}"}}"#
                )
            });
            format!(r#"{{"error":[],"result":{{{tickers}}}}}"#)
        }
        Source::Binance => {
            let tickers =
                each(&|symbol, price| format!(r#"{{"symbol":"{symbol}","price":"{price}"}}"#));
            format!("[{tickers}]")
        }
    }
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_parses_back_to_the_prices_of_its_pairs_only() {
        for source in Source::ALL {
            for request in source.requests(PairSet::ALL) {
                let quotes: Vec<(Pair, String)> = request
                    .pairs
                    .iter()
                    .map(|pair| (pair, format!("{}.56", 1000 + pair as u32)))
                    .collect();
                let body = quote_body(source, &quotes, true, 1_763_700_000);
                for (pair, price) in &quotes {
                    let quote = source.parse(*pair, body.as_bytes()).unwrap();
                    assert_eq!(quote.price, UsdPrice::parse_quote(price).unwrap());
                    let dated = source == Source::Coingecko;
                    assert_eq!(quote.updated_at.is_some(), dated, "{source}");
                }
                for other in Pair::ALL
                    .iter()
                    .filter(|pair| !request.pairs.contains(**pair))
                {
                    assert!(source.parse(*other, body.as_bytes()).is_err(), "{source}");
                }
                let broken: Vec<(Pair, String)> = request
                    .pairs
                    .iter()
                    .map(|pair| (pair, "not-a-number".to_owned()))
                    .collect();
                let broken = quote_body(source, &broken, false, 0);
                for pair in request.pairs.iter() {
                    assert!(source.parse(pair, broken.as_bytes()).is_err(), "{source}");
                }
            }
        }
    }

    #[test]
    fn each_request_of_a_source_has_its_own_query_on_one_path() {
        for source in Source::ALL {
            let path_of = |request: &crate::price::Request| {
                request
                    .path
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            };
            let all = source.requests(PairSet::ALL);
            for pairs in [
                PairSet::ALL,
                PairSet::only(Pair::BtcUsd),
                [Pair::EthUsd, Pair::SolUsd].into_iter().collect(),
            ] {
                for request in source.requests(pairs) {
                    let (_, query) = request.path.split_once('?').unwrap();
                    assert_eq!(
                        pairs_of(source, Some(query)),
                        Some(request.pairs),
                        "{request:?}"
                    );
                    assert_eq!(path_of(&request), path_of(&all[0]));
                }
            }
            assert_eq!(pairs_of(source, Some("currency=DOGE")), None);
            assert_eq!(pairs_of(source, None), None);
        }
    }

    #[test]
    fn walk_moves_within_volatility_and_stays_positive() {
        let settings = MockSettings {
            price: UsdPrice::parse_quote("3000").unwrap(),
            volatility: 0.01,
            tick: Duration::from_millis(1),
            seed: Some(7),
            fail_rate: 0.0,
            faults: vec![],
            hang: Duration::ZERO,
            quote_lag: Duration::ZERO,
        };
        let mut walk = Walk {
            price: 3000.0,
            last_step: Instant::now() - Duration::from_millis(5),
            rng: StdRng::seed_from_u64(7),
        };
        step_walk(&mut walk, &settings);
        assert_ne!(walk.price, 3000.0);
        // At most 5 steps of at most ±1 % each.
        assert!(walk.price <= 3000.0 * 1.01f64.powi(5));
        assert!(walk.price >= 3000.0 * 0.99f64.powi(5));
        let mut zero = Walk {
            price: 0.01,
            last_step: Instant::now() - Duration::from_secs(1),
            rng: StdRng::seed_from_u64(1),
        };
        step_walk(
            &mut zero,
            &MockSettings {
                volatility: 0.9,
                ..settings
            },
        );
        assert!(zero.price >= 0.01);
    }
}
