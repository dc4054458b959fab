//! Byte-level edits of a JSON document: set or remove one member of a (nested) object and
//! leave every other byte as it was — numbers as written (`2.50`, `12345678901234567890123`,
//! `1e400`), duplicate keys, key order, indentation, CRLF, a missing final newline.
//!
//! The input is JSON that serde_json has already accepted; this module finds the spans of
//! an object's members (key start, value range) with a small scanner and splices text in
//! or out. With duplicate keys the last one is the effective one (as in serde_json,
//! JavaScript and Python), so `set` edits the last and `remove` removes them all.
//!
//! Why a scanner and not `serde_json::value::RawValue`: a `RawValue` gives a value's exact
//! text and, by pointer offset, its position, but an edit also needs the key's position
//! and the separators around the member; finding those means scanning anyway.

use std::ops::Range;

use serde::Serialize;
use serde_json::Value;

/// One `"key": value` of an object, by byte offsets into the document.
#[derive(Debug)]
struct Member {
    key: String,
    key_start: usize,
    key_end: usize,
    value: Range<usize>,
}

/// An object: the offsets of its braces and its members in order.
#[derive(Debug)]
struct Object {
    open: usize,
    close: usize,
    members: Vec<Member>,
}

/// How new text is laid out: the document's newline and indentation unit, and whether it
/// writes `"a": 1, "b": 2` (spaced) or `"a":1,"b":2` on one line.
struct Style {
    newline: &'static str,
    unit: String,
    spaced: bool,
}

/// Set `path` (object keys from the top level) to `value`. Missing objects on the way are
/// created; a member on the way that is not an object is an error naming its dotted key.
pub(crate) fn set(text: &str, path: &[&str], value: &Value) -> Result<String, String> {
    let style = style(text);
    let mut obj = root(text)?;
    for (n, key) in path.iter().enumerate() {
        let last = n + 1 == path.len();
        match obj.members.iter().rev().find(|m| m.key == *key) {
            Some(m) if last => {
                let indent = member_indent(text, m);
                let rendered = render(value, indent, &style);
                return Ok(splice(text, m.value.clone(), &rendered));
            }
            Some(m) if text.as_bytes().get(m.value.start) == Some(&b'{') => {
                obj = object_at(text, m.value.start)?;
            }
            Some(_) => return Err(format!("`{}` is not an object", path[..=n].join("."))),
            None => {
                let nested = path[n + 1..].iter().rev().fold(value.clone(), |v, k| {
                    let mut m = serde_json::Map::new();
                    m.insert((*k).to_owned(), v);
                    Value::Object(m)
                });
                return Ok(insert(text, &obj, key, &nested, &style));
            }
        }
    }
    Err("empty key path".into())
}

/// Remove every member named by `path`; `Ok(None)` when there is none.
pub(crate) fn remove(text: &str, path: &[&str]) -> Result<Option<String>, String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key path".into());
    };
    let mut current = text.to_owned();
    let mut removed = false;
    loop {
        let Some(obj) = parent(&current, parents)? else {
            return Ok(None);
        };
        let Some(idx) = obj.members.iter().rposition(|m| m.key == *last) else {
            return Ok(removed.then_some(current));
        };
        let m = &obj.members[idx];
        let span = if idx > 0 {
            obj.members[idx - 1].value.end..m.value.end
        } else if let Some(next) = obj.members.get(1) {
            m.key_start..next.key_start
        } else {
            obj.open + 1..obj.close
        };
        current = splice(&current, span, "");
        removed = true;
    }
}

/// The object at `path` (the top level for an empty path); `None` when a key is missing.
fn parent(text: &str, path: &[&str]) -> Result<Option<Object>, String> {
    let mut obj = root(text)?;
    for (n, key) in path.iter().enumerate() {
        match obj.members.iter().rev().find(|m| m.key == *key) {
            None => return Ok(None),
            Some(m) if text.as_bytes().get(m.value.start) == Some(&b'{') => {
                obj = object_at(text, m.value.start)?;
            }
            Some(_) => return Err(format!("`{}` is not an object", path[..=n].join("."))),
        }
    }
    Ok(Some(obj))
}

fn splice(text: &str, span: Range<usize>, with: &str) -> String {
    let mut out = String::with_capacity(text.len() + with.len());
    out.push_str(text.get(..span.start).unwrap_or_default());
    out.push_str(with);
    out.push_str(text.get(span.end..).unwrap_or_default());
    out
}

/// Add `"key": value` at the end of `obj`, laid out like the members before it.
fn insert(text: &str, obj: &Object, key: &str, value: &Value, style: &Style) -> String {
    let key_json = Value::from(key).to_string();
    if let Some(last) = obj.members.last() {
        let colon = text.get(last.key_end..last.value.start).unwrap_or(": ");
        let mut before_key = text
            .get(delimiter_before(text, last.key_start) + 1..last.key_start)
            .unwrap_or_default();
        if obj.members.len() == 1 && !before_key.contains('\n') {
            // `{"a": 1}`: the space after `{` says nothing about the one after a comma;
            // follow the colon's spacing instead.
            before_key = if colon.contains(' ') { " " } else { "" };
        }
        let rendered = render(value, member_indent(text, last), style);
        let member = format!(",{before_key}{key_json}{colon}{rendered}");
        return splice(text, last.value.end..last.value.end, &member);
    }
    if !text.contains('\n') {
        let colon = if style.spaced { ": " } else { ":" };
        let member = format!("{key_json}{colon}{}", render(value, None, style));
        return splice(text, obj.open + 1..obj.close, &member);
    }
    let base = line_indent(text, obj.open);
    let inner_indent = format!("{base}{}", style.unit);
    let rendered = render(value, Some(&inner_indent), style);
    let nl = style.newline;
    let inner = format!("{nl}{inner_indent}{key_json}: {rendered}{nl}{base}");
    splice(text, obj.open + 1..obj.close, &inner)
}

/// `value` as JSON text placed after a key indented by `indent` (`None`: the member shares
/// its line with others, so the value stays on one line too).
fn render(value: &Value, indent: Option<&str>, style: &Style) -> String {
    let empty = match value {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => true,
    };
    let Some(indent) = indent.filter(|_| !empty) else {
        return if style.spaced {
            inline(value)
        } else {
            value.to_string()
        };
    };
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(style.unit.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    if value.serialize(&mut ser).is_err() {
        return value.to_string();
    }
    // Pretty output has no raw newline inside strings (they are escaped), so every `\n`
    // separates lines.
    String::from_utf8_lossy(&buf).replace('\n', &format!("{}{indent}", style.newline))
}

/// `value` on one line with a space after each `:` and `,`.
fn inline(value: &Value) -> String {
    match value {
        Value::Object(m) if !m.is_empty() => {
            let members: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), inline(v)))
                .collect();
            format!("{{{}}}", members.join(", "))
        }
        Value::Array(a) if !a.is_empty() => {
            let items: Vec<String> = a.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// The newline (CRLF if the document uses it), the indentation of the first indented line
/// (two spaces when there is none), and the spacing of the first member's colon.
fn style(text: &str) -> Style {
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let unit = text
        .lines()
        .map(|l| {
            let trimmed = l.trim_start_matches([' ', '\t']);
            (&l[..l.len() - trimmed.len()], trimmed)
        })
        .find(|(ws, rest)| !ws.is_empty() && !rest.is_empty())
        .map_or_else(|| "  ".to_owned(), |(ws, _)| ws.to_owned());
    let spaced = root(text)
        .ok()
        .and_then(|o| {
            o.members
                .first()
                .and_then(|m| text.get(m.key_end..m.value.start))
                .map(|colon| colon.contains(' '))
        })
        .unwrap_or(true);
    Style {
        newline,
        unit,
        spaced,
    }
}

/// The whitespace before `at` on its line.
fn line_indent(text: &str, at: usize) -> &str {
    let head = text.get(..at).unwrap_or_default();
    let line_start = head.rfind('\n').map_or(0, |i| i + 1);
    let line = head.get(line_start..).unwrap_or_default();
    let rest = line.trim_start_matches([' ', '\t']);
    &line[..line.len() - rest.len()]
}

/// The indentation of a member that starts its own line; `None` when it shares its line.
fn member_indent<'t>(text: &'t str, m: &Member) -> Option<&'t str> {
    let head = text.get(..m.key_start).unwrap_or_default();
    let line_start = head.rfind('\n').map_or(0, |i| i + 1);
    let before = head.get(line_start..).unwrap_or_default();
    before
        .bytes()
        .all(|b| b == b' ' || b == b'\t')
        .then_some(before)
}

/// The offset of the `{` or `,` before `at`, skipping whitespace.
fn delimiter_before(text: &str, at: usize) -> usize {
    let bytes = text.as_bytes();
    let mut i = at;
    while i > 0 {
        i -= 1;
        if !matches!(bytes.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            return i;
        }
    }
    0
}

fn root(text: &str) -> Result<Object, String> {
    let start = skip_ws(text.as_bytes(), 0);
    if text.as_bytes().get(start) != Some(&b'{') {
        return Err("the top level is not an object".into());
    }
    object_at(text, start)
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// Scan the object whose `{` is at `open`.
fn object_at(text: &str, open: usize) -> Result<Object, String> {
    let bytes = text.as_bytes();
    let bad = |i: usize| format!("unexpected JSON at byte {i}");
    let mut members = Vec::new();
    let mut i = skip_ws(bytes, open + 1);
    if bytes.get(i) == Some(&b'}') {
        return Ok(Object {
            open,
            close: i,
            members,
        });
    }
    loop {
        if bytes.get(i) != Some(&b'"') {
            return Err(bad(i));
        }
        let key_start = i;
        let key_end = string_end(bytes, i).ok_or_else(|| bad(i))?;
        let key: String = text
            .get(key_start..key_end)
            .and_then(|k| serde_json::from_str(k).ok())
            .ok_or_else(|| bad(key_start))?;
        i = skip_ws(bytes, key_end);
        if bytes.get(i) != Some(&b':') {
            return Err(bad(i));
        }
        let value_start = skip_ws(bytes, i + 1);
        let value_end = value_end(bytes, value_start).ok_or_else(|| bad(value_start))?;
        members.push(Member {
            key,
            key_start,
            key_end,
            value: value_start..value_end,
        });
        i = skip_ws(bytes, value_end);
        match bytes.get(i) {
            Some(b',') => i = skip_ws(bytes, i + 1),
            Some(b'}') => {
                return Ok(Object {
                    open,
                    close: i,
                    members,
                });
            }
            _ => return Err(bad(i)),
        }
    }
}

/// Index just past the string literal starting at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut j = start + 1;
    loop {
        match bytes.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// Index just past the value starting at `start`.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match bytes.get(start)? {
        b'"' => string_end(bytes, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = start;
            loop {
                match bytes.get(j)? {
                    b'"' => {
                        j = string_end(bytes, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = start;
            while bytes
                .get(j)
                .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            {
                j += 1;
            }
            (j > start).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
    }

    #[test]
    fn set_replaces_only_the_value() {
        let text = "{\n  \"n\": 12345678901234567890123,\n  \"x\": 2.50,\n  \"development_mode\": {\"enabled\": false, \"z\": 1e400}\n}";
        let out = set(text, &["development_mode", "enabled"], &json!(true)).unwrap();
        assert_eq!(out, text.replace("false", "true"));
    }

    #[test]
    fn set_edits_the_last_duplicate() {
        let text = r#"{"a": {"k": 1, "k": 2}, "a": {"k": 3, "k": 4}}"#;
        let out = set(text, &["a", "k"], &json!(9)).unwrap();
        assert_eq!(out, r#"{"a": {"k": 1, "k": 2}, "a": {"k": 3, "k": 9}}"#);
    }

    #[test]
    fn insert_follows_the_layout_of_the_siblings() {
        let text = "{\r\n    \"a\": 1,\r\n    \"b\": {\r\n        \"c\": true\r\n    }\r\n}";
        assert_eq!(
            set(r#"{ "a": 1 }"#, &["b"], &json!(2)).unwrap(),
            r#"{ "a": 1, "b": 2 }"#
        );
        let out = set(text, &["b", "d"], &json!(false)).unwrap();
        assert_eq!(
            out,
            "{\r\n    \"a\": 1,\r\n    \"b\": {\r\n        \"c\": true,\r\n        \"d\": false\r\n    }\r\n}"
        );
        let out = set(text, &["q", "prev"], &json!({"x": true})).unwrap();
        assert_eq!(
            out,
            "{\r\n    \"a\": 1,\r\n    \"b\": {\r\n        \"c\": true\r\n    },\r\n    \"q\": {\r\n        \"prev\": {\r\n            \"x\": true\r\n        }\r\n    }\r\n}"
        );
        parse(&out);
    }

    #[test]
    fn insert_into_compact_and_empty_objects() {
        assert_eq!(
            set(r#"{"a":1}"#, &["b"], &json!({"c": [1, 2]})).unwrap(),
            r#"{"a":1,"b":{"c":[1,2]}}"#
        );
        assert_eq!(
            set(r#"{"a": 1}"#, &["b"], &json!({"c": [1, 2], "d": {}})).unwrap(),
            r#"{"a": 1, "b": {"c": [1, 2], "d": {}}}"#
        );
        assert_eq!(set("{}", &["b"], &json!(true)).unwrap(), r#"{"b": true}"#);
        assert_eq!(
            set("{}\n", &["b"], &json!({"c": 1})).unwrap(),
            "{\n  \"b\": {\n    \"c\": 1\n  }\n}\n"
        );
        assert_eq!(
            set("{\n  \"q\": {}\n}\n", &["q", "c"], &json!(1)).unwrap(),
            "{\n  \"q\": {\n    \"c\": 1\n  }\n}\n"
        );
    }

    #[test]
    fn set_through_a_non_object_is_an_error() {
        let err = set(r#"{"q": [1]}"#, &["q", "k"], &json!(1)).unwrap_err();
        assert!(err.contains("`q`"), "{err}");
        assert!(set("[1]", &["q"], &json!(1)).is_err());
    }

    #[test]
    fn remove_takes_every_duplicate_and_keeps_the_rest() {
        let text = "{\n  \"a\": 1,\n  \"q\": {\n    \"p\": {\"x\": 1},\n    \"keep\": 2.50,\n    \"p\": 3\n  },\n  \"z\": 0\n}\n";
        let out = remove(text, &["q", "p"]).unwrap().unwrap();
        assert_eq!(
            out,
            "{\n  \"a\": 1,\n  \"q\": {\n    \"keep\": 2.50\n  },\n  \"z\": 0\n}\n"
        );
        let out = remove(&out, &["q", "keep"]).unwrap().unwrap();
        assert_eq!(out, "{\n  \"a\": 1,\n  \"q\": {},\n  \"z\": 0\n}\n");
        let out = remove(&out, &["q"]).unwrap().unwrap();
        assert_eq!(out, "{\n  \"a\": 1,\n  \"z\": 0\n}\n");
        let out = remove(&out, &["a"]).unwrap().unwrap();
        assert_eq!(out, "{\n  \"z\": 0\n}\n");
        assert_eq!(remove(&out, &["missing"]).unwrap(), None);
        assert_eq!(remove(&out, &["missing", "deeper"]).unwrap(), None);
    }

    #[test]
    fn keys_with_escapes_and_strings_with_brackets() {
        let text = r#"{"a\"}": "}{][", "b": ["}", {"c": "\\"}], "k": 1}"#;
        let out = set(text, &["k"], &json!(2)).unwrap();
        assert_eq!(out, text.replace("\"k\": 1", "\"k\": 2"));
        let out = set(text, &["a\"}"], &json!(0)).unwrap();
        assert_eq!(parse(&out)["a\"}"], json!(0));
    }

    proptest::proptest! {
        /// Whatever the other members hold, `set` then `remove` of an owned key leaves
        /// them byte for byte, and the result parses to what the edit means.
        #[test]
        fn edits_touch_only_the_owned_key(
            others in proptest::collection::vec(("[a-z]{1,3}", "-?(0|[1-9][0-9]{0,29})(\\.[0-9]{1,5}0)?"), 0..6),
            compact in proptest::bool::ANY,
            value in proptest::bool::ANY,
        ) {
            let sep = if compact { "," } else { ",\n  " };
            let body: Vec<String> = others.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            let text = if body.is_empty() { "{}".to_owned() } else { format!("{{{}}}", body.join(sep)) };
            let with = set(&text, &["owned", "flag"], &json!(value)).unwrap();
            let parsed = parse(&with);
            proptest::prop_assert_eq!(&parsed["owned"]["flag"], &json!(value));
            let back = remove(&with, &["owned"]).unwrap().unwrap();
            proptest::prop_assert_eq!(back, text);
        }
    }
}
