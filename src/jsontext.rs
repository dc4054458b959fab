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
//! Must not: know any file format beyond JSON text, or do I/O. The markers hold a nonce
//! drawn once per process, so a string of the text (or one recorded from an agent) never
//! reads as a tag, whatever it holds: only what this process tagged is untagged.

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

/// The markers of this process's tags, as serde_json escapes them inside a string
/// literal: `\u0000qw-num-<nonce>:` before a token, `\u0000qw-raw-<nonce>:` before a deep
/// container's text in hex. The nonce is 16 random hex digits drawn once per process, so
/// no string in a file (nor one an agent makes qw record) can spell a tag: a string
/// reading `\u0000qw-num:12` is a string, written back as one.
struct Markers {
    /// The decoded form of a number tag's marker (NUL, `qw-num-<nonce>:`).
    num: String,
    /// `num` as serde_json escapes it.
    escaped_num: String,
    /// The raw tag's marker as serde_json escapes it.
    escaped_raw: String,
    /// The raw tag's marker as decoded (NUL, `qw-raw-<nonce>:`).
    raw: String,
}

fn markers() -> &'static Markers {
    static MARKERS: std::sync::LazyLock<Markers> = std::sync::LazyLock::new(|| {
        // The OS generator fails only on a broken system; the fallback is then a
        // process-unique value an agent would have to guess at the moment qw started.
        let nonce = crate::random::hex(8).unwrap_or_else(|_| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            format!("{:x}{nanos:x}", std::process::id())
        });
        Markers {
            num: format!("\u{0}qw-num-{nonce}:"),
            escaped_num: format!("\\u0000qw-num-{nonce}:"),
            escaped_raw: format!("\\u0000qw-raw-{nonce}:"),
            raw: format!("\u{0}qw-raw-{nonce}:"),
        }
    });
    &MARKERS
}

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
    format!("{}{token}", markers().num)
}

/// The token a tag string stands for; `None` for any other string.
pub(crate) fn token_of(s: &str) -> Option<&str> {
    s.strip_prefix(markers().num.as_str())
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
                match scan_container(bytes, i, dialect).ok() {
                    Some(end) => {
                        let raw = text.get(i..end).unwrap_or_default();
                        let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 32));
                        o.push_str(text.get(copied..i).unwrap_or_default());
                        o.push('"');
                        o.push_str(&markers().escaped_raw);
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
                    o.push_str(&markers().escaped_num);
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

/// Why serde_json refused a text, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// What is wrong, without the place (e.g. "expected `,` or `]`").
    pub(crate) message: String,
    /// 1-based line.
    pub(crate) line: usize,
    /// 1-based column.
    pub(crate) column: usize,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.message, self.line, self.column
        )
    }
}

/// Why serde_json refused `text` (the file's text, BOM stripped, as it was before
/// [`tag_numbers`]) with `e`. serde_json's own words, except for its recursion limit: that
/// is met only by a container nested deeper than [`MAX_PARSED_DEPTH`] that is not valid
/// JSON (a valid one is carried as raw text), and "recursion limit exceeded" would send the
/// user looking for a nesting limit. Then the text is scanned for where it stops being
/// JSON, and that place is named ("not valid JSON: unexpected `2`").
pub(crate) fn refusal(text: &str, dialect: Dialect, e: &serde_json::Error) -> Refusal {
    let serde = || Refusal {
        // serde_json appends " at line L column C". A value it names is shown as the
        // file holds it, never as the tag it was read as.
        message: untag_message(e.to_string().split(" at line ").next().unwrap_or_default()),
        line: e.line(),
        column: e.column(),
    };
    if !e.to_string().starts_with("recursion limit exceeded") {
        return serde();
    }
    let bytes = text.as_bytes();
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(bytes.len());
    let Err(at) = scan_container(bytes, start, dialect) else {
        return serde();
    };
    let before = bytes.get(..at).unwrap_or_default();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |n| n + 1);
    let found = text.get(at..).and_then(|t| t.chars().next());
    Refusal {
        message: match found {
            Some(c) if c.is_control() => format!("not valid JSON: unexpected {c:?}"),
            Some(c) => format!("not valid JSON: unexpected `{c}`"),
            None => "not valid JSON: the text ends inside a list or object".to_owned(),
        },
        line: before.iter().filter(|&&b| b == b'\n').count() + 1,
        column: at - line_start + 1,
    }
}

/// A message (serde_json's, or one quoting a value read through [`tag_numbers`]) with
/// every tag shown as what the file holds: `invalid type: string "<tag>123…"` becomes
/// `invalid type: number 123…`, a deep container's tag becomes `a list or object nested
/// deeper than 64 levels`; a marker left anywhere else is dropped. Tags appear decoded
/// (NUL), escaped (`\u0000`) or as Rust's debug form (`\0`) of the string.
pub(crate) fn untag_message(message: &str) -> String {
    let m = markers();
    let forms = |decoded: &str| {
        let bare = decoded.trim_start_matches('\u{0}').to_owned();
        [
            format!("\\0{bare}"),
            format!("\\u{{0}}{bare}"),
            format!("\\u0000{bare}"),
            decoded.to_owned(),
        ]
    };
    let mut out = message.to_owned();
    for (decoded, is_raw) in [(&m.num, false), (&m.raw, true)] {
        for form in forms(decoded) {
            let quoted = format!("string \"{form}");
            while let Some(at) = out.find(&quoted) {
                let rest = out.get(at + quoted.len()..).unwrap_or_default();
                let end = rest.find('"').unwrap_or(rest.len());
                let token = rest.get(..end).unwrap_or_default();
                let shown = if is_raw {
                    format!("a list or object nested deeper than {MAX_PARSED_DEPTH} levels")
                } else {
                    format!("number {token}")
                };
                let stop = (at + quoted.len() + end + 1).min(out.len());
                out.replace_range(at..stop, &shown);
            }
            out = out.replace(&form, "");
        }
    }
    out
}

/// Turn tags in serde_json output back into their tokens and texts, byte for byte.
pub(crate) fn untag(json: String) -> String {
    untag_numbers(untag_raw(json))
}

/// Turn raw tags (deep containers) back into the text they stand for.
fn untag_raw(json: String) -> String {
    untag_each(json, &markers().escaped_raw, from_hex)
}

/// Turn number tags back into their tokens.
fn untag_numbers(json: String) -> String {
    untag_each(json, &markers().escaped_num, |token| {
        is_token(token).then(|| token.to_owned())
    })
}

/// Replace each string literal of `json` that starts with `escaped_marker` by what
/// `payload` makes of the rest of it; one it makes nothing of is kept as it is (not
/// something `tag_numbers` made).
fn untag_each(
    json: String,
    escaped_marker: &str,
    payload: impl Fn(&str) -> Option<String>,
) -> String {
    let pattern = format!("\"{escaped_marker}");
    if !json.contains(&pattern) {
        return json;
    }
    let mut out = String::with_capacity(json.len());
    let mut rest = json.as_str();
    while let Some(at) = rest.find(&pattern) {
        let after = rest.get(at + pattern.len()..).unwrap_or_default();
        let len = after.find('"').unwrap_or(after.len());
        out.push_str(rest.get(..at).unwrap_or_default());
        match (after.len() > len)
            .then(|| payload(after.get(..len).unwrap_or_default()))
            .flatten()
        {
            Some(text) => {
                out.push_str(&text);
                rest = after.get(len + 1..).unwrap_or_default();
            }
            None => {
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
/// of `dialect` (every string, escape, number, literal and separator checked); otherwise
/// `Err` with the index where it stops being JSON (`bytes.len()` when it ends too soon).
/// Iterative: any depth costs one byte of stack per level, on the heap.
fn scan_container(bytes: &[u8], start: usize, dialect: Dialect) -> Result<usize, usize> {
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
        let b = *bytes.get(i).ok_or(i)?;
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
                let token = bytes
                    .get(i..end)
                    .and_then(|t| std::str::from_utf8(t).ok())
                    .unwrap_or_default();
                let ok = matches!(token, "true" | "false" | "null")
                    || is_json_number(token)
                    || (dialect == Dialect::Python
                        && matches!(token, "NaN" | "Infinity" | "-Infinity"));
                if !ok {
                    return Err(i);
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
            _ => return Err(i),
        };
        if close {
            let opened = open.pop().ok_or(i)?;
            if (opened, b) != (b'[', b']') && (opened, b) != (b'{', b'}') {
                return Err(i);
            }
            i += 1;
            if open.is_empty() {
                return Ok(i);
            }
            want = Want::Next;
        }
    }
}

/// Index just past the string literal that starts at `start`, when it is valid JSON: no
/// control character inside, every escape one of JSON's; else `Err` with where it is not.
fn checked_string_end(bytes: &[u8], start: usize) -> Result<usize, usize> {
    let mut j = start + 1;
    loop {
        match *bytes.get(j).ok_or(j)? {
            b'"' => return Ok(j + 1),
            b'\\' => match *bytes.get(j + 1).ok_or(j + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j += 2,
                b'u' => {
                    let hex = bytes.get(j + 2..j + 6).ok_or(j)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(j);
                    }
                    j += 6;
                }
                _ => return Err(j),
            },
            c if c < 0x20 => return Err(j),
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
            tagged.contains("NaN,")
                && tagged.contains(&format!("\"{}1e400\"", markers().escaped_num)),
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
            assert!(
                !tagged.contains(&markers().escaped_num),
                "{text} -> {tagged}"
            );
        }
    }

    #[test]
    fn untag_leaves_foreign_strings_alone() {
        let m = &markers().escaped_num;
        for s in [
            format!(r#"["{m}1; rm"]"#),
            format!(r#"["{m}"]"#),
            format!(r#"["{m}12"#),
            // rev5a L1: the marker of old, or another process's, is a string.
            r#"["\u0000qw-num:12"]"#.to_owned(),
            r#"["\u0000qw-raw:5b5d"]"#.to_owned(),
        ] {
            assert_eq!(untag(s.clone()), s);
        }
        assert_eq!(untag(format!(r#"["{m}12"]"#)), "[12]");
    }

    /// rev5a L1: strings spelling a tag (the fixed marker of old, with any escapes) read
    /// as strings, never as tags, and are written back as the same strings.
    #[test]
    fn strings_spelling_a_tag_stay_strings() {
        for text in [
            r#"{"a":"\u0000qw-num:12","b":"\u0000qw-num:NaN"}"#,
            r#"{"a":"\u0000qw-raw:5b5d","b":"\u0000\u0071w-num:7"}"#,
        ] {
            let tagged = tag_numbers(text, Dialect::Python);
            let v: Value = serde_json::from_str(&tagged).unwrap();
            for (_, s) in v.as_object().unwrap() {
                assert!(token_of(s.as_str().unwrap()).is_none(), "{s}");
            }
            let back: Value =
                serde_json::from_str(&untag(serde_json::to_string(&v).unwrap())).unwrap();
            assert_eq!(back, v, "{text}");
        }
    }

    #[test]
    fn a_deep_container_that_is_not_json_is_named_where_it_breaks() {
        let text = format!(
            "{{\n  \"x\": {}[1 2]{}\n}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        let e = serde_json::from_str::<Value>(&tag_numbers(&text, Dialect::Json)).unwrap_err();
        assert!(e.to_string().contains("recursion limit"), "{e}");
        let why = refusal(&text, Dialect::Json, &e);
        assert_eq!(why.message, "not valid JSON: unexpected `2`");
        assert_eq!((why.line, why.column), (2, 8 + 200 + 3));
        assert_eq!(
            why.to_string(),
            "not valid JSON: unexpected `2` at line 2 column 211"
        );
        // Cut off in the middle, and a control character in a string.
        for (bad, message) in [
            (
                "[1,",
                "not valid JSON: the text ends inside a list or object",
            ),
            ("[\"a\u{1}\"]", "not valid JSON: unexpected '\\u{1}'"),
        ] {
            let text = format!("{}{bad}", "[".repeat(300));
            let e = serde_json::from_str::<Value>(&tag_numbers(&text, Dialect::Json)).unwrap_err();
            assert_eq!(refusal(&text, Dialect::Json, &e).message, message, "{bad}");
        }
        // Any other error keeps serde_json's words.
        let e = serde_json::from_str::<Value>("[1 2]").unwrap_err();
        assert_eq!(
            refusal("[1 2]", Dialect::Json, &e).message,
            "expected `,` or `]`"
        );
    }

    proptest::proptest! {
        /// Whatever strings and numbers a state holds — strings spelling tags, NUL, escapes;
        /// integers of any size, huge exponents, Python's NaN/Infinity — a read then a
        /// write keeps every value, and numbers' bytes.
        #[test]
        fn a_read_then_a_write_keeps_strings_and_numbers(
            strings in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::string::string_regex("\\x00qw-(num|raw)(-[0-9a-f]{0,16})?:[-0-9a-zN]{0,12}").unwrap(),
                    proptest::string::string_regex(".{0,12}").unwrap(),
                ],
                0..6,
            ),
            numbers in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::string::string_regex("-?[1-9][0-9]{0,40}").unwrap(),
                    // Floats serde_json cannot hold (it would rewrite any other float its own way).
                    proptest::string::string_regex("-?[1-9]\\.[0-9]{1,20}[eE]\\+?[4-9][0-9]{2}").unwrap(),
                    proptest::prop_oneof![
                        proptest::strategy::Just("NaN".to_owned()),
                        proptest::strategy::Just("Infinity".to_owned()),
                        proptest::strategy::Just("-Infinity".to_owned()),
                    ],
                ],
                0..6,
            ),
        ) {
            let text = format!(
                "{{\"s\":{},\"n\":[{}]}}",
                serde_json::to_string(&strings).unwrap(),
                numbers.join(",")
            );
            let tagged = tag_numbers(&text, Dialect::Python);
            let v: Value = serde_json::from_str(&tagged).unwrap();
            let back = untag(serde_json::to_string(&v).unwrap());
            proptest::prop_assert_eq!(&back, &text);
            let read: Vec<String> = serde_json::from_value(v["s"].clone()).unwrap();
            proptest::prop_assert_eq!(read, strings);
        }
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
            assert!(tagged.contains(&markers().escaped_raw));
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
            assert!(!tagged.contains(&markers().escaped_raw), "{bad}");
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

    #[test]
    fn a_refused_value_is_shown_as_the_file_holds_it_never_as_its_tag() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Small {
            n: u32,
        }
        for (text, shown) in [
            (
                r#"{"n": 123456789012345678901234567890}"#,
                "number 123456789012345678901234567890",
            ),
            (r#"{"n": NaN}"#, "number NaN"),
            (r#"{"n": -Infinity}"#, "number -Infinity"),
        ] {
            let tagged = tag_numbers(text, Dialect::Python);
            let e = serde_json::from_str::<Small>(&tagged).unwrap_err();
            let message = refusal(text, Dialect::Python, &e).to_string();
            assert!(message.contains(shown), "{message}");
            assert!(
                !message.contains("qw-num") && !message.contains("\\0"),
                "{message}"
            );
        }
        // A deep container's tag, as serde's messages quote a string (`{:?}`).
        let m = markers();
        let quoted = format!(
            "invalid type: string {:?}, expected u8",
            format!("{}5b5d", m.raw)
        );
        assert_eq!(
            untag_message(&quoted),
            "invalid type: a list or object nested deeper than 64 levels, expected u8"
        );
        // Every spelling of a marker, anywhere in a message, is dropped.
        let loose = format!("a {} b {} c", m.num, m.escaped_num);
        assert_eq!(untag_message(&loose), "a  b  c");
    }
}
