//! The price feed against the mock exchange and misbehaving servers, over real HTTP on loopback.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use price_oracle::mock_exchange::{Fault, MockExchange, MockSettings};
use price_oracle::pair::{Pair, PairSet};
use price_oracle::price::{FeedSettings, PriceFeed, Source, SourceError, UsdPrice};
use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LOOPBACK: &str = "127.0.0.1:0";

fn usd(text: &str) -> UsdPrice {
    UsdPrice::parse_quote(text).unwrap()
}

async fn mock(fail_rate: f64, faults: &[Fault]) -> MockExchange {
    let settings = MockSettings {
        fail_rate,
        faults: faults.to_vec(),
        hang: Duration::from_secs(3),
        ..MockSettings::steady(usd("3000"))
    };
    MockExchange::start(LOOPBACK.parse().unwrap(), settings)
        .await
        .unwrap()
}

fn endpoint(base: &str, source: Source) -> (Source, Url) {
    (source, base.parse().unwrap())
}

fn feed(base: &str, sources: &[Source], min_sources: usize, retries: u32) -> PriceFeed {
    PriceFeed::new(FeedSettings {
        pairs: PairSet::ALL,
        endpoints: sources.iter().map(|&s| endpoint(base, s)).collect(),
        min_sources,
        timeout: Duration::from_millis(300),
        retries,
        backoff: Duration::from_millis(10),
    })
    .unwrap()
}

#[tokio::test]
async fn all_four_sources_agree_with_the_mock() {
    let exchange = mock(0.0, &[]).await;
    let feed = feed(&exchange.base_url(), &Source::ALL, 4, 0);
    let (median, report) = feed.fetch_median(Pair::EthUsd).await.unwrap();
    assert_eq!(median, usd("3000"));
    assert_eq!(report.prices(), vec![usd("3000"); 4]);

    exchange.set_price(usd("3124.56"));
    let (median, _) = feed.fetch_median(Pair::EthUsd).await.unwrap();
    assert_eq!(median.to_string(), "3124.56000000");
}

#[tokio::test]
async fn every_source_quotes_every_pair_at_its_own_market() {
    let exchange = mock(0.0, &[]).await;
    let feed = feed(&exchange.base_url(), &Source::ALL, 4, 0);
    for (pair, expected) in [(Pair::BtcUsd, "90000"), (Pair::SolUsd, "150")] {
        let (median, report) = feed.fetch_median(pair).await.unwrap();
        assert_eq!(median, usd(expected), "{pair}");
        assert_eq!(report.prices(), vec![usd(expected); 4], "{pair}");
    }
    let urls: Vec<String> = feed
        .quote_urls(Pair::BtcUsd)
        .iter()
        .map(|(_, url)| url.as_str().replace(&exchange.base_url(), ""))
        .collect();
    assert_eq!(
        urls,
        [
            "/v2/exchange-rates?currency=BTC",
            "/api/v3/simple/price?ids=bitcoin&vs_currencies=usd",
            "/0/public/Ticker?pair=XBTUSD",
            "/api/v3/ticker/price?symbol=BTCUSDT",
        ]
    );
}

/// Every fault kind against every source: the right classification, retried only when a retry
/// can help, and never a panic.
#[tokio::test]
async fn each_fault_kind_for_each_source() {
    let cases: [(Fault, &[&str], u32); 5] = [
        (Fault::ServerError, &["http_status"], 2),
        (Fault::RateLimited, &["rate_limited"], 2),
        (Fault::Html, &["not_json"], 1),
        (Fault::NonNumeric, &["bad_value", "bad_shape"], 1),
        (Fault::Hang, &["timeout"], 2),
    ];
    for (fault, kinds, attempts) in cases {
        let exchange = mock(1.0, &[fault]).await;
        let feed = feed(&exchange.base_url(), &Source::ALL, 1, 1);
        let report = feed.fetch_all(Pair::EthUsd).await;
        assert_eq!(report.results.len(), 4);
        for (source, result) in &report.results {
            let err: &SourceError = result.as_ref().unwrap_err();
            assert!(
                kinds.contains(&err.failure.kind().as_str()),
                "{fault:?} at {source}: {err}"
            );
            assert_eq!(err.attempts, attempts, "{fault:?} at {source}: {err}");
            let line = err.to_string();
            assert!(!line.contains('\n') && line.len() < 200, "{line}");
        }
        let err = report.median(1).unwrap_err().to_string();
        assert!(err.contains("only 0 of 1"), "{err}");
    }
}

#[tokio::test]
async fn a_dead_source_leaves_the_median_of_the_others() {
    let exchange = mock(0.0, &[]).await;
    let closed = closed_port().await;
    let mut settings = feed(
        &exchange.base_url(),
        &[Source::Coinbase, Source::Kraken],
        2,
        1,
    )
    .settings()
    .clone();
    settings
        .endpoints
        .push(endpoint(&format!("http://{closed}"), Source::Binance));
    let feed = PriceFeed::new(settings.clone()).unwrap();
    let (median, report) = feed.fetch_median(Pair::EthUsd).await.unwrap();
    assert_eq!(median, usd("3000"));
    let failures = report.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, Source::Binance);
    assert_eq!(failures[0].1.failure.kind().as_str(), "connect");
    assert_eq!(failures[0].1.attempts, 2);

    settings.min_sources = 3;
    let err = PriceFeed::new(settings)
        .unwrap()
        .fetch_median(Pair::EthUsd)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("only 2 of 3") && err.contains("binance"),
        "{err}"
    );
}

#[tokio::test]
async fn oversized_and_cut_off_answers_are_errors() {
    let big = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n{body}",
        len = 200_000,
        body = " ".repeat(200_000)
    );
    let oversized = raw_server(big).await;
    let report = feed(&format!("http://{oversized}"), &[Source::Coinbase], 1, 0)
        .fetch_all(Pair::EthUsd)
        .await;
    let err = report.results[0].1.as_ref().unwrap_err();
    assert_eq!(err.failure.kind().as_str(), "body_too_large", "{err}");

    let cut = raw_server("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"data\"".into()).await;
    let report = feed(&format!("http://{cut}"), &[Source::Coinbase], 1, 0)
        .fetch_all(Pair::EthUsd)
        .await;
    assert!(report.results[0].1.is_err());
}

#[tokio::test]
async fn retries_are_bounded_in_time() {
    let exchange = mock(1.0, &[Fault::Hang]).await;
    let feed = feed(&exchange.base_url(), &Source::ALL, 1, 2);
    let started = Instant::now();
    let report = feed.fetch_all(Pair::EthUsd).await;
    // Three attempts of 300 ms plus two short backoffs, all sources in parallel.
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "{:?}",
        started.elapsed()
    );
    assert!(report.results.iter().all(|(_, result)| result.is_err()));
}

async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind(LOOPBACK).await.unwrap();
    listener.local_addr().unwrap()
}

/// Answers every connection with `response` verbatim, then closes it.
async fn raw_server(response: String) -> SocketAddr {
    let listener = TcpListener::bind(LOOPBACK).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}
