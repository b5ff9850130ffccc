//! The price feed against the mock exchange and misbehaving servers, over real HTTP on loopback:
//! one request per source per observation, the rules that leave quotes out, blocked sources, and
//! the mock's own controls.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use price_oracle::metrics::Metrics;
use price_oracle::mock_exchange::{Fault, MockExchange, MockSettings};
use price_oracle::pair::{Pair, PairSet};
use price_oracle::price::{
    ExclusionKind, FailureKind, FeedError, FeedSettings, PairReport, PriceFeed, QuoteRules, Source,
    SourceCondition, SourceError, SourcedPrice, Unused, UsdPrice,
};
use reqwest::Url;
use rust_decimal::Decimal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LOOPBACK: &str = "127.0.0.1:0";

/// Every test's request timeout; an observation's budget is twice this.
const TIMEOUT: Duration = Duration::from_millis(300);

fn usd(text: &str) -> UsdPrice {
    UsdPrice::parse_quote(text).unwrap()
}

async fn mock_at(price: &str, fail_rate: f64, faults: &[Fault]) -> MockExchange {
    let settings = MockSettings {
        fail_rate,
        faults: faults.to_vec(),
        hang: Duration::from_secs(3),
        ..MockSettings::steady(usd(price))
    };
    MockExchange::start(LOOPBACK.parse().unwrap(), settings)
        .await
        .unwrap()
}

async fn mock(fail_rate: f64, faults: &[Fault]) -> MockExchange {
    mock_at("3000", fail_rate, faults).await
}

/// A feed of every pair from `sources`, each at its base URL.
fn feed_of(sources: &[(Source, String)], min_sources: usize, retries: u32) -> PriceFeed {
    PriceFeed::new(FeedSettings {
        pairs: PairSet::ALL,
        endpoints: sources
            .iter()
            .map(|(source, base)| (*source, base.parse::<Url>().unwrap()))
            .collect(),
        rules: QuoteRules {
            min_sources,
            max_quote_age: Duration::from_secs(120),
            max_deviation: Decimal::new(2, 2),
        },
        timeout: TIMEOUT,
        retries,
        backoff: Duration::from_millis(10),
    })
    .unwrap()
}

/// A feed of every pair from `sources`, all at `base`.
fn feed(base: &str, sources: &[Source], min_sources: usize, retries: u32) -> PriceFeed {
    let sources: Vec<(Source, String)> = sources.iter().map(|s| (*s, base.to_owned())).collect();
    feed_of(&sources, min_sources, retries)
}

/// The report of `pair` in an observation.
fn of(reports: &[(Pair, PairReport)], pair: Pair) -> &PairReport {
    &reports.iter().find(|(p, _)| *p == pair).unwrap().1
}

/// What `source` gave for the pair.
fn outcome(report: &PairReport, source: Source) -> &Result<UsdPrice, Unused> {
    &report
        .sources
        .iter()
        .find(|answer| answer.source == source)
        .unwrap()
        .outcome
}

fn price(report: &PairReport) -> SourcedPrice {
    *report.result.as_ref().unwrap()
}

fn failure(report: &PairReport, source: Source) -> &SourceError {
    match outcome(report, source) {
        Err(Unused::Failed(error)) => error,
        other => panic!("{source}: {other:?}"),
    }
}

fn exclusion_kind(report: &PairReport, source: Source) -> ExclusionKind {
    match outcome(report, source) {
        Err(Unused::Excluded { exclusion, .. }) => exclusion.kind(),
        other => panic!("{source}: {other:?}"),
    }
}

#[tokio::test]
async fn all_four_sources_agree_with_the_mock() {
    let exchange = mock(0.0, &[]).await;
    let feed = feed(&exchange.base_url(), &Source::ALL, 4, 0);
    let reports = feed.observe().await;
    let eth = of(&reports, Pair::EthUsd);
    assert_eq!(
        price(eth),
        SourcedPrice {
            price: usd("3000"),
            sources: 4
        }
    );
    assert!(eth.sources.iter().all(|s| s.outcome == Ok(usd("3000"))));

    exchange.set_price(usd("3124.56"));
    let reports = feed.observe().await;
    assert_eq!(
        price(of(&reports, Pair::EthUsd)).price.to_string(),
        "3124.56000000"
    );
    assert_eq!(feed.sources_used(Pair::EthUsd), Some(4));
}

/// Three pairs cost one request per source, except Coinbase's one per pair; each pair is read
/// from the shared answer at its own market.
#[tokio::test]
async fn one_request_per_source_covers_every_pair() {
    let exchange = mock(0.0, &[]).await;
    let feed = feed(&exchange.base_url(), &Source::ALL, 4, 0);
    let reports = feed.observe().await;
    for (pair, expected) in [
        (Pair::EthUsd, "3000"),
        (Pair::BtcUsd, "90000"),
        (Pair::SolUsd, "150"),
    ] {
        let report = of(&reports, pair);
        assert_eq!(price(report).price, usd(expected), "{pair}");
        assert!(
            report
                .sources
                .iter()
                .all(|s| s.outcome == Ok(usd(expected))),
            "{pair}: {:?}",
            report.sources
        );
    }
    let requests: Vec<u64> = Source::ALL.iter().map(|s| exchange.requests(*s)).collect();
    assert_eq!(
        requests,
        [3, 1, 1, 1],
        "coinbase, coingecko, kraken, binance"
    );

    let paths: Vec<String> = feed
        .requests()
        .iter()
        .map(|request| request.url.as_str().replace(&exchange.base_url(), ""))
        .collect();
    assert_eq!(
        paths,
        [
            "/v2/exchange-rates?currency=ETH",
            "/v2/exchange-rates?currency=BTC",
            "/v2/exchange-rates?currency=SOL",
            "/api/v3/simple/price?ids=ethereum,bitcoin,solana&vs_currencies=usd&include_last_updated_at=true",
            "/0/public/Ticker?pair=ETHUSD,XBTUSD,SOLUSD",
            "/api/v3/ticker/price?symbols=%5B%22ETHUSDT%22,%22BTCUSDT%22,%22SOLUSDT%22%5D",
        ]
    );
}

/// Every fault kind against every source: the right classification, retried only when a retry
/// can help and fits in the observation, and never a panic.
#[tokio::test]
async fn each_fault_kind_for_each_source() {
    let cases: [(Fault, &[FailureKind], u32); 6] = [
        (Fault::ServerError, &[FailureKind::HttpStatus], 2),
        // Retry-After: 1 s is past the observation's end (twice 300 ms): no second attempt.
        (Fault::RateLimited, &[FailureKind::RateLimited], 1),
        (Fault::Html, &[FailureKind::NotJson], 1),
        (
            Fault::NonNumeric,
            &[FailureKind::BadValue, FailureKind::BadShape],
            1,
        ),
        // The second attempt gets what is left of the observation's time, and times out too.
        (Fault::Hang, &[FailureKind::Timeout], 2),
        (Fault::Blocked, &[FailureKind::Blocked], 1),
    ];
    for (fault, kinds, attempts) in cases {
        let exchange = mock(1.0, &[fault]).await;
        let feed = feed(&exchange.base_url(), &Source::ALL, 1, 1);
        let reports = feed.observe().await;
        assert_eq!(reports.len(), 3);
        for (pair, report) in &reports {
            assert_eq!(report.sources.len(), 4);
            for source in Source::ALL {
                let err = failure(report, source);
                assert!(
                    kinds.contains(&err.failure.kind()),
                    "{fault:?} at {source} {pair}: {err}"
                );
                assert_eq!(err.attempts, attempts, "{fault:?} at {source}: {err}");
                let line = err.to_string();
                assert!(!line.contains('\n') && line.len() < 200, "{line}");
            }
            let err = report.result.as_ref().unwrap_err().to_string();
            assert!(err.contains("only 0 of 1"), "{err}");
        }
    }
}

#[tokio::test]
async fn a_dead_source_leaves_the_median_of_the_others() {
    let exchange = mock(0.0, &[]).await;
    let closed = format!("http://{}", closed_port().await);
    let sources = [
        (Source::Coinbase, exchange.base_url()),
        (Source::Kraken, exchange.base_url()),
        (Source::Binance, closed),
    ];
    let reports = feed_of(&sources, 2, 1).observe().await;
    let eth = of(&reports, Pair::EthUsd);
    assert_eq!(
        price(eth),
        SourcedPrice {
            price: usd("3000"),
            sources: 2
        }
    );
    let err = failure(eth, Source::Binance);
    assert_eq!(err.failure.kind(), FailureKind::Connect);
    assert_eq!(err.attempts, 2);

    // Fewer than --min-sources usable: no price, and the error names who is missing and why.
    let reports = feed_of(&sources, 3, 1).observe().await;
    let err = of(&reports, Pair::EthUsd).result.as_ref().unwrap_err();
    assert!(
        matches!(
            err,
            FeedError::TooFewSources {
                used: 2,
                required: 3,
                ..
            }
        ),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(
        err.contains("only 2 of 3") && err.contains("binance: error: connection failed"),
        "{err}"
    );
}

#[tokio::test]
async fn an_outlier_source_is_left_out_and_counted() {
    let honest = mock_at("3000", 0.0, &[]).await;
    let wild = mock_at("6000", 0.0, &[]).await;
    let sources = [
        (Source::Coinbase, honest.base_url()),
        (Source::Coingecko, honest.base_url()),
        (Source::Kraken, honest.base_url()),
        (Source::Binance, wild.base_url()),
    ];
    let feed = feed_of(&sources, 2, 0);
    let metrics = Metrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    for (pair, report) in feed.observe().await {
        metrics.observed(pair, &report);
        assert_eq!(price(&report).sources, 3, "{pair}");
        assert_eq!(
            exclusion_kind(&report, Source::Binance),
            ExclusionKind::Outlier
        );
    }
    let binance = metrics.source_excluded(Source::Binance, ExclusionKind::Outlier);
    assert_eq!(binance.get(), 3, "one per pair");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        r#"oracle_source_exclusions_total{source="binance",kind="outlier"} 3"#,
        r#"oracle_source_exclusions_total{source="coinbase",kind="stale"} 0"#,
        r#"oracle_source_last_quote{source="binance",pair="ETH/USD"} 6000.0"#,
        r#"oracle_observation_sources{pair="ETH/USD"} 3"#,
        r#"oracle_source_fetch_seconds_count{source="coinbase"} 3"#,
        r#"oracle_source_fetch_seconds_count{source="kraken"} 3"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
    }
    let status = feed
        .source_statuses()
        .into_iter()
        .find(|status| status.source == "binance")
        .unwrap();
    assert_eq!(status.state, SourceCondition::Ok);
    assert!(
        status.last_exclusion.unwrap().contains("outlier: 6000"),
        "the last exclusion says what was left out"
    );
}

/// With two sources far apart nothing tells which is right: neither is used.
#[tokio::test]
async fn two_sources_far_apart_give_no_price() {
    let low = mock_at("3000", 0.0, &[]).await;
    let high = mock_at("6000", 0.0, &[]).await;
    let sources = [
        (Source::Coinbase, low.base_url()),
        (Source::Kraken, high.base_url()),
    ];
    let reports = feed_of(&sources, 1, 0).observe().await;
    let eth = of(&reports, Pair::EthUsd);
    assert_eq!(
        exclusion_kind(eth, Source::Coinbase),
        ExclusionKind::Outlier
    );
    assert_eq!(exclusion_kind(eth, Source::Kraken), ExclusionKind::Outlier);
    let err = eth.result.as_ref().unwrap_err().to_string();
    assert!(err.contains("only 0 of 1"), "{err}");
}

#[tokio::test]
async fn a_stale_coingecko_quote_is_left_out() {
    let exchange = mock(0.0, &[]).await;
    let feed = feed(&exchange.base_url(), &Source::ALL, 2, 0);
    let reports = feed.observe().await;
    assert_eq!(price(of(&reports, Pair::EthUsd)).sources, 4);

    // Through the mock's HTTP control, as an operator would.
    let answer = reqwest::Client::new()
        .post(format!("{}/mock/lag?seconds=300", exchange.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let reports = feed.observe().await;
    for (pair, report) in &reports {
        assert_eq!(price(report).sources, 3, "{pair}");
        assert_eq!(
            exclusion_kind(report, Source::Coingecko),
            ExclusionKind::Stale
        );
    }

    exchange.set_quote_lag(Duration::from_secs(60));
    let reports = feed.observe().await;
    assert_eq!(price(of(&reports, Pair::EthUsd)).sources, 4);
}

/// HTTP 451: counted once, not asked again on the next observation, shown as blocked for an
/// hour; the others go on.
#[tokio::test]
async fn a_blocked_source_is_skipped_for_an_hour() {
    let exchange = mock(0.0, &[]).await;
    let blocking = mock(1.0, &[Fault::Blocked]).await;
    let sources = [
        (Source::Coinbase, exchange.base_url()),
        (Source::Kraken, exchange.base_url()),
        (Source::Binance, blocking.base_url()),
    ];
    let feed = feed_of(&sources, 2, 2);
    let metrics = Metrics::default();
    let blocked_failures = || {
        Metrics::counter(
            &metrics.source_failures,
            price_oracle::metrics::SourceFailureLabels {
                source: Source::Binance,
                kind: FailureKind::Blocked,
            },
        )
        .get()
    };

    let reports = feed.observe().await;
    for (pair, report) in &reports {
        metrics.observed(*pair, report);
        assert_eq!(price(report).sources, 2);
        let err = failure(report, Source::Binance);
        assert_eq!(err.failure.kind(), FailureKind::Blocked, "{err}");
        assert_eq!(err.attempts, 1, "a block is not retried");
    }
    assert_eq!(blocking.requests(Source::Binance), 1);
    assert_eq!(blocked_failures(), 3, "one per pair of the one request");

    let before = SystemTime::now();
    let reports = feed.observe().await;
    for (pair, report) in &reports {
        metrics.observed(*pair, report);
        assert_eq!(price(report).sources, 2);
        match outcome(report, Source::Binance) {
            Err(Unused::Blocked { until }) => {
                let hour = Duration::from_secs(3600);
                assert!(
                    *until > before + hour - Duration::from_secs(60),
                    "{until:?}"
                );
                assert!(*until <= before + hour, "{until:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            report
                .sources
                .iter()
                .find(|s| s.source == Source::Binance)
                .unwrap()
                .elapsed,
            None
        );
    }
    assert_eq!(blocking.requests(Source::Binance), 1, "not asked again");
    assert_eq!(blocked_failures(), 3, "skipping is not another failure");

    let status = feed
        .source_statuses()
        .into_iter()
        .find(|status| status.source == "binance")
        .unwrap();
    assert_eq!(status.state, SourceCondition::Blocked);
    assert!(status.blocked_until.is_some());
    assert!(status.last_error.unwrap().contains("451"));
}

/// A source that hangs costs the observation its budget (twice the request timeout), not the
/// sum of its retries; the others' quotes still make the price.
#[tokio::test]
async fn a_hanging_source_delays_the_observation_by_at_most_its_budget() {
    let exchange = mock(0.0, &[]).await;
    let hanging = mock(1.0, &[Fault::Hang]).await;
    let sources = [
        (Source::Coinbase, exchange.base_url()),
        (Source::Kraken, exchange.base_url()),
        (Source::Binance, hanging.base_url()),
    ];
    let feed = feed_of(&sources, 2, 5);
    assert_eq!(feed.budget(), TIMEOUT * 2);
    let started = Instant::now();
    let reports = feed.observe().await;
    let took = started.elapsed();
    assert!(
        took < feed.budget() + Duration::from_millis(400),
        "{took:?}"
    );
    let eth = of(&reports, Pair::EthUsd);
    assert_eq!(price(eth).sources, 2);
    assert_eq!(
        failure(eth, Source::Binance).failure.kind(),
        FailureKind::Timeout
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
    let reports = feed(&format!("http://{oversized}"), &[Source::Coinbase], 1, 0)
        .observe()
        .await;
    let err = failure(of(&reports, Pair::EthUsd), Source::Coinbase);
    assert_eq!(err.failure.kind(), FailureKind::BodyTooLarge, "{err}");

    let cut = raw_server("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"data\"".into()).await;
    let reports = feed(&format!("http://{cut}"), &[Source::Coinbase], 1, 0)
        .observe()
        .await;
    assert!(of(&reports, Pair::EthUsd).result.is_err());
}

#[tokio::test]
async fn posting_a_price_moves_the_mock_and_bad_input_is_refused() {
    let exchange = mock(0.0, &[]).await;
    let client = reqwest::Client::new();
    let post = |query: &str| {
        client
            .post(format!("{}/mock/price?{query}", exchange.base_url()))
            .send()
    };

    let answer = post("pair=BTC/USD&price=90300").await.unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"pair": "BTC/USD", "price": "90300.00000000"})
    );
    let reports = feed(&exchange.base_url(), &Source::ALL, 4, 0)
        .observe()
        .await;
    assert_eq!(price(of(&reports, Pair::BtcUsd)).price, usd("90300"));
    // The other pairs follow the same walk.
    assert_eq!(price(of(&reports, Pair::EthUsd)).price, usd("3010"));

    for query in [
        "pair=DOGE/USD&price=1",
        "pair=ETH/USD&price=-5",
        "pair=ETH/USD&price=cheap",
        "pair=ETH/USD",
        "",
    ] {
        let answer = post(query).await.unwrap();
        assert_eq!(answer.status(), 400, "{query}");
        let body: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{query}: {body}"
        );
    }
    let answer = client
        .post(format!("{}/mock/lag?seconds=soon", exchange.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
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
