//! JSON as other programs write it: numbers serde_json cannot hold exactly, Python's
//! `NaN`/`Infinity`, a UTF-8 byte-order mark.
//!
//! Owns: the *tagging* of such tokens before serde_json sees a text, and the untagging of
//! serialized output. A token serde_json cannot represent exactly (an integer beyond
//! `i64`/`u64`, a float that overflows `f64`, and — in the [`Dialect::Python`] dialect —
//! `NaN`, `Infinity`, `-Infinity`) is replaced by a JSON string holding a NUL, a marker and
//! the token verbatim. serde_json then parses the text; typed fields that understand tags
//! (`state::schema`) turn them into values, and every other place (unknown keys, free-form
//! maps) carries the string along untouched. [`untag`] turns those strings in serialized
//! output back into the original tokens, byte for byte.
//!
//! Why tags and not serde_json's `arbitrary_precision`: that feature is global to the crate
//! graph and breaks `#[serde(flatten)]` beside typed numeric fields, which the state schema
//! uses on every struct; and it would still refuse `NaN`.
//!
//! Containers nested deeper than [`MAX_PARSED_DEPTH`] are tagged the same way: the whole
//! container, checked to be JSON by an iterative scanner, becomes one tag string holding
//! its text (hex), so serde_json never meets its recursion limit (128) nor needs a deep
//! stack, and the value is written back byte for byte. Python's `json` reads and writes
//! far deeper documents: one must never be called "not JSON", quarantined, or rewritten.
//!
//! Must not: know any file format beyond JSON text, or do I/O. A string that itself starts
//! with NUL followed by the marker is read as a tag (no JSON writer produces one).

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Value;

/// Which tokens are accepted besides standard JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// RFC 8259 JSON (Claude Code's settings): numbers of any size or precision.
    Json,
    /// What Python's `json.dump` writes by default: also `NaN`, `Infinity`, `-Infinity`.
    Python,
}

/// The decoded form of a tag: NUL, then this marker, then the token.
const MARKER: &str = "\u{0}qw-num:";
/// The marker as serde_json escapes it inside a string literal.
const ESCAPED_MARKER: &str = "\\u0000qw-num:";

/// The marker of a raw tag (NUL, `qw-raw:`, then the container's text in hex) as serde_json
/// escapes it inside a string literal.
const ESCAPED_RAW_MARKER: &str = "\\u0000qw-raw:";

/// The deepest container serde_json is given: deeper ones are carried as raw text (see
/// the module doc). Far below serde_json's limit of 128, far above any qw structure.
pub(crate) const MAX_PARSED_DEPTH: usize = 64;

/// The UTF-8 byte-order mark, as text.
pub(crate) const BOM: char = '\u{feff}';

/// `text` without a leading UTF-8 byte-order mark.
pub(crate) fn strip_bom(text: &str) -> &str {
    text.strip_prefix(BOM).unwrap_or(text)
}

/// The tag string for `token` (what serde_json sees in place of the token).
pub(crate) fn tag(token: &str) -> String {
    format!("{MARKER}{token}")
}

/// The token a tag string stands for; `None` for any other string.
pub(crate) fn token_of(s: &str) -> Option<&str> {
    s.strip_prefix(MARKER)
}

/// The float a token stands for: `NaN`, `Infinity`, `-Infinity`, or a JSON number (the
/// nearest `f64`; infinite when it overflows).
pub(crate) fn token_f64(token: &str) -> Option<f64> {
    match token {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        t if is_json_number(t) => t.parse().ok(),
        _ => None,
    }
}

/// The token Python writes for a float that JSON cannot hold; `None` when it is finite.
pub(crate) fn non_finite_token(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("Infinity")
    } else if v == f64::NEG_INFINITY {
        Some("-Infinity")
    } else {
        None
    }
}

/// State bytes as the original Python system reads them, ready for serde_json: UTF-8
/// (else why not, e.g. `not UTF-8 text (byte 12)`), a leading BOM skipped, Python's
/// `NaN`/`Infinity` and numbers of any size tagged ([`tag_numbers`]).
pub(crate) fn python_text(bytes: &[u8]) -> Result<Cow<'_, str>, String> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(tag_numbers(strip_bom(text), Dialect::Python)),
        Err(e) => Err(format!("not UTF-8 text (byte {})", e.valid_up_to())),
    }
}

/// Replace every token serde_json cannot hold exactly, and every container nested deeper
/// than [`MAX_PARSED_DEPTH`] that is valid JSON of `dialect`, with a tag; borrowed when
/// there is none (the usual case). Anything that is not a token of `dialect` is left as it
/// is, so serde_json reports it. Line numbers are unchanged (number tags never span lines;
/// a raw tag is followed by as many newlines as the text it stands for held).
pub(crate) fn tag_numbers(text: &str, dialect: Dialect) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    let mut depth = 0usize;
    // Set once a deep container is not valid JSON: serde_json reports it, and no deeper
    // one is scanned again (which would make a broken file quadratic).
    let mut broken = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => i = string_end(bytes, i),
            b'{' | b'[' if depth >= MAX_PARSED_DEPTH && !broken => {
                match container_end(bytes, i, dialect) {
                    Some(end) => {
                        let raw = text.get(i..end).unwrap_or_default();
                        let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 32));
                        o.push_str(text.get(copied..i).unwrap_or_default());
                        o.push('"');
                        o.push_str(ESCAPED_RAW_MARKER);
                        for byte in raw.bytes() {
                            let _ = write!(o, "{byte:02x}");
                        }
                        o.push('"');
                        o.extend(raw.bytes().filter(|&c| c == b'\n').map(|_| '\n'));
                        copied = end;
                        i = end;
                    }
                    None => {
                        broken = true;
                        depth += 1;
                        i += 1;
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' | b'N' | b'I' => {
                let end = token_end(bytes, i);
                let token = text.get(i..end).unwrap_or_default();
                if needs_tag(token, dialect) {
                    let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 32));
                    o.push_str(text.get(copied..i).unwrap_or_default());
                    o.push('"');
                    o.push_str(ESCAPED_MARKER);
                    o.push_str(token);
                    o.push('"');
                    copied = end;
                }
                i = end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(text.get(copied..).unwrap_or_default());
            Cow::Owned(o)
        }
    }
}

/// Turn tags in serde_json output back into their tokens and texts, byte for byte.
pub(crate) fn untag(json: String) -> String {
    untag_numbers(untag_raw(json))
}

/// Turn raw tags (deep containers) back into the text they stand for.
fn untag_raw(json: String) -> String {
    let pattern = format!("\"{ESCAPED_RAW_MARKER}");
    if !json.contains(&pattern) {
        return json;
    }
    let mut out = String::with_capacity(json.len());
    let mut rest = json.as_str();
    while let Some(at) = rest.find(&pattern) {
        let after = rest.get(at + pattern.len()..).unwrap_or_default();
        let hex_len = after.find('"').unwrap_or(after.len());
        out.push_str(rest.get(..at).unwrap_or_default());
        match (after.len() > hex_len)
            .then(|| from_hex(after.get(..hex_len).unwrap_or_default()))
            .flatten()
        {
            Some(raw) => {
                out.push_str(&raw);
                rest = after.get(hex_len + 1..).unwrap_or_default();
            }
            None => {
                // Not something `tag_numbers` made: keep it as it is.
                out.push_str(pattern.as_str());
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The text whose UTF-8 bytes `hex` spells (two lowercase digits a byte).
fn from_hex(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16).filter(|_| !c.is_ascii_uppercase());
            u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()
        })
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Turn number tags back into their tokens.
fn untag_numbers(json: String) -> String {
    let pattern = format!("\"{ESCAPED_MARKER}");
    if !json.contains(&pattern) {
        return json;
    }
    let mut out = String::with_capacity(json.len());
    let mut rest = json.as_str();
    while let Some(at) = rest.find(&pattern) {
        let after = rest.get(at + pattern.len()..).unwrap_or_default();
        let token_len = after.find('"').unwrap_or(after.len());
        let token = after.get(..token_len).unwrap_or_default();
        out.push_str(rest.get(..at).unwrap_or_default());
        if after.len() > token_len && is_token(token) {
            out.push_str(token);
            rest = after.get(token_len + 1..).unwrap_or_default();
        } else {
            // Not something `tag_numbers` made: keep it as it is.
            out.push_str(pattern.as_str());
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `v` as compact JSON with its original tokens (for messages that quote a value).
pub(crate) fn display(v: &Value) -> String {
    untag(v.to_string())
}

/// Index just past the string literal that starts at `start` (a `"`).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut j = start + 1;
    while let Some(&b) = bytes.get(j) {
        match b {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    bytes.len()
}

/// Index just past the container (`{` or `[`) that starts at `start`, when it is valid JSON
/// of `dialect` (every string, escape, number, literal and separator checked); `None`
/// otherwise. Iterative: any depth costs one byte of stack per level, on the heap.
fn container_end(bytes: &[u8], start: usize, dialect: Dialect) -> Option<usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum Want {
        /// A value (or the close of the array just opened, when `true`).
        Value(bool),
        /// A key (or the close of the object just opened, when `true`).
        Key(bool),
        Colon,
        /// A comma or the close of the current container.
        Next,
    }
    let mut open: Vec<u8> = Vec::new();
    let mut want = Want::Value(false);
    let mut i = start;
    loop {
        while bytes
            .get(i)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            i += 1;
        }
        let b = *bytes.get(i)?;
        let close = match (want, b) {
            (Want::Value(_), b'{') => {
                open.push(b'{');
                want = Want::Key(true);
                i += 1;
                false
            }
            (Want::Value(_), b'[') => {
                open.push(b'[');
                want = Want::Value(true);
                i += 1;
                false
            }
            (Want::Value(true), b']') | (Want::Key(true), b'}') => true,
            (Want::Value(_), b'"') => {
                i = checked_string_end(bytes, i)?;
                want = Want::Next;
                false
            }
            (Want::Value(_), _) => {
                let end = token_end(bytes, i);
                let token = std::str::from_utf8(bytes.get(i..end)?).ok()?;
                let ok = matches!(token, "true" | "false" | "null")
                    || is_json_number(token)
                    || (dialect == Dialect::Python
                        && matches!(token, "NaN" | "Infinity" | "-Infinity"));
                if !ok {
                    return None;
                }
                i = end;
                want = Want::Next;
                false
            }
            (Want::Key(_), b'"') => {
                i = checked_string_end(bytes, i)?;
                want = Want::Colon;
                false
            }
            (Want::Colon, b':') => {
                i += 1;
                want = Want::Value(false);
                false
            }
            (Want::Next, b',') => {
                i += 1;
                want = if open.last() == Some(&b'{') {
                    Want::Key(false)
                } else {
                    Want::Value(false)
                };
                false
            }
            (Want::Next, b']' | b'}') => true,
            _ => return None,
        };
        if close {
            let opened = open.pop()?;
            if (opened, b) != (b'[', b']') && (opened, b) != (b'{', b'}') {
                return None;
            }
            i += 1;
            if open.is_empty() {
                return Some(i);
            }
            want = Want::Next;
        }
    }
}

/// Index just past the string literal that starts at `start`, when it is valid JSON: no
/// control character inside, every escape one of JSON's.
fn checked_string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut j = start + 1;
    loop {
        match *bytes.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => match *bytes.get(j + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j += 2,
                b'u' => {
                    let hex = bytes.get(j + 2..j + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    j += 6;
                }
                _ => return None,
            },
            c if c < 0x20 => return None,
            _ => j += 1,
        }
    }
}

/// Index just past the number or bare word that starts at `start`.
fn token_end(bytes: &[u8], start: usize) -> usize {
    let mut j = start;
    while let Some(&b) = bytes.get(j) {
        if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.') {
            j += 1;
        } else {
            break;
        }
    }
    j
}

fn needs_tag(token: &str, dialect: Dialect) -> bool {
    match token {
        "NaN" | "Infinity" | "-Infinity" => dialect == Dialect::Python,
        t if is_json_number(t) => {
            let integer = !t.contains(['.', 'e', 'E']);
            if integer {
                t.parse::<i64>().is_err() && t.parse::<u64>().is_err()
            } else {
                t.parse::<f64>().is_ok_and(f64::is_infinite)
            }
        }
        _ => false,
    }
}

/// A token [`tag_numbers`] may produce.
fn is_token(t: &str) -> bool {
    matches!(t, "NaN" | "Infinity" | "-Infinity") || is_json_number(t)
}

/// RFC 8259 number syntax: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn is_json_number(t: &str) -> bool {
    let b = t.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let from = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - from
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str, dialect: Dialect) -> String {
        let tagged = tag_numbers(text, dialect);
        let v: Value = serde_json::from_str(&tagged).unwrap();
        untag(serde_json::to_string(&v).unwrap())
    }

    #[test]
    fn python_tokens_and_big_numbers_survive_a_round_trip() {
        let text = r#"{"a":NaN,"b":[Infinity,-Infinity,12345678901234567890123],"c":{"d":-98765432109876543210},"e":1e400,"f":-1E+999,"g":"NaN Infinity 123456789012345678901234","h":18446744073709551615,"i":-9223372036854775808,"j":2.5}"#;
        assert_eq!(round_trip(text, Dialect::Python), text);
    }

    #[test]
    fn plain_json_is_borrowed_untouched() {
        let text = r#"{"a": 1, "b": [2.50, -0, 1e10], "c": "x\"NaN\\"}"#;
        assert!(matches!(
            tag_numbers(text, Dialect::Python),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn json_dialect_leaves_nan_for_serde_to_refuse() {
        let tagged = tag_numbers(r#"{"a": NaN, "b": 1e400}"#, Dialect::Json);
        assert!(
            tagged.contains("NaN,") && tagged.contains(r#""\u0000qw-num:1e400""#),
            "{tagged}"
        );
        assert!(serde_json::from_str::<Value>(&tagged).is_err());
        let tagged = tag_numbers(r#"{"b": 1e400}"#, Dialect::Json);
        assert_eq!(
            serde_json::from_str::<Value>(&tagged).unwrap()["b"],
            Value::String(tag("1e400"))
        );
    }

    #[test]
    fn strings_that_look_like_tokens_are_not_tagged() {
        for text in [
            r#"["NaN"]"#,
            r#"["\"", NaNx]"#,
            r#"{"k\\": "Infinity"}"#,
            r#"[01, 1., .5, 1e, --1, +1, nan, infinity, -NaN]"#,
        ] {
            let tagged = tag_numbers(text, Dialect::Python);
            assert!(!tagged.contains(ESCAPED_MARKER), "{text} -> {tagged}");
        }
    }

    #[test]
    fn untag_leaves_foreign_strings_alone() {
        for s in [
            r#"["\u0000qw-num:1; rm"]"#,
            r#"["\u0000qw-num:"]"#,
            r#"["\u0000qw-num:12"#,
        ] {
            assert_eq!(untag(s.to_owned()), s);
        }
        assert_eq!(untag(r#"["\u0000qw-num:12"]"#.to_owned()), "[12]");
    }

    #[test]
    fn tokens_convert_to_floats() {
        assert!(token_f64("NaN").unwrap().is_nan());
        assert_eq!(token_f64("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(token_f64("1e400"), Some(f64::INFINITY));
        assert_eq!(
            token_f64("12345678901234567890123"),
            Some(1.2345678901234568e22)
        );
        assert_eq!(token_f64("nan"), None);
        assert_eq!(non_finite_token(f64::NAN), Some("NaN"));
        assert_eq!(non_finite_token(1.0), None);
    }

    #[test]
    fn display_gives_the_original_tokens() {
        assert_eq!(
            display(&serde_json::json!({"x": tag("NaN")})),
            r#"{"x":NaN}"#
        );
    }

    #[test]
    fn deep_containers_are_carried_as_raw_text_and_given_back_verbatim() {
        let deep = |n: usize, inner: &str| format!("{}{inner}{}", "[".repeat(n), "]".repeat(n));
        for (text, dialect) in [
            (format!("{{\"a\": {}}}", deep(10_000, "")), Dialect::Json),
            (
                format!(
                    "{{\"a\": {},\n\"b\": 1}}",
                    deep(200, "1.50, \"]\\\"\", {\"k\":\n NaN}")
                ),
                Dialect::Python,
            ),
        ] {
            let tagged = tag_numbers(&text, dialect);
            assert!(tagged.contains(ESCAPED_RAW_MARKER));
            // Line numbers stay: as many newlines as before.
            assert_eq!(tagged.matches('\n').count(), text.matches('\n').count());
            let v: Value = serde_json::from_str(&tagged).unwrap();
            let back = untag(serde_json::to_string(&v).unwrap());
            let squeeze = |t: &str| t.split_whitespace().collect::<String>();
            assert_eq!(squeeze(&back), squeeze(&text));
        }
    }

    #[test]
    fn a_deep_container_that_is_not_json_is_left_for_serde_to_refuse() {
        for (bad, dialect) in [
            ("[1 2]", Dialect::Json),
            ("[NaN]", Dialect::Json),
            ("[\"\\x\"]", Dialect::Python),
            ("{\"a\" 1}", Dialect::Python),
            ("[1,]", Dialect::Python),
            ("{\"a\": 1]", Dialect::Python),
            ("[\"\u{1}\"]", Dialect::Python),
        ] {
            let text = format!("{}{bad}{}", "[".repeat(100), "]".repeat(100));
            let tagged = tag_numbers(&text, dialect);
            assert!(!tagged.contains(ESCAPED_RAW_MARKER), "{bad}");
            assert!(serde_json::from_str::<Value>(&tagged).is_err(), "{bad}");
        }
        // Unclosed: quadratic rescans are avoided, and it is refused.
        let text = "[".repeat(200_000);
        assert!(serde_json::from_str::<Value>(&tag_numbers(&text, Dialect::Json)).is_err());
    }

    #[test]
    fn bom_is_stripped_once() {
        assert_eq!(strip_bom("\u{feff}{}"), "{}");
        assert_eq!(strip_bom("{}"), "{}");
    }
}
