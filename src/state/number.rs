//! Numbers of the state as the original Python system writes them: counters of any size
//! (Python integers have no limit) and floats that may be `NaN`, `Infinity` or
//! `-Infinity` (`json.dump`'s default). The store reads the file through
//! `crate::jsontext` tags; the types here turn tags into values and back, so a rewrite
//! keeps every token.

use std::fmt;
use std::ops::AddAssign;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::jsontext;

/// A counter (`commands.total_executed`, `agents.total_executions`, …): a whole number ≥ 0
/// of any size. Beyond `u64` it is kept as its decimal digits and still counts up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Count(Repr);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Repr {
    Small(u64),
    /// Decimal digits of a number above `u64::MAX` (no sign, no leading zero).
    Big(String),
}

impl Count {
    /// Zero.
    pub const ZERO: Count = Count(Repr::Small(0));

    /// The value, if it fits in a `u64`.
    pub fn get(&self) -> Option<u64> {
        match &self.0 {
            Repr::Small(n) => Some(*n),
            Repr::Big(_) => None,
        }
    }

    /// The value, or `u64::MAX` when it is larger.
    pub fn saturating_u64(&self) -> u64 {
        self.get().unwrap_or(u64::MAX)
    }

    /// The nearest float (for averages).
    pub fn as_f64(&self) -> f64 {
        match &self.0 {
            Repr::Small(n) => *n as f64,
            Repr::Big(digits) => digits.parse().unwrap_or(f64::INFINITY),
        }
    }

    /// Raise the count to `n` if it is lower (a peak).
    pub fn raise_to(&mut self, n: u64) {
        if self.get().is_some_and(|v| v < n) {
            self.0 = Repr::Small(n);
        }
    }
}

impl Default for Count {
    fn default() -> Self {
        Count::ZERO
    }
}

impl From<u64> for Count {
    fn from(n: u64) -> Self {
        Count(Repr::Small(n))
    }
}

impl PartialEq<u64> for Count {
    fn eq(&self, other: &u64) -> bool {
        self.get() == Some(*other)
    }
}

impl AddAssign<u64> for Count {
    fn add_assign(&mut self, rhs: u64) {
        self.0 = match &self.0 {
            Repr::Small(n) => match n.checked_add(rhs) {
                Some(sum) => Repr::Small(sum),
                None => Repr::Big(add_decimal(&n.to_string(), rhs)),
            },
            Repr::Big(digits) => Repr::Big(add_decimal(digits, rhs)),
        };
    }
}

/// `digits + n` in decimal.
fn add_decimal(digits: &str, n: u64) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(digits.len() + 1);
    let mut carry = u128::from(n);
    for d in digits.bytes().rev() {
        let sum = u128::from(d - b'0') + carry;
        out.push(b'0' + (sum % 10) as u8);
        carry = sum / 10;
    }
    while carry > 0 {
        out.push(b'0' + (carry % 10) as u8);
        carry /= 10;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Small(n) => write!(f, "{n}"),
            Repr::Big(digits) => f.write_str(digits),
        }
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Small(n) => s.serialize_u64(*n),
            // Written back as the bare number by the store (`jsontext::untag`).
            Repr::Big(digits) => s.serialize_str(&jsontext::tag(digits)),
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl Visitor<'_> for CountVisitor {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number >= 0")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Count, E> {
                Ok(Count::from(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Count, E> {
                u64::try_from(n)
                    .map(Count::from)
                    .map_err(|_| E::custom(format!("a count cannot be negative ({n})")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Count, E> {
                match jsontext::token_of(s) {
                    Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                        Ok(Count(Repr::Big(t.to_owned())))
                    }
                    _ => Err(E::invalid_type(de::Unexpected::Str(s), &self)),
                }
            }
        }
        d.deserialize_any(CountVisitor)
    }
}

/// Serialize a float as Python does: non-finite values as `NaN`, `Infinity`, `-Infinity`
/// (through a tag the store turns back into the bare token).
pub(crate) fn ser_f64<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    match jsontext::non_finite_token(*v) {
        Some(token) => s.serialize_str(&jsontext::tag(token)),
        None => s.serialize_f64(*v),
    }
}

/// [`ser_f64`] for an optional float.
pub(crate) fn ser_opt_f64<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => ser_f64(v, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_grow_past_u64() {
        let mut c = Count::from(u64::MAX - 1);
        c += 1;
        assert_eq!(c, u64::MAX);
        c += 1;
        assert_eq!(c.to_string(), "18446744073709551616");
        assert_eq!(c.get(), None);
        assert_eq!(c.saturating_u64(), u64::MAX);
        c += u64::MAX;
        assert_eq!(c.to_string(), "36893488147419103231");
        let mut big: Count = serde_json::from_value(serde_json::Value::String(jsontext::tag(
            "99999999999999999999999",
        )))
        .unwrap();
        big += 1;
        assert_eq!(big.to_string(), "100000000000000000000000");
        assert_eq!(
            serde_json::to_value(&big).unwrap(),
            serde_json::Value::String(jsontext::tag("100000000000000000000000"))
        );
        big.raise_to(5);
        assert_eq!(big.to_string(), "100000000000000000000000");
        let mut small = Count::from(3);
        small.raise_to(5);
        small.raise_to(4);
        assert_eq!(small, 5);
        assert_eq!(small.as_f64(), 5.0);
    }

    #[test]
    fn counts_refuse_what_is_no_count() {
        for bad in [
            r#""12""#,
            "-1",
            "1.5",
            serde_json::to_string(&jsontext::tag("-5"))
                .unwrap()
                .as_str(),
            serde_json::to_string(&jsontext::tag("NaN"))
                .unwrap()
                .as_str(),
        ] {
            assert!(serde_json::from_str::<Count>(bad).is_err(), "{bad}");
        }
        assert_eq!(serde_json::from_str::<Count>("7").unwrap(), 7);
    }

    #[test]
    fn floats_write_non_finite_values_as_python_does() {
        #[derive(Serialize)]
        struct F {
            #[serde(serialize_with = "ser_f64")]
            a: f64,
            #[serde(serialize_with = "ser_opt_f64")]
            b: Option<f64>,
            #[serde(serialize_with = "ser_opt_f64")]
            c: Option<f64>,
        }
        let v = F {
            a: f64::NAN,
            b: Some(f64::NEG_INFINITY),
            c: None,
        };
        let text = jsontext::untag(serde_json::to_string(&v).unwrap());
        assert_eq!(text, r#"{"a":NaN,"b":-Infinity,"c":null}"#);
        let v = F {
            a: 2.5,
            b: Some(f64::INFINITY),
            c: Some(1.0),
        };
        let text = jsontext::untag(serde_json::to_string(&v).unwrap());
        assert_eq!(text, r#"{"a":2.5,"b":Infinity,"c":1.0}"#);
    }
}
