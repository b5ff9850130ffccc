//! A local stand-in for the four exchange APIs, so tests and offline demos never touch the
//! internet. It serves one random-walk ETH price on each exchange's real path and response shape
//! and, on request, a share of faulty answers to exercise the clients' error handling. Every
//! other pair is the same walk at its own scale ([`scale`]), so one `--price` sets them all.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::RawQuery;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::pair::Pair;
use crate::price::{Source, UsdPrice};

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
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::ServerError,
        Fault::RateLimited,
        Fault::Html,
        Fault::NonNumeric,
        Fault::Hang,
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
        });
        let app = Source::ALL.iter().fold(Router::new(), |router, &source| {
            let shared = Arc::clone(&shared);
            // A source's pairs share the path and differ in the query.
            let path = source.path(Pair::DEFAULT).unwrap_or_default();
            let path = path.split('?').next().unwrap_or_default();
            router.route(
                path,
                get(move |RawQuery(query): RawQuery| answer(Arc::clone(&shared), source, query)),
            )
        });
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

    /// Jumps the walk to `price`.
    pub fn set_price(&self, price: UsdPrice) {
        lock(&self.shared.walk).price = price.to_decimal().to_f64().unwrap_or(1.0);
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

/// The pair whose quote `source` serves at this query string.
fn pair_of(source: Source, query: Option<&str>) -> Option<Pair> {
    Pair::ALL.into_iter().find(|pair| {
        source
            .path(*pair)
            .is_some_and(|path| path.split_once('?').map(|(_, q)| q) == query)
    })
}

async fn answer(shared: Arc<Shared>, source: Source, query: Option<String>) -> Response {
    let Some(pair) = pair_of(source, query.as_deref()) else {
        return (StatusCode::NOT_FOUND, "unknown market\n").into_response();
    };
    let (price, fault, hang) = {
        let settings = lock(&shared.settings).clone();
        let mut walk = lock(&shared.walk);
        step_walk(&mut walk, &settings);
        let faulty = settings.fail_rate > 0.0 && walk.rng.random::<f64>() < settings.fail_rate;
        let fault = if faulty {
            settings.faults.choose(&mut walk.rng).copied()
        } else {
            None
        };
        (walk.price * scale(pair), fault, settings.hang)
    };
    // Cents, as exchanges quote, so every source shows the same value in its own format.
    let price = Decimal::from_f64(price)
        .unwrap_or(Decimal::ONE)
        .round_dp(2)
        .max(Decimal::new(1, 2));
    log::debug!("{source}: {pair} {price}, fault {fault:?}");
    match fault {
        None => json(quote_body(
            source,
            pair,
            &price.normalize().to_string(),
            true,
        )),
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
        Some(Fault::NonNumeric) => json(quote_body(source, pair, "not-a-number", false)),
        Some(Fault::Hang) => {
            tokio::time::sleep(hang).await;
            json(quote_body(
                source,
                pair,
                &price.normalize().to_string(),
                true,
            ))
        }
    }
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

/// The source's real response shape. `numeric` is false when `price` is deliberately not a
/// number, which Coingecko (whose price is a JSON number) must then send as a string.
fn quote_body(source: Source, pair: Pair, price: &str, numeric: bool) -> String {
    let symbol = source.symbol(pair).unwrap_or_default();
    match source {
        Source::Coinbase => format!(
            r#"{{"data":{{"currency":"{symbol}","rates":{{"AED":"11476.23","USD":"{price}","USDC":"{price}","EUR":"2700.10"}}}}}}"#
        ),
        Source::Coingecko if numeric => format!(r#"{{"{symbol}":{{"usd":{price}}}}}"#),
        Source::Coingecko => format!(r#"{{"{symbol}":{{"usd":"{price}"}}}}"#),
        Source::Kraken => format!(
            r#"{{"error":[],"result":{{"{symbol}":{{"a":["{price}","1","1.000"],"b":["{price}","2","2.000"],"c":["{price}","0.10000000"],"v":["1000.1","5000.2"],"p":["{price}","{price}"],"t":[100,500],"l":["{price}","{price}"],"h":["{price}","{price}"],"o":"{price}"}}}}}}"#
        ),
        Source::Binance => format!(r#"{{"symbol":"{symbol}","price":"{price}"}}"#),
    }
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_parses_back_to_the_price_of_its_pair_only() {
        for source in Source::ALL {
            for pair in Pair::ALL {
                let body = quote_body(source, pair, "3124.56", true);
                assert_eq!(
                    source.parse(pair, body.as_bytes()).unwrap().to_string(),
                    "3124.56000000",
                    "{source} {pair}"
                );
                let other = Pair::ALL.into_iter().find(|other| *other != pair).unwrap();
                assert!(
                    source.parse(other, body.as_bytes()).is_err(),
                    "{source} {pair}"
                );
                let broken = quote_body(source, pair, "not-a-number", false);
                assert!(source.parse(pair, broken.as_bytes()).is_err(), "{source}");
            }
        }
    }

    #[test]
    fn each_pair_of_a_source_has_its_own_query_on_one_path() {
        for source in Source::ALL {
            for pair in Pair::ALL {
                let path = source.path(pair).unwrap();
                let (_, query) = path.split_once('?').unwrap();
                assert_eq!(pair_of(source, Some(query)), Some(pair), "{path}");
                assert_eq!(
                    path.split('?').next(),
                    source.path(Pair::DEFAULT).unwrap().split('?').next()
                );
            }
            assert_eq!(pair_of(source, Some("currency=DOGE")), None);
            assert_eq!(pair_of(source, None), None);
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
