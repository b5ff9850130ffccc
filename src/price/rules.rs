//! Which quotes of a pair count, and the price they make: the rules that keep one wrong source
//! from moving a node's observation. Pure functions of the quotes and the time, no IO.
//!
//! 1. **Stale.** A quote whose source says when it last updated it (Coingecko's
//!    `last_updated_at`) is left out when that is more than `max_quote_age` ago.
//! 2. **Outlier.** Each remaining quote is compared with the *other* remaining quotes (never
//!    with itself) — see [`QuoteRules::outliers`] for the exact rule.
//! 3. **Price.** The median of the quotes left, when at least `min_sources` are left; else no
//!    price at all, and the node signs nothing for the pair.

use std::fmt;
use std::time::{Duration, SystemTime};

use rust_decimal::Decimal;

use super::{Quote, UsdPrice};

crate::labels::label_values! {
    /// Why a quote that arrived was left out, as the `kind` label of `source_exclusions` names it.
    pub enum ExclusionKind {
        Outlier => "outlier",
        Stale => "stale",
    }
}

/// A quote that arrived but is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// Older than `max_quote_age` by the source's own timestamp.
    Stale { age: Duration, max: Duration },
    /// Further than `max` from the others' median (or the interval of their two middle quotes):
    /// `deviation` is measured to the nearer of `low` and `high`, relative to the smaller of
    /// the two prices compared.
    Outlier {
        price: UsdPrice,
        low: UsdPrice,
        high: UsdPrice,
        deviation: Decimal,
        max: Decimal,
    },
}

impl Exclusion {
    pub fn kind(&self) -> ExclusionKind {
        match self {
            Self::Stale { .. } => ExclusionKind::Stale,
            Self::Outlier { .. } => ExclusionKind::Outlier,
        }
    }
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stale { age, max } => write!(
                f,
                "stale: updated {} ago, more than --max-quote-age {}",
                humantime::format_duration(*age),
                humantime::format_duration(*max)
            ),
            Self::Outlier {
                price,
                low,
                high,
                deviation,
                max,
            } => {
                let reference = if low == high {
                    format!("median {low}")
                } else {
                    format!("middle quotes {low}–{high}")
                };
                write!(
                    f,
                    "outlier: {price} is {} from the other sources' {reference}, more than {}",
                    percent(*deviation),
                    percent(*max)
                )
            }
        }
    }
}

/// `0.0213…` as `2.13 %`.
fn percent(ratio: Decimal) -> String {
    format!(
        "{} %",
        (ratio * Decimal::ONE_HUNDRED).round_dp(2).normalize()
    )
}

/// A pair's price from its sources, and how many sources it is the median of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcedPrice {
    pub price: UsdPrice,
    pub sources: usize,
}

/// The rules' settings (`--min-sources`, `--max-quote-age`, `--max-source-deviation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteRules {
    /// Fewer quotes left than this is no price.
    pub min_sources: usize,
    /// Older quotes are stale.
    pub max_quote_age: Duration,
    /// Quotes further than this ratio (0.02 = 2 %) from the others are outliers.
    pub max_deviation: Decimal,
}

impl QuoteRules {
    /// Each quote's exclusion, if it has one, in the order of `quotes` (the quotes of one pair,
    /// one per source): first the stale ones, then the outliers among the rest.
    pub fn judge(&self, quotes: &[Quote], now: SystemTime) -> Vec<Option<Exclusion>> {
        let mut verdicts: Vec<Option<Exclusion>> =
            quotes.iter().map(|quote| self.stale(quote, now)).collect();
        let fresh: Vec<usize> = (0..quotes.len())
            .filter(|&index| verdicts[index].is_none())
            .collect();
        let prices: Vec<UsdPrice> = fresh.iter().map(|&index| quotes[index].price).collect();
        for (index, outlier) in fresh.into_iter().zip(self.outliers(&prices)) {
            verdicts[index] = outlier;
        }
        verdicts
    }

    /// The quote's exclusion as stale: it is more than `max_quote_age` older than `now`. A quote
    /// without a timestamp, or dated after `now` (clocks differ), is not stale.
    pub fn stale(&self, quote: &Quote, now: SystemTime) -> Option<Exclusion> {
        let age = now.duration_since(quote.updated_at?).ok()?;
        (age > self.max_quote_age).then_some(Exclusion::Stale {
            age,
            max: self.max_quote_age,
        })
    }

    /// Each price's exclusion as an outlier, in the order of `prices` (one per source).
    ///
    /// A price is compared with the **others** (every price but itself), sorted:
    /// - an odd number of others has one middle value: the reference `r` is that value;
    /// - an even number of others has two middle values `low ≤ high`: a price inside
    ///   `[low, high]` is not an outlier; outside it, the reference `r` is the nearer of the two.
    ///
    /// The price is an outlier when the larger of it and `r` exceeds the smaller by more than
    /// `max_deviation` of the smaller: `(max(p, r) − min(p, r)) / min(p, r) > max_deviation`
    /// (symmetric, so two prices judge each other alike).
    ///
    /// The plain median of an even count (the mean of the middle two) would turn an honest
    /// quote into an outlier beside one wild one: among {3000, 3001, 6000}, the others of 3000
    /// are {3001, 6000}, whose mean is 4500, but 3000 is within 2 % of 3001. The interval keeps
    /// it. Every price is judged against the same set of prices, so the order of the sources
    /// does not matter. Consequences:
    /// - a single price has no others and is never an outlier;
    /// - two prices further apart than `max_deviation` are both outliers: nothing tells which
    ///   one is right;
    /// - two camps of equal size (3000, 3001 against 6000, 6001) are all outliers, for the
    ///   same reason; a larger camp keeps its prices and leaves the smaller one out;
    /// - exactly `max_deviation` away is not an outlier.
    pub fn outliers(&self, prices: &[UsdPrice]) -> Vec<Option<Exclusion>> {
        (0..prices.len())
            .map(|index| {
                let mut others: Vec<UsdPrice> = prices
                    .iter()
                    .enumerate()
                    .filter(|&(other, _)| other != index)
                    .map(|(_, price)| *price)
                    .collect();
                others.sort_unstable();
                self.outlier(prices[index], &others)
            })
            .collect()
    }

    /// `price` judged against the sorted `others`.
    fn outlier(&self, price: UsdPrice, others: &[UsdPrice]) -> Option<Exclusion> {
        let middle = others.len() / 2;
        let (low, high) = match others.len() {
            0 => return None,
            n if n % 2 == 1 => (others[middle], others[middle]),
            _ => (others[middle - 1], others[middle]),
        };
        let nearest = if price < low {
            low
        } else if price > high {
            high
        } else {
            return None;
        };
        // Relative to the smaller of the two, so that two prices judge each other alike.
        let deviation = price.max(nearest).relative_deviation(price.min(nearest));
        (deviation > self.max_deviation).then_some(Exclusion::Outlier {
            price,
            low,
            high,
            deviation,
            max: self.max_deviation,
        })
    }

    /// The median of the used quotes, when there are at least `min_sources` of them.
    pub fn price(&self, used: &[UsdPrice]) -> Option<SourcedPrice> {
        if used.len() < self.min_sources {
            return None;
        }
        sources_median(used).map(|price| SourcedPrice {
            price,
            sources: used.len(),
        })
    }
}

/// The median of a node's quotes; for an even count the mean of the middle two, rounded half
/// up to 10⁻⁸, so that no source is preferred. Not a report's value, which is always one
/// member's observation ([`crate::signed::median`], OCR's element ⌊n/2⌋).
fn sources_median(prices: &[UsdPrice]) -> Option<UsdPrice> {
    let mut sorted = prices.to_vec();
    sorted.sort_unstable();
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[middle]),
        _ => {
            let (low, high) = (sorted[middle - 1].e8(), sorted[middle].e8());
            // Both are positive and below 10¹⁶, so neither the sum nor the result can fail.
            UsdPrice::from_e8(low + (high - low + 1) / 2).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: QuoteRules = QuoteRules {
        min_sources: 2,
        max_quote_age: Duration::from_secs(120),
        max_deviation: Decimal::from_parts(2, 0, 0, false, 2),
    };

    fn usd(text: &str) -> UsdPrice {
        UsdPrice::parse_quote(text).unwrap()
    }

    /// Which of `prices` are outliers.
    fn outliers(prices: &[&str]) -> Vec<bool> {
        let prices: Vec<UsdPrice> = prices.iter().map(|text| usd(text)).collect();
        RULES
            .outliers(&prices)
            .iter()
            .map(Option::is_some)
            .collect()
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(sources_median(&[]), None);
        assert_eq!(sources_median(&[usd("3")]), Some(usd("3")));
        assert_eq!(
            sources_median(&[usd("5"), usd("1"), usd("3")]),
            Some(usd("3"))
        );
        assert_eq!(
            sources_median(&[usd("4"), usd("1"), usd("2"), usd("100")]),
            Some(usd("3"))
        );
        assert_eq!(
            sources_median(&[usd("0.00000001"), usd("0.00000002")]),
            Some(usd("0.00000002"))
        );
        let max = UsdPrice::from_e8(super::super::MAX_USD * 100_000_000).unwrap();
        assert_eq!(sources_median(&[max, max]), Some(max));
    }

    #[test]
    fn one_wild_quote_among_three_is_the_only_outlier() {
        // 3000's others are {3001, 6000}: their mean, 4500, would make it an outlier too.
        assert_eq!(outliers(&["3000", "3001", "6000"]), [false, false, true]);
        assert_eq!(outliers(&["6000", "3000", "3001"]), [true, false, false]);
    }

    #[test]
    fn two_quotes_far_apart_are_both_left_out() {
        assert_eq!(outliers(&["3000", "6000"]), [true, true]);
        assert_eq!(outliers(&["3000", "3050"]), [false, false]);
    }

    #[test]
    fn two_camps_of_two_are_all_left_out_and_a_larger_camp_wins() {
        assert_eq!(
            outliers(&["3000", "3001", "6000", "6001"]),
            [true, true, true, true]
        );
        assert_eq!(outliers(&["3000", "6000", "6001"]), [true, false, false]);
        assert_eq!(
            outliers(&["3000", "3001", "3002", "6000"]),
            [false, false, false, true]
        );
    }

    #[test]
    fn ties_and_the_boundary_are_kept() {
        assert_eq!(
            outliers(&["3000", "3000", "3000", "6000"]),
            [false, false, false, true]
        );
        assert_eq!(outliers(&["3000", "3000"]), [false, false]);
        // 3060 is exactly 2 % above 3000, whichever of the two is judged.
        assert_eq!(outliers(&["3000", "3060"]), [false, false]);
        assert_eq!(outliers(&["3000", "3060.01"]), [true, true]);
        // Inside the middle interval is never an outlier, however wide the interval.
        assert_eq!(outliers(&["4500", "3000", "6000"]), [false, true, true]);
    }

    #[test]
    fn a_single_quote_has_nothing_to_deviate_from() {
        assert_eq!(outliers(&["3000"]), [false]);
        assert!(outliers(&[]).is_empty());
    }

    #[test]
    fn an_outlier_says_how_far_and_from_what() {
        let prices = [usd("3000"), usd("3001"), usd("6000")];
        let verdicts = RULES.outliers(&prices);
        let exclusion = verdicts[2].as_ref().unwrap();
        assert_eq!(exclusion.kind(), ExclusionKind::Outlier);
        assert_eq!(
            exclusion.to_string(),
            "outlier: 6000.00000000 is 99.93 % from the other sources' middle quotes \
             3000.00000000–3001.00000000, more than 2 %"
        );
        let verdicts = RULES.outliers(&[usd("3000"), usd("3000"), usd("2000")]);
        assert!(
            verdicts[2]
                .as_ref()
                .unwrap()
                .to_string()
                .contains("from the other sources' median 3000.00000000"),
            "{verdicts:?}"
        );
    }

    #[test]
    fn old_quotes_are_stale_and_undated_or_future_ones_are_not() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_700_000);
        let quote = |age: Option<i64>| Quote {
            price: usd("3000"),
            updated_at: age.map(|age| {
                if age >= 0 {
                    now - Duration::from_secs(age.unsigned_abs())
                } else {
                    now + Duration::from_secs(age.unsigned_abs())
                }
            }),
        };
        assert_eq!(RULES.stale(&quote(None), now), None);
        assert_eq!(RULES.stale(&quote(Some(120)), now), None);
        assert_eq!(RULES.stale(&quote(Some(-30)), now), None);
        let stale = RULES.stale(&quote(Some(300)), now).unwrap();
        assert_eq!(stale.kind(), ExclusionKind::Stale);
        assert_eq!(
            stale.to_string(),
            "stale: updated 5m ago, more than --max-quote-age 2m"
        );
    }

    #[test]
    fn stale_quotes_are_left_out_before_outliers_are_judged() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_700_000);
        let fresh = |price: &str| Quote {
            price: usd(price),
            updated_at: None,
        };
        // The stale quote would have made the two others a camp against one.
        let stale = Quote {
            price: usd("6000"),
            updated_at: Some(now - Duration::from_secs(600)),
        };
        let verdicts = RULES.judge(&[fresh("3000"), stale, fresh("3001")], now);
        let kinds: Vec<Option<ExclusionKind>> = verdicts
            .iter()
            .map(|verdict| verdict.as_ref().map(Exclusion::kind))
            .collect();
        assert_eq!(kinds, [None, Some(ExclusionKind::Stale), None]);
    }

    #[test]
    fn the_price_needs_min_sources_quotes() {
        assert_eq!(RULES.price(&[usd("3000")]), None);
        assert_eq!(
            RULES.price(&[usd("3000"), usd("3001")]),
            Some(SourcedPrice {
                price: usd("3000.5"),
                sources: 2
            })
        );
        assert_eq!(
            RULES.price(&[usd("3000"), usd("3001"), usd("3010")]),
            Some(SourcedPrice {
                price: usd("3001"),
                sources: 3
            })
        );
    }
}
