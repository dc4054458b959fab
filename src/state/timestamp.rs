//! Timestamps as the state file holds them: RFC 3339 when qw writes, but the original
//! Python system wrote naive ISO times (`2025-08-05T14:03:11.123456`, local time) and,
//! through `json.dumps(default=str)`, occasionally things that are no timestamp at all.
//! Both must load; a value that is not a timestamp is kept exactly as it was.

use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, SecondsFormat, SubsecRound, TimeZone};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A point in time, or a value that was found where a timestamp belongs and is kept as is.
#[derive(Debug, Clone, PartialEq)]
pub enum Timestamp {
    /// A parsed instant with the offset it was written (or interpreted) with.
    At(DateTime<FixedOffset>),
    /// Anything else (kept verbatim so a rewrite loses nothing).
    Other(Value),
}

impl Timestamp {
    /// The current local time, to the microsecond (what Python's `fromisoformat` reads).
    pub fn now() -> Timestamp {
        Timestamp::At(Local::now().trunc_subsecs(6).fixed_offset())
    }

    /// Parse RFC 3339 or a naive ISO time (interpreted as local time); `None` otherwise.
    pub fn parse(s: &str) -> Option<Timestamp> {
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Some(Timestamp::At(t));
        }
        let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
            .ok()?;
        // A naive time inside a DST gap has no local meaning; keep it verbatim instead.
        let local = Local.from_local_datetime(&naive).earliest()?;
        Some(Timestamp::At(local.fixed_offset()))
    }

    /// The instant, if this is one.
    pub fn as_datetime(&self) -> Option<DateTime<FixedOffset>> {
        match self {
            Timestamp::At(t) => Some(*t),
            Timestamp::Other(_) => None,
        }
    }
}

/// When a usage limit resets or a pause ends: an instant when one could be computed,
/// else the words as the agent wrote them (`3pm (Europe/Berlin)`) or `unknown`. Stored
/// as one string (RFC 3339 for an instant), so the state file keeps its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetAt {
    /// A known instant.
    At(DateTime<FixedOffset>),
    /// Text no instant could be read from.
    Text(String),
}

impl ResetAt {
    /// An RFC 3339 instant, else the text as it is.
    pub fn parse(s: &str) -> ResetAt {
        DateTime::parse_from_rfc3339(s).map_or_else(|_| ResetAt::Text(s.to_owned()), ResetAt::At)
    }

    /// The instant, if this is one.
    pub fn as_datetime(&self) -> Option<DateTime<FixedOffset>> {
        match self {
            ResetAt::At(t) => Some(*t),
            ResetAt::Text(_) => None,
        }
    }
}

impl std::fmt::Display for ResetAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResetAt::At(t) => f.write_str(&t.to_rfc3339()),
            ResetAt::Text(s) => f.write_str(s),
        }
    }
}

impl Serialize for ResetAt {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResetAt {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        String::deserialize(de).map(|s| ResetAt::parse(&s))
    }
}

impl From<DateTime<FixedOffset>> for Timestamp {
    fn from(t: DateTime<FixedOffset>) -> Self {
        Timestamp::At(t)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Timestamp::At(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, false)),
            Timestamp::Other(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match &v {
            Value::String(s) => Timestamp::parse(s).unwrap_or(Timestamp::Other(v)),
            _ => Timestamp::Other(v),
        })
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn reset_times_are_instants_or_text_and_round_trip_as_strings() {
        let at = ResetAt::parse("2030-01-01T10:00:00+01:00");
        assert_eq!(at.as_datetime().map(|t| t.timestamp()), Some(1_893_488_400));
        let text = ResetAt::parse("3pm (Europe/Berlin)");
        assert_eq!(text, ResetAt::Text("3pm (Europe/Berlin)".into()));
        assert_eq!(text.as_datetime(), None);
        for r in [at, text, ResetAt::parse("unknown")] {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{r}\""));
            assert_eq!(serde_json::from_str::<ResetAt>(&json).unwrap(), r);
        }
        assert_eq!(
            ResetAt::parse("2030-01-01T10:00:00+01:00").to_string(),
            "2030-01-01T10:00:00+01:00"
        );
    }

    #[test]
    fn accepts_naive_with_and_without_micros_and_rfc3339() {
        let a = Timestamp::parse("2025-08-05T14:03:11.123456").unwrap();
        let b = Timestamp::parse("2025-08-05T12:00:00").unwrap();
        let c = Timestamp::parse("2025-08-05T12:00:00+02:00").unwrap();
        let d = Timestamp::parse("2025-08-05T12:00:00.5Z").unwrap();
        for t in [&a, &b, &c, &d] {
            assert!(t.as_datetime().is_some());
        }
        let naive = chrono::NaiveDate::from_ymd_opt(2025, 8, 5)
            .unwrap()
            .and_hms_micro_opt(14, 3, 11, 123_456)
            .unwrap();
        assert_eq!(a.as_datetime().unwrap().naive_local(), naive);
        assert_eq!(c.as_datetime().unwrap().offset().local_minus_utc(), 7200);
    }

    #[test]
    fn writes_rfc3339_and_reads_it_back_equal() {
        let t = Timestamp::parse("2025-08-05T14:03:11.123456").unwrap();
        let json = serde_json::to_string(&t).unwrap();
        let s: String = serde_json::from_str(&json).unwrap();
        assert!(DateTime::parse_from_rfc3339(&s).is_ok(), "{s}");
        let back: Timestamp = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn keeps_values_that_are_not_timestamps() {
        for raw in [r#""yesterday-ish""#, "12345", r#"{"a":1}"#] {
            let t: Timestamp = serde_json::from_str(raw).unwrap();
            assert!(matches!(t, Timestamp::Other(_)), "{raw}");
            let out = serde_json::to_string(&t).unwrap();
            assert_eq!(out, raw);
        }
    }
}
