//! How qw writes numbers, times and ids for people: durations, costs, token counts,
//! timestamps, one-line text, and the order task ids are listed in.
//!
//! Owns: every human-facing rendering of these values, so `qw status`, `qw spec-status`
//! and the dashboard say the same thing the same way. Must not: read files, know about
//! HTML or terminals (callers escape or pad), or parse state files (timestamps are
//! parsed by [`crate::state::Timestamp`]).

use std::cmp::Ordering;

use chrono::{DateTime, Local, TimeZone};

use crate::state::Timestamp;

/// `0.4s`, `12.3s`, `8m 30s`, `2h 03m`; negative durations keep their sign; `?` when the
/// value is not a number.
pub(crate) fn duration(secs: f64) -> String {
    if !secs.is_finite() {
        return "?".into();
    }
    let neg = if secs < 0.0 { "-" } else { "" };
    let s = secs.abs();
    if s < 59.95 {
        return format!("{neg}{s:.1}s");
    }
    // Display only: whole seconds, and the value is finite.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole = s.round() as u64;
    if whole < 3600 {
        format!("{neg}{}m {:02}s", whole / 60, whole % 60)
    } else {
        format!("{neg}{}h {:02}m", whole / 3600, (whole % 3600) / 60)
    }
}

/// A duration that may be unknown: `–` when it is.
pub(crate) fn duration_or_dash(secs: Option<f64>) -> String {
    secs.map_or_else(|| "–".to_owned(), duration)
}

/// US dollars: four decimals below one dollar (agent runs cost fractions of a cent),
/// two from there.
pub(crate) fn usd(cost: f64) -> String {
    if cost.abs() < 1.0 {
        format!("${cost:.4}")
    } else {
        format!("${cost:.2}")
    }
}

/// A token count: `950`, `12.3k`, `1.2M`.
pub(crate) fn tokens(n: u64) -> String {
    // Display only: precision loss past 2^52 tokens does not matter.
    #[allow(clippy::cast_precision_loss)]
    let f = n as f64;
    if n >= 1_000_000 {
        format!("{:.1}M", f / 1_000_000.0)
    } else if n >= 1_000 {
        format!("{:.1}k", f / 1_000.0)
    } else {
        n.to_string()
    }
}

/// A timestamp in local time (`2025-08-05 14:03:11`), or the raw value it holds.
pub(crate) fn local_time(t: &Timestamp) -> String {
    match t {
        Timestamp::At(at) => at
            .with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Timestamp::Other(v) => match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

/// The local time of day (`14:03:11`) of an instant.
pub(crate) fn clock<Tz: TimeZone>(t: &DateTime<Tz>) -> String {
    t.with_timezone(&Local).format("%H:%M:%S").to_string()
}

/// A text timestamp (RFC 3339 or the original's naive ISO) as [`local_time`]; the text
/// itself when it is no timestamp.
pub(crate) fn local_time_text(s: &str) -> String {
    Timestamp::parse(s).map_or_else(|| s.to_owned(), |t| local_time(&t))
}

/// Seconds from `from` to `to` (negative when `to` is earlier).
pub(crate) fn seconds_between<A: TimeZone, B: TimeZone>(
    from: &DateTime<A>,
    to: &DateTime<B>,
) -> f64 {
    let micros = to
        .naive_utc()
        .signed_duration_since(from.naive_utc())
        .num_microseconds()
        .unwrap_or(i64::MAX);
    // Display precision: microseconds to seconds.
    #[allow(clippy::cast_precision_loss)]
    let secs = micros as f64 / 1e6;
    secs
}

/// Whitespace (newlines included) folded to single spaces, the ends trimmed.
pub(crate) fn fold_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s` cut after `max` characters, `…` marking the cut (agent evidence and activity).
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
}

/// Whitespace folded to single spaces, cut at `max` characters (with `…`).
pub(crate) fn one_line(s: &str, max: usize) -> String {
    let line = printable(&fold_whitespace(s)).into_owned();
    if line.chars().count() > max {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        line
    }
}

/// `s` as one line of a record file or of the terminal: every control character,
/// newline and tab included, shown escaped (`\n`, `\t`, `\r`, `\u{1b}`, `\u{0}`), so
/// text from an agent or tasks.md can neither forge a record or a line of its own nor
/// carry terminal escape sequences (the workflow's progress lines, the log file, the
/// failed-suggestion record all go through it).
pub(crate) fn escaped_line(s: &str) -> std::borrow::Cow<'_, str> {
    escape_controls(
        s,
        |_| false,
        |c, out| match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.extend(c.escape_unicode()),
        },
    )
}

/// `s` safe for a terminal: control characters other than newline and tab (an agent's
/// text can carry ESC sequences from the repository it read) are shown escaped
/// (`\u{1b}`), never sent raw.
pub(crate) fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    escape_controls(
        s,
        |c| c == '\n' || c == '\t',
        |c, out| out.extend(c.escape_unicode()),
    )
}

/// `s` with each control character not `kept` written by `escape`; borrowed when there
/// is none.
fn escape_controls(
    s: &str,
    kept: impl Fn(char) -> bool,
    escape: impl Fn(char, &mut String),
) -> std::borrow::Cow<'_, str> {
    let escaped = |c: char| c.is_control() && !kept(c);
    if !s.chars().any(escaped) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if escaped(c) {
            escape(c, &mut out);
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Order task ids as people read them: `1 < 1.1 < 1.2 < 1.10 < 2 < 10`. Numeric
/// segments compare as numbers and come before text ones; text compares as text; equal
/// segment lists fall back to comparing the whole ids (`01` vs `1`), so the order is
/// total and consistent with equality.
pub(crate) fn compare_task_ids(a: &str, b: &str) -> Ordering {
    let mut x = a.split('.');
    let mut y = b.split('.');
    loop {
        match (x.next(), y.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => p.cmp(q),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn control_characters_never_reach_a_terminal_raw() {
        assert_eq!(printable("plain\ttext\n"), "plain\ttext\n");
        assert!(matches!(printable("ok"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(printable("\u{1b}[31mRED\u{7}"), "\\u{1b}[31mRED\\u{7}");
        assert_eq!(
            one_line("a \u{1b}]0;title\u{7} b", 80),
            "a \\u{1b}]0;title\\u{7} b"
        );
        assert!(!one_line("\u{9b}31m", 80).contains('\u{9b}'));
    }
    use super::*;

    #[test]
    fn escaped_line_keeps_text_on_one_line_without_control_characters() {
        assert_eq!(escaped_line("qw exec -- true"), "qw exec -- true");
        assert_eq!(escaped_line("a\nb\r\tc\u{1b}[2J"), "a\\nb\\r\\tc\\u{1b}[2J");
        assert!(!escaped_line("x\n\u{7}").chars().any(char::is_control));
    }

    #[test]
    fn durations_read_well_at_every_scale() {
        let cases = [
            (0.44, "0.4s"),
            (42.0, "42.0s"),
            (59.96, "1m 00s"),
            (90.0, "1m 30s"),
            (510.499_999, "8m 30s"),
            (7380.0, "2h 03m"),
            (-5.0, "-5.0s"),
            (f64::NAN, "?"),
            (f64::INFINITY, "?"),
        ];
        for (secs, want) in cases {
            assert_eq!(duration(secs), want, "{secs}");
        }
        assert_eq!(duration_or_dash(None), "–");
    }

    #[test]
    fn costs_and_tokens() {
        assert_eq!(usd(0.0084), "$0.0084");
        assert_eq!(usd(0.95), "$0.9500");
        assert_eq!(usd(12.345), "$12.35");
        assert_eq!(tokens(950), "950");
        assert_eq!(tokens(12_345), "12.3k");
        assert_eq!(tokens(1_250_000), "1.2M");
    }

    #[test]
    fn timestamps_in_local_time_or_verbatim() {
        let t = Timestamp::parse("2025-08-05T14:03:11.123456").unwrap();
        assert_eq!(local_time(&t), "2025-08-05 14:03:11");
        assert_eq!(local_time(&Timestamp::Other(serde_json::json!(5))), "5");
        assert_eq!(
            local_time(&Timestamp::Other(serde_json::json!("soon"))),
            "soon"
        );
        assert_eq!(local_time_text("whenever"), "whenever");
        let a = Timestamp::parse("2026-01-01T10:00:00+00:00")
            .unwrap()
            .as_datetime()
            .unwrap();
        let b = Timestamp::parse("2026-01-01T11:01:30+01:00")
            .unwrap()
            .as_datetime()
            .unwrap();
        assert!((seconds_between(&a, &b) - 90.0).abs() < 1e-9);
    }

    #[test]
    fn one_line_folds_and_cuts() {
        assert_eq!(one_line("a\n  b", 10), "a b");
        assert_eq!(one_line("abcdef", 4), "abc…");
    }

    #[test]
    fn task_ids_sort_naturally_and_totally() {
        let mut ids = vec!["10", "2", "1.10", "1.2", "1", "b", "a", "1.a", "1.1", "01"];
        ids.sort_by(|a, b| compare_task_ids(a, b));
        assert_eq!(
            ids,
            ["01", "1", "1.1", "1.2", "1.10", "1.a", "2", "10", "a", "b"]
        );
        assert_eq!(compare_task_ids("1", "1"), Ordering::Equal);
    }
}
