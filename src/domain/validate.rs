//! Parse-don't-validate helpers for JSON request bodies. Each rule failure names the field and
//! the rule, so a caller can fix the request without guessing.

use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};

pub type Object = Map<String, Value>;

/// The body as a JSON object. Not JSON at all → `Malformed JSON`; JSON but not an object → a
/// field error on `body`.
pub fn object(body: &[u8]) -> ApiResult<Object> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("body", "must be a JSON object")),
        Err(_) => Err(ApiError::MalformedJson),
    }
}

/// Length rule in Unicode characters (not bytes), optionally rejecting whitespace-only text,
/// and for names ([`Text::name`]) the characters a person can see as a name.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    pub min: usize,
    pub max: usize,
    pub allow_blank: bool,
    /// A name or label shown to people (a key's, an agent's, an admin's, a workspace's): no
    /// control characters, no bidirectional overrides or isolates (they reorder what is shown
    /// around them, so `Prod\u{202e}` can pose as another name in a list or the audit log),
    /// and not made only of invisible characters.
    pub name: bool,
}

/// The rule names follow, as the error states it.
pub const NAME_RULE: &str =
    "must not contain control characters or bidirectional overrides, and must have a visible character";

impl Text {
    pub const fn new(min: usize, max: usize) -> Self {
        Self { min, max, allow_blank: false, name: false }
    }

    /// A name or label: [`Text::new`] plus the characters of [`Text::name`].
    pub const fn name(min: usize, max: usize) -> Self {
        Self { min, max, allow_blank: false, name: true }
    }

    fn rule(self) -> String {
        let blank = if self.allow_blank || self.min == 0 { "" } else { ", not only whitespace" };
        format!("must be a string of {} to {} characters{blank}", self.min, self.max)
    }

    fn check(self, field: &str, s: &str) -> ApiResult<()> {
        let n = s.chars().count();
        let blank = !self.allow_blank && self.min > 0 && s.trim().is_empty();
        if n < self.min || n > self.max || blank {
            return Err(ApiError::invalid(field, self.rule()));
        }
        if self.name && !is_name(s) {
            return Err(ApiError::invalid(field, NAME_RULE));
        }
        Ok(())
    }
}

/// Whether `s` can be shown as a name: see [`Text::name`]. Joiners and other invisible
/// characters are allowed between visible ones (emoji sequences need U+200D).
pub fn is_name(s: &str) -> bool {
    s.chars().all(|c| !c.is_control() && !is_bidi_control(c))
        && s.chars().any(|c| !c.is_whitespace() && !is_invisible(c))
}

/// Bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters a person can see and type: no control characters, no line or paragraph
/// breaks, no invisible formatting characters (zero-width, bidi overrides, tags) that would
/// make two ids look the same while being different.
pub fn is_printable(c: char) -> bool {
    !c.is_control() && !is_invisible(c) && (c == ' ' || !c.is_whitespace())
}

/// Unicode format characters (category Cf) that render as nothing. Tag characters are also
/// how invisible instructions are smuggled into text meant for a model.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// A required string; absent or `null` is an error.
pub fn required_text(obj: &Object, field: &str, rule: Text) -> ApiResult<String> {
    optional_text(obj, field, rule)?.ok_or_else(|| ApiError::invalid(field, rule.rule()))
}

/// An optional string; `null` means absent.
pub fn optional_text(obj: &Object, field: &str, rule: Text) -> ApiResult<Option<String>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            rule.check(field, s)?;
            Ok(Some(s.clone()))
        }
        Some(_) => Err(ApiError::invalid(field, rule.rule())),
    }
}

/// An optional whole number within `min..=max`; `null` means absent. `5.0` counts as 5, `5.5`
/// and `"5"` do not.
pub fn optional_int(obj: &Object, field: &str, min: i64, max: i64) -> ApiResult<Option<i64>> {
    let rule = || ApiError::invalid(field, format!("must be a whole number from {min} to {max}"));
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let v = n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64))
                .ok_or_else(rule)?;
            if (min..=max).contains(&v) {
                Ok(Some(v))
            } else {
                Err(rule())
            }
        }
        Some(_) => Err(rule()),
    }
}

/// Whether the field is present at all (even as `null`), for PATCH semantics.
pub fn has(obj: &Object, field: &str) -> bool {
    obj.contains_key(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn malformed_and_non_object_bodies() {
        assert_eq!(object(b"{not json").unwrap_err(), ApiError::MalformedJson);
        assert_eq!(object(b"").unwrap_err(), ApiError::MalformedJson);
        assert_eq!(object(b"[1]").unwrap_err().status(), 400);
        assert!(matches!(object(b"\"x\"").unwrap_err(), ApiError::InvalidField { .. }));
        // A lone surrogate escape is not valid JSON text.
        assert_eq!(object(br#"{"message":"\ud800"}"#).unwrap_err(), ApiError::MalformedJson);
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(object(deep.as_bytes()).unwrap_err(), ApiError::MalformedJson);
    }

    #[test]
    fn text_counts_characters_not_bytes() {
        let rule = Text::new(1, 3);
        let o = obj(json!({ "a": "日本語", "b": "日本語x", "c": "   ", "d": 5 }));
        assert_eq!(required_text(&o, "a", rule).unwrap(), "日本語");
        assert!(required_text(&o, "b", rule).is_err());
        assert!(required_text(&o, "c", rule).is_err());
        assert!(required_text(&o, "d", rule).is_err());
        assert!(required_text(&o, "missing", rule).is_err());
        assert_eq!(optional_text(&o, "missing", rule).unwrap(), None);
    }

    #[test]
    fn names_refuse_controls_bidi_and_invisible_only() {
        let rule = Text::name(1, 100);
        for bad in [
            "Prod\u{202e}\u{0}\u{1b}[31m",
            "\u{200b}",
            "\u{0}",
            "a\u{85}b",
            "x\u{2066}y",
            "tab\there",
            "\u{200b}\u{feff} ",
        ] {
            let err = required_text(&obj(json!({ "name": bad })), "name", rule).unwrap_err();
            assert_eq!(err.body()["details"], json!({ "field": "name", "rule": NAME_RULE }), "{bad:?}");
        }
        for good in ["Prod", "Équipe données", "👨\u{200d}👩\u{200d}👧 family", "日本語", "a b"] {
            assert_eq!(required_text(&obj(json!({ "name": good })), "name", rule).unwrap(), good);
        }
        // Free text keeps its own rules: only names are checked this way.
        assert!(required_text(&obj(json!({ "m": "line\nbreak" })), "m", Text::new(1, 100)).is_ok());
    }

    #[test]
    fn null_means_absent() {
        let o = obj(json!({ "a": null }));
        assert_eq!(optional_text(&o, "a", Text::new(1, 5)).unwrap(), None);
        assert_eq!(optional_int(&o, "a", 1, 5).unwrap(), None);
        assert!(required_text(&o, "a", Text::new(1, 5)).is_err());
    }

    #[test]
    fn ints_are_whole_and_in_range() {
        let o = obj(json!({ "ok": 5, "float": 5.0, "frac": 5.5, "str": "5", "big": 1e300, "neg": -1 }));
        assert_eq!(optional_int(&o, "ok", 1, 10).unwrap(), Some(5));
        assert_eq!(optional_int(&o, "float", 1, 10).unwrap(), Some(5));
        for f in ["frac", "str", "big", "neg"] {
            let err = optional_int(&o, f, 1, 10).unwrap_err();
            assert_eq!(err.body()["details"]["field"], f);
        }
    }
}
