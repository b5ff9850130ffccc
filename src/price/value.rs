//! `UsdPrice`: an exact USD amount with 8 decimals, the unit every other part of the system uses.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Decimals kept, as in Chainlink USD feeds and the `NUMERIC(38,8)` column.
pub const DECIMALS: u32 = 8;

/// The largest price accepted (of any pair), in whole dollars. Anything above is a broken source or a
/// broken message, not a market; it also keeps `price × 10⁸` well inside an `i64`.
pub const MAX_USD: i64 = 100_000_000;

/// A positive USD price with exactly [`DECIMALS`] decimals, at most [`MAX_USD`].
///
/// On the wire and in logs it is a decimal string with all 8 decimals (`"3124.56789000"`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsdPrice {
    e8: i64,
}

/// Why a number is not a usable price.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceValueError {
    #[error("price {0} is not positive")]
    NotPositive(String),
    #[error("price {0} is above the sanity limit of {MAX_USD} USD")]
    TooLarge(String),
    #[error("price {0} has more than {DECIMALS} decimals")]
    TooManyDecimals(String),
    #[error("{0:?} is not a decimal number")]
    NotANumber(String),
}

impl UsdPrice {
    /// Takes an exact price that already has at most 8 decimals (wire input: no silent rounding).
    pub fn from_exact(value: Decimal) -> Result<Self, PriceValueError> {
        if value.normalize().scale() > DECIMALS {
            return Err(PriceValueError::TooManyDecimals(value.to_string()));
        }
        Self::checked(value)
    }

    /// Rounds a quote to 8 decimals (half away from zero), then checks its range.
    ///
    /// Exchanges never quote below a cent's fraction that fine; what lies past the 8th decimal
    /// is float noise from JSON numbers, so rounding loses nothing real. A value that rounds to
    /// zero is rejected as non-positive.
    pub fn from_quote(value: Decimal) -> Result<Self, PriceValueError> {
        Self::checked(
            value.round_dp_with_strategy(DECIMALS, RoundingStrategy::MidpointAwayFromZero),
        )
    }

    /// Parses decimal text, plain (`3124.56`) or scientific (`3.12456e3`), then [`Self::from_quote`].
    pub fn parse_quote(text: &str) -> Result<Self, PriceValueError> {
        Self::from_quote(parse_decimal(text)?)
    }

    /// The price × 10⁸, as signed in the digest (`int256 price_e8`).
    pub fn from_e8(e8: i64) -> Result<Self, PriceValueError> {
        Self::checked(Decimal::new(e8, DECIMALS))
    }

    /// The price × 10⁸ (always positive).
    pub fn e8(self) -> i64 {
        self.e8
    }

    /// The exact decimal value, scale 8.
    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.e8, DECIMALS)
    }

    /// The relative distance `|self − other| / other`, e.g. `0.01` for 1 %.
    pub fn relative_deviation(self, other: UsdPrice) -> Decimal {
        let (a, b) = (self.to_decimal(), other.to_decimal());
        ((a - b) / b).abs()
    }

    fn checked(value: Decimal) -> Result<Self, PriceValueError> {
        if value <= Decimal::ZERO {
            return Err(PriceValueError::NotPositive(value.to_string()));
        }
        if value > Decimal::from(MAX_USD) {
            return Err(PriceValueError::TooLarge(value.to_string()));
        }
        let mut scaled = value;
        scaled.rescale(DECIMALS);
        // In range and scale 8, so the mantissa is below 10¹⁶ and fits an i64.
        let e8 = i64::try_from(scaled.mantissa())
            .map_err(|_| PriceValueError::TooLarge(value.to_string()))?;
        Ok(Self { e8 })
    }
}

/// Parses plain or scientific decimal text exactly (no float on the way).
pub fn parse_decimal(text: &str) -> Result<Decimal, PriceValueError> {
    let text = text.trim();
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str(text)
    };
    parsed.map_err(|_| PriceValueError::NotANumber(crate::logging::truncate_for_display(text)))
}

impl fmt::Display for UsdPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_decimal(), f)
    }
}

impl fmt::Debug for UsdPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UsdPrice({self})")
    }
}

impl FromStr for UsdPrice {
    type Err = PriceValueError;

    /// Strict: plain decimal text (`digits[.digits]`) with at most 8 decimals, as on the wire.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
        let plain = [whole, fraction]
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        if !plain {
            return Err(PriceValueError::NotANumber(
                crate::logging::truncate_for_display(text),
            ));
        }
        let value = Decimal::from_str(text)
            .map_err(|_| PriceValueError::NotANumber(crate::logging::truncate_for_display(text)))?;
        Self::from_exact(value)
    }
}

impl Serialize for UsdPrice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UsdPrice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn displays_all_eight_decimals() {
        let price = UsdPrice::from_e8(312_456_789_000).unwrap();
        assert_eq!(price.to_string(), "3124.56789000");
        assert_eq!(
            UsdPrice::from_exact(dec("3000")).unwrap().to_string(),
            "3000.00000000"
        );
        assert_eq!(price.e8(), 312_456_789_000);
    }

    #[test]
    fn quotes_are_rounded_to_eight_decimals() {
        let noisy = UsdPrice::parse_quote("3124.5600000000004").unwrap();
        assert_eq!(noisy.to_string(), "3124.56000000");
        let up = UsdPrice::parse_quote("1.000000005").unwrap();
        assert_eq!(up.e8(), 100_000_001);
        assert_eq!(
            UsdPrice::parse_quote("3.12456e3").unwrap().to_string(),
            "3124.56000000"
        );
        assert_eq!(UsdPrice::parse_quote("3000").unwrap().e8(), 300_000_000_000);
    }

    #[test]
    fn rejects_non_positive_absurd_and_non_numbers() {
        for text in ["0", "-1", "0.000000001", "-0.00000001"] {
            assert!(
                matches!(
                    UsdPrice::parse_quote(text),
                    Err(PriceValueError::NotPositive(_))
                ),
                "{text}"
            );
        }
        for text in [
            "100000000.00000001",
            "1e20",
            "79228162514264337593543950335",
        ] {
            assert!(
                matches!(
                    UsdPrice::parse_quote(text),
                    Err(PriceValueError::TooLarge(_))
                ),
                "{text}"
            );
        }
        for text in [
            "NaN", "inf", "Infinity", "", "abc", "1e999999", "1,5", "0x10",
        ] {
            assert!(
                matches!(
                    UsdPrice::parse_quote(text),
                    Err(PriceValueError::NotANumber(_))
                ),
                "{text}"
            );
        }
        assert!(UsdPrice::parse_quote("100000000").is_ok());
    }

    #[test]
    fn wire_form_is_strict_about_decimals() {
        assert!("3124.56789000".parse::<UsdPrice>().is_ok());
        assert!("3124.5".parse::<UsdPrice>().is_ok());
        assert!(matches!(
            "3124.567890001".parse::<UsdPrice>(),
            Err(PriceValueError::TooManyDecimals(_))
        ));
        // Trailing zeros past the 8th decimal do not change the value.
        assert!("3124.5678900000".parse::<UsdPrice>().is_ok());
        for text in ["1e3", "+3", " 3", "3.", ".5", "3_000", "-0"] {
            assert!(text.parse::<UsdPrice>().is_err(), "{text}");
        }
    }

    #[test]
    fn serde_round_trip_as_string() {
        let price = UsdPrice::from_e8(1).unwrap();
        let json = serde_json::to_string(&price).unwrap();
        assert_eq!(json, "\"0.00000001\"");
        assert_eq!(serde_json::from_str::<UsdPrice>(&json).unwrap(), price);
        assert!(serde_json::from_str::<UsdPrice>("3000").is_err());
    }

    #[test]
    fn relative_deviation() {
        let a = UsdPrice::parse_quote("3030").unwrap();
        let b = UsdPrice::parse_quote("3000").unwrap();
        assert_eq!(a.relative_deviation(b), dec("0.01"));
        assert_eq!(b.relative_deviation(b), Decimal::ZERO);
    }

    #[test]
    fn long_garbage_is_truncated_in_errors() {
        let err = UsdPrice::parse_quote(&"x".repeat(10_000)).unwrap_err();
        assert!(err.to_string().len() < 80, "{err}");
    }
}
